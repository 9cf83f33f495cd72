"""Sessions end on the master: logout, a password change and ``ci-master user remove`` make the cookie useless."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import treq
from apiclient import Api
from cliutil import run
from test_auth import api, post, users  # noqa: F401 (fixtures)

from master.www.auth import UserStore


async def login(api: Api, name: str = "admin", password: str = "adminpw") -> dict[str, str]:  # noqa: F811
    """Log in with a JSON body; the Cookie header of the session."""
    response = await treq.post(api.url + "/auth/login", json={"username": name, "password": password},
                               pool=api.pool)
    assert response.code == 200, await response.text()
    return {"Cookie": f"ci_master_session={response.cookies()['ci_master_session']}"}


async def whoami(api: Api, cookie: dict[str, str]) -> Any:  # noqa: F811
    """The user name the cookie authenticates, or None."""
    _, body, _ = await api.get("/auth/user", headers=cookie)
    return body["user"].get("username")


@pytest_twisted.ensureDeferred
async def test_logout_ends_the_session_on_the_master(api: Api, tmp_path: Path) -> None:  # noqa: F811
    cookie = await login(api)
    other = await login(api)  # the same user in another browser
    assert await whoami(api, cookie) == "admin"
    assert (await post(api, cookie))[0] == 200
    code, body, response = await api.get("/auth/logout", headers=cookie)
    assert code == 200 and body == {"user": {"anonymous": True}}
    # the old cookie, sent again (copied, or by a browser that ignored the logout), no longer works
    assert await whoami(api, cookie) is None
    code, body, _ = await post(api, cookie)
    assert code == 401 and "authentication required" in body["error"]["message"]
    # only that session ended
    assert await whoami(api, other) == "admin"
    ended = tmp_path / "sessions_ended.json"
    assert ended.stat().st_mode & 0o077 == 0 and len(json.loads(ended.read_text())) == 1
    # POST /auth/logout too (with JSON, as the CSRF rule asks of cookie-carrying state changes)
    response = await treq.post(api.url + "/auth/logout", json={}, headers=other, pool=api.pool)
    assert response.code == 200
    assert await whoami(api, other) is None


@pytest.mark.slow  # runs ci-master user
@pytest_twisted.ensureDeferred
async def test_a_password_change_or_removal_ends_the_users_sessions(api: Api, tmp_path: Path) -> None:  # noqa: F811
    store = UserStore(tmp_path / "users.json")
    store.add_user("dev", "devpw", ["admin"])
    (tmp_path / "master.cfg").write_text(
        "from master.config import MasterConfig\nfrom master.www.auth import Auth\n"
        "config = MasterConfig(db_url='sqlite:///state.sqlite', auth=Auth())\n")
    admin, dev = await login(api), await login(api, "dev", "devpw")
    # the CLI changes dev's password under the running master: dev's sessions end, admin's do not
    done = run("user", "add", str(tmp_path), "dev", "--role", "admin", "--password-stdin", cwd=tmp_path,
               stdin="newpw\n")
    assert done.returncode == 0, done.stderr
    assert await whoami(api, dev) is None and await whoami(api, admin) == "admin"
    dev = await login(api, "dev", "newpw")
    assert await whoami(api, dev) == "dev"
    # the CLI removes dev: the session ends, and re-adding the name does not bring it back
    done = run("user", "remove", str(tmp_path), "dev", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert await whoami(api, dev) is None
    store.add_user("dev", "newpw", ["admin"])
    assert await whoami(api, dev) is None
    assert (await post(api, dev))[0] == 401
