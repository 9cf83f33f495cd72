"""Cross-site request forgery: no state change through a GET, none riding on the cookie from another site.

Self-serve's ``_method`` is honoured on a POST only; a cookie-authenticated POST (core,
plugins, ``/auth/login``) needs ``Content-Type: application/json`` or an Origin/Referer of
this site, while Bearer, Basic and token requests are unaffected.  On both backends.
"""

from __future__ import annotations

import json
from typing import Any

import pytest_twisted
import treq
from test_bileto import API_TOKEN, Bileto, bileto  # noqa: F401 (bileto is a fixture)
from test_selfserve import ALICE, Site, a_build, a_request, site  # noqa: F401 (site is a fixture)

EVIL = "https://evil.example"


async def send(url: str, pool: Any, method: str, body: bytes | dict | None = None,
               headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """One request; (status, decoded JSON body or None)."""
    response = await treq.request(method, url, data=body, headers=headers or {}, pool=pool, allow_redirects=False)
    raw = await response.content()
    try:
        return response.code, json.loads(raw) if raw else None
    except ValueError:
        return response.code, raw.decode()


# -- item 3: self-serve's _method ----------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_selfserve_method_override_only_on_post(site: Site) -> None:  # noqa: F811
    client = site.client
    _, buildid = await a_build(site.data)
    _, brid = await a_request(site.data)
    jobs_before = (await site.data.get("selfservejobs")).total

    # what a cross-site link can make a browser send, with the admin's credentials: refused, nothing queued
    for path in (f"/self-serve/main/build?_method=POST&build_id={buildid}&format=json",
                 f"/self-serve/main/request/{brid}?_method=DELETE&format=json",
                 f"/self-serve/main/request/{brid}?_method=PUT&priority=9&format=json",
                 f"/self-serve/main/rev/{'a1b2c3d4e5f6a7b8c9d0a1b2c3d4e5f6a7b8c9d0'}?_method=DELETE"):
        reply = await client.call("GET", path, user=ALICE)
        assert reply.code == 405, (path, reply.code, reply.text)
        assert "only honoured on a POST" in reply.json["msg"], reply.text
    assert (await site.data.get("selfservejobs")).total == jobs_before
    request = await site.data.get(("buildrequests", str(brid)))
    assert request["complete"] is False and request["priority"] == 0
    # a GET without _method (or naming GET) still reads
    assert (await client.call("GET", f"/self-serve/main/request/{brid}?_method=GET")).code == 200
    # and a POST still selects the route by _method, as BuildAPI's HTML forms do
    reply = await client.call("POST", f"/self-serve/main/request/{brid}", {"_method": "DELETE"})
    assert (await client.job(reply))["action"] == "cancel_request"


# -- item 8: cookie-authenticated state changes ----------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_cookie_writes_need_json_or_this_sites_origin(bileto: Bileto, site: Site) -> None:  # noqa: F811
    url, pool = bileto.api.url, bileto.api.pool
    ticket = json.dumps({"description": "forged?"}).encode()

    # a form login from another site is refused; JSON, or a form from this site, logs in
    login = {"username": "trainguard", "password": "tgpw"}
    assert (await send(url + "/auth/login", pool, "POST", login, {"Origin": EVIL}))[0] == 403
    assert (await send(url + "/auth/login", pool, "POST", login))[0] == 403  # no Origin nor Referer
    assert (await send(url + "/auth/login", pool, "POST", login, {"Referer": EVIL + "/page"}))[0] == 403
    assert (await send(url + "/auth/login", pool, "POST", login, {"Origin": url}))[0] == 200
    assert (await send(url + "/auth/login", pool, "POST", login, {"Referer": url + "/#/builders"}))[0] == 200
    response = await treq.post(url + "/auth/login", json=login, pool=pool)
    assert response.code == 200
    cookie = {"Cookie": f"ci_master_session={response.cookies()['ci_master_session']}"}

    # Bileto POST /v1/tickets with the cookie: a text/plain body (what a cross-site fetch or form sends) is refused
    code, body = await send(url + "/v1/tickets", pool, "POST", ticket, {**cookie, "Content-Type": "text/plain"})
    assert code == 403 and "session cookie" in body["error"], body
    code, body = await send(url + "/v1/tickets", pool, "POST", ticket,
                            {**cookie, "Content-Type": "text/plain", "Origin": EVIL})
    assert code == 403 and EVIL in body["error"], body
    assert (await bileto.ids("/v1/tickets")) == []
    # JSON, or a body from a page of this site, is served
    code, body = await send(url + "/v1/tickets", pool, "POST", ticket, {**cookie, "Content-Type": "application/json"})
    assert code == 201, body
    code, body = await send(url + "/v1/tickets", pool, "POST", ticket,
                            {**cookie, "Content-Type": "text/plain", "Origin": url})
    assert code == 201, body
    # credentials of its own (Bearer, the site token) are not a forgery, whatever the body type or origin
    code, body = await send(url + "/v1/tickets", pool, "POST", ticket,
                            {"Authorization": f"Bearer {bileto.tokens['trainguard']}", "Content-Type": "text/plain",
                             "Origin": EVIL})
    assert code == 201, body
    code, body = await send(url + f"/v1/tickets?token={API_TOKEN}", pool, "POST", ticket,
                            {"Content-Type": "text/plain"})
    assert code == 201, body
    assert len(await bileto.ids("/v1/tickets")) == 4
    # core JSON-RPC with the cookie from another site: refused before the action is looked at
    rpc = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "create", "params": {"description": "x"}}).encode()
    code, body = await send(url + "/api/v2/tickets", pool, "POST", rpc, {**cookie, "Content-Type": "text/plain",
                                                                        "Origin": EVIL})
    assert code == 403, body
    # reads with the cookie are not state changes
    assert (await send(url + "/v1/tickets", pool, "GET", None, {**cookie, "Origin": EVIL}))[0] == 200

    # self-serve: an HTML form posted from another site with an admin's cookie queues nothing
    _, brid = await a_request(site.data)
    site.data.auth.users.add_user("rel", "relpw", ["release"])
    session = site.data.auth.make_session(site.data.auth.users.user("rel"))
    form = {"_method": "DELETE"}
    headers = {"Cookie": f"ci_master_session={session}", "Accept": "application/json"}
    code, body = await send(site.client.url + f"/self-serve/main/request/{brid}", site.client.pool, "POST", form,
                            {**headers, "Origin": EVIL})
    assert code == 403, body
    assert (await site.data.get("selfservejobs")).total == 0
    code, body = await send(site.client.url + f"/self-serve/main/request/{brid}", site.client.pool, "POST", form,
                            {**headers, "Origin": site.client.url})
    assert code == 202, body
