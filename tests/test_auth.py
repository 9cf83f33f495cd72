"""Users, tokens, sessions and control rules: the user file, then REST through a real HTTP client (in memory)."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import treq
from apiclient import Api, serve
from notes_plugin import NotesPlugin
from notes_plugin import metadata as notes_metadata

from master.data.connector import DataAPI
from master.data.resources import core_resource_types
from master.db import migrate
from master.security import check_password, hash_password
from master.www.auth import Auth, Authenticator, ControlRule, UserError, UserStore
from master.www.login import LoginPages
from master.www.rest import RestApi
from master.www.site import build_site

PIN = {"jsonrpc": "2.0", "id": 7, "method": "pin", "params": {"pinned": True}}


def test_password_hashes_are_salted_and_checked() -> None:
    first, second = hash_password("s3cret"), hash_password("s3cret")
    assert first != second and first.startswith("scrypt$")
    assert check_password("s3cret", first) and check_password("s3cret", second)
    assert not check_password("s3cre", first)
    assert not check_password("s3cret", "garbage")


def test_user_store_keeps_only_token_hashes_and_revokes(tmp_path: Path) -> None:
    store = UserStore(tmp_path / "users.json")
    # a password long enough that a random hash cannot contain it by chance (as "pw" could)
    store.add_user("ann", "correct horse battery staple", ["admin", "admin", "dev"])
    token_id, token = store.new_token("ann")
    text = (tmp_path / "users.json").read_text()
    assert token not in text and "correct horse battery staple" not in text
    assert (tmp_path / "users.json").stat().st_mode & 0o077 == 0
    assert store.by_token(token).roles == {"admin", "dev"}
    # another process (the CLI) revokes it: this store sees the change
    assert UserStore(tmp_path / "users.json").revoke_token(token_id) == "ann"
    assert store.by_token(token) is None
    with pytest.raises(UserError, match="no token with id"):
        store.revoke_token(token_id)
    with pytest.raises(UserError, match="no such user: bob"):
        store.new_token("bob")
    with pytest.raises(UserError, match="bad user name"):
        store.add_user("a b", "pw", [])
    store.remove_user("ann")
    assert store.names() == []


def test_rules_match_roles_actions_and_resources(tmp_path: Path) -> None:
    auth = Authenticator(
        Auth(rules=[ControlRule(roles=["admin"]), ControlRule(roles=["dev"], actions=["pin"], resources=["notes"])]),
        tmp_path,
    )
    auth.users.add_user("dev", "pw", ["dev"])
    dev = auth.users.user("dev")
    auth.authorize(dev, "notes", "pin")
    with pytest.raises(Exception, match="may not call 'cancel' on buildrequests") as refused:
        auth.authorize(dev, "buildrequests", "cancel")
    assert refused.value.status == 403
    with pytest.raises(Exception, match="authentication required") as anonymous:
        auth.authorize(None, "notes", "pin")
    assert anonymous.value.status == 401
    Authenticator(None, tmp_path).authorize(None, "notes", "pin")  # auth off: open


@pytest.fixture
def users(tmp_path: Path) -> dict[str, str]:
    store = UserStore(tmp_path / "users.json")
    store.add_user("admin", "adminpw", ["admin"])
    store.add_user("viewer", "viewerpw", ["viewer"])
    return {"admin": store.new_token("admin")[1], "viewer": store.new_token("viewer")[1]}


@pytest_twisted.async_yield_fixture()
async def api(storage: Any, migrated_url: str, tmp_path: Path, users: dict[str, str]) -> AsyncIterator[Api]:
    migrate.create_plugin_tables(migrated_url, [notes_metadata])
    data = DataAPI(storage)
    for rtype in core_resource_types():
        data.add_resource_type(rtype)
    data.add_plugin(NotesPlugin())
    await data.updates.add_note("hello")
    auth = Authenticator(Auth(rules=[ControlRule(roles=["admin"], actions=["pin"])]), tmp_path)
    site = build_site({"api": RestApi(data, auth=auth).resource(), "auth": LoginPages(auth).resource()})
    async with serve(data, site, in_memory=True) as client:
        yield client


async def post(api: Api, headers: dict[str, str], body: Any = PIN) -> tuple[int, Any, Any]:
    response = await treq.post(
        api.url + "/api/v2/notes/1", data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **headers}, pool=api.pool,
    )
    return response.code, json.loads(await response.content()), response


@pytest_twisted.ensureDeferred
async def test_controls_need_a_token_of_the_right_role(api: Api, users: dict[str, str]) -> None:
    code, body, response = await post(api, {})
    assert code == 401 and body["error"]["code"] == -32001 and body["id"] == 7
    assert "authentication required" in body["error"]["message"]
    assert response.headers.getRawHeaders("WWW-Authenticate") == ['Bearer realm="ci-master"']

    code, body, _ = await post(api, {"Authorization": "Bearer cim_not-a-token"})
    assert code == 401 and "invalid or revoked" in body["error"]["message"]

    code, body, _ = await post(api, {"Authorization": f"Bearer {users['viewer']}"})
    assert code == 403 and body["error"]["code"] == -32003
    assert body["error"]["message"] == "user 'viewer' may not call 'pin' on notes"

    code, body, _ = await post(api, {"Authorization": f"Bearer {users['admin']}"})
    assert code == 200 and body["result"]["pinned"] is True

    # reads stay public
    code, body, _ = await api.get("/api/v2/notes/1")
    assert code == 200 and body["notes"][0]["pinned"] is True


@pytest_twisted.ensureDeferred
async def test_login_session_cookie_and_logout(api: Api) -> None:
    code, body, response = await api.get("/auth/login")
    assert code == 401 and response.headers.getRawHeaders("WWW-Authenticate") == ['Basic realm="ci-master"']

    bad = base64.b64encode(b"admin:wrong").decode()
    code, body, _ = await api.get("/auth/login", headers={"Authorization": f"Basic {bad}"})
    assert code == 401 and body == {"error": "wrong user name or password"}

    response = await treq.post(
        api.url + "/auth/login", json={"username": "admin", "password": "adminpw"}, pool=api.pool
    )
    assert response.code == 200
    assert (await response.json())["user"] == {"username": "admin", "roles": ["admin"], "anonymous": False}
    cookie = response.cookies()["ci_master_session"]
    set_cookie = response.headers.getRawHeaders("Set-Cookie")[0]
    assert "HttpOnly" in set_cookie and "SameSite=lax" in set_cookie

    code, body, _ = await post(api, {"Cookie": f"ci_master_session={cookie}"})
    assert code == 200, body
    code, body, _ = await api.get("/auth/user", headers={"Cookie": f"ci_master_session={cookie}"})
    assert body["user"]["username"] == "admin"

    forged = cookie[:-4] + ("AAAA" if not cookie.endswith("AAAA") else "BBBB")
    code, body, _ = await post(api, {"Cookie": f"ci_master_session={forged}"})
    assert code == 401

    code, body, _ = await api.get("/auth/logout")
    assert code == 200 and body == {"user": {"anonymous": True}}

    code, body, _ = await api.get("/auth/user")
    assert body == {"user": {"anonymous": True}}


@pytest_twisted.ensureDeferred
async def test_login_refuses_bad_bodies(api: Api) -> None:
    response = await treq.post(
        api.url + "/auth/login", data=b"{", headers={"Content-Type": "application/json"}, pool=api.pool
    )
    assert response.code == 400 and (await response.json()) == {"error": "the body is not JSON"}
    same_site = {"Origin": api.url.rstrip("/")}  # a form login must come from this site (CSRF)
    response = await treq.post(api.url + "/auth/login", data={"username": "admin"}, headers=same_site,
                               pool=api.pool)
    assert response.code == 401
    response = await treq.post(api.url + "/auth/login", data={"username": "admin", "password": "adminpw"},
                               headers=same_site, pool=api.pool)
    assert response.code == 200
