"""Bileto v1 (plugins/bileto) through real HTTP on both backends: queries, writes, comments, credentials."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest_twisted
import treq
from apiclient import Api, serve

from master.data.connector import DataAPI
from master.data.resources import core_resource_types
from master.db import migrate
from master.www.auth import Auth, Authenticator, ControlRule, UserStore
from master.www.login import LoginPages
from master.www.rest import RestApi
from master.www.site import build_site
from plugins.bileto import BiletoPlugin

API_TOKEN = "jenkins-knows-this"

SEED_TICKET = {
    "comments": [{"author": "timo-jyrinki", "date": "2015-07-06T06:30:12.899689", "id": 3, "request_id": 6,
                  "text": "I approve this!"}],
    "date": "2015-07-01T13:11:58.852196",
    "description": "browser desktop tabs prototype",
    "dest": "",
    "distribution": "ubuntu",
    "download_links": "",
    "jenkins": "http://ci-train.staging.ubuntu.com",
    "landers": "oSoMoN",
    "merge_proposals": "https://code.launchpad.net/~osomon/webbrowser-app/desktop-tabs-prototype/+merge/262358",
    "published_versions": "",
    "qa_signoff": "Ready for QA",
    "search": "whatever the client sends is ignored",
    "series": "dual",
    "siloname": "ubuntu/landing-000",
    "sources": "",
    "status": "Packages built",
    "sync_request": "",
    "test_plan": "",
}
SEED_SEARCH = (
    "6\nbrowser desktop tabs prototype\n\nhttps://code.launchpad.net/~osomon/webbrowser-app/desktop-tabs-prototype"
    "/+merge/262358\noSoMoN\nPackages built\nubuntu/landing-000\n\nubuntu\ndual\n\nReady for QA"
)
SEED_FIELDS = {
    "comments", "date", "description", "dest", "distribution", "download_links", "jenkins", "landers",
    "merge_proposals", "published_versions", "qa_signoff", "request_id", "search", "series", "siloname", "sources",
    "status", "sync_request", "test_plan",
}
ISO_MICROSECONDS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$")


@dataclass
class Bileto:
    """A served master-like site: /api/v2, /auth and the plugin's /v1, with users and their tokens."""

    api: Api
    data: DataAPI
    tokens: dict[str, str]

    async def request(
        self, method: str, path: str, body: Any = None, *, token: str | None = None, headers: dict | None = None
    ) -> tuple[int, Any, Any]:
        """Send *body* (JSON, or raw bytes) to *path*; return (status, decoded body, response)."""
        url = self.api.url + path + (f"{'&' if '?' in path else '?'}token={token}" if token else "")
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        response = await treq.request(method, url, data=data, headers=headers or {}, pool=self.api.pool)
        raw = await response.content()
        return response.code, json.loads(raw) if raw else None, response

    async def post(self, path: str, body: Any, token: str | None = API_TOKEN, **kw: Any) -> tuple[int, Any]:
        """POST with the site's bot token unless told otherwise; (status, body)."""
        code, decoded, _ = await self.request("POST", path, body, token=token, **kw)
        return code, decoded

    async def get(self, path: str) -> tuple[int, Any]:
        """GET; (status, body)."""
        code, decoded, _ = await self.request("GET", path)
        return code, decoded

    async def create(self, **fields: str) -> dict[str, Any]:
        """Create a ticket through POST /v1/tickets; return it."""
        code, body = await self.post("/v1/tickets", fields)
        assert code == 201, body
        return body["requests"][0]

    async def ids(self, path: str) -> list[int]:
        """The request ids a listing returns, in its order."""
        code, body = await self.get(path)
        assert code == 200, body
        assert set(body) == {"requests"}
        return [ticket["request_id"] for ticket in body["requests"]]


@pytest_twisted.async_yield_fixture()
async def bileto(storage: Any, migrated_url: str, tmp_path: Path) -> AsyncIterator[Bileto]:
    plugin = BiletoPlugin(api_token=API_TOKEN, series=["xenial", "dual"])
    # the plugin's tables as the master makes them: created at its newest Alembic revision
    migrate.prepare_plugin_tables(migrated_url, migrate.plugin_schemas([plugin]))
    store = UserStore(tmp_path / "users.json")
    store.add_user("trainguard", "tgpw", ["bileto"])
    store.add_user("viewer", None, ["viewer"])
    tokens = {"trainguard": store.new_token("trainguard")[1], "viewer": store.new_token("viewer")[1]}
    data = DataAPI(storage)
    for rtype in core_resource_types():
        data.add_resource_type(rtype)
    data.add_plugin(plugin)
    auth = Authenticator(Auth(rules=[ControlRule(roles=["bileto"], resources=["tickets"])]), tmp_path)
    data.auth = auth  # what the master service hands its DataAPI, for plugins' own routes
    site = build_site({
        "api": RestApi(data, auth=auth).resource(),
        "auth": LoginPages(auth).resource(),
        **plugin.web_resources(data),
    })
    async with serve(data, site, in_memory=True) as api:
        yield Bileto(api, data, tokens)


@pytest_twisted.ensureDeferred
async def test_a_ticket_has_the_seeds_fields_search_and_date(bileto: Bileto) -> None:
    for n in range(5):
        await bileto.create(description=f"filler {n}")
    ticket = await bileto.create(**SEED_TICKET)
    assert set(ticket) == SEED_FIELDS
    assert list(ticket) == sorted(SEED_FIELDS)  # the seed's key order
    assert ticket["request_id"] == 6
    assert ticket["search"] == SEED_SEARCH  # the seed's own example, slot for slot
    # date and comments in the body are ignored: the date is now, and there are no comments yet
    assert ticket["comments"] == [] and ticket["date"] != SEED_TICKET["date"]
    assert ISO_MICROSECONDS.match(ticket["date"]), ticket["date"]
    for name in ("dest", "download_links", "published_versions", "sources", "sync_request", "test_plan"):
        assert ticket[name] == ""
    for name in SEED_FIELDS - {"comments", "date", "request_id", "search"}:
        assert ticket[name] == SEED_TICKET[name]

    code, body = await bileto.get("/v1/ticket/6")
    assert code == 200 and body == {"requests": [ticket]}
    # the same entity through the core REST API: it is a data API resource type
    code, body = await bileto.get("/api/v2/tickets/6")
    assert code == 200 and body["tickets"] == [ticket]

    # a ticket created empty: every field "", the status "New", search still one slot per field
    empty = await bileto.create()
    assert empty["status"] == "New" and empty["description"] == "" and empty["qa_signoff"] == ""
    assert empty["search"] == "7\n\n\n\n\nNew\n\n\n\n\n\n"

    code, body = await bileto.get("/v1/ticket/99")
    assert code == 404 and body == {"error": "no ticket 99"}
    code, body = await bileto.get("/v1/ticket/six")
    assert code == 400 and "'six'" in body["error"]


@pytest_twisted.ensureDeferred
async def test_landed_and_abandoned_are_hidden_unless_asked_for(bileto: Bileto) -> None:
    building = (await bileto.create(landers="robru", status="Building"))["request_id"]
    landed = (await bileto.create(landers="robru", status="Landed"))["request_id"]
    abandoned = (await bileto.create(landers="timo", status="Abandoned"))["request_id"]
    built = (await bileto.create(landers="timo", status="Packages built"))["request_id"]

    # no parameters: active tickets only, newest first
    assert await bileto.ids("/v1/tickets") == [built, building]
    # paging names no field: still active only
    assert await bileto.ids("/v1/tickets?limit=10") == [built, building]
    # asking for the status
    assert await bileto.ids("/v1/tickets?status=Landed") == [landed]
    assert await bileto.ids("/v1/tickets?status=Abandoned") == [abandoned]
    # any field query includes them ...
    assert await bileto.ids("/v1/tickets?landers=robru") == [landed, building]
    # ... unless active_only is there, bare or true
    assert await bileto.ids("/v1/tickets?active_only&landers=robru") == [building]
    assert await bileto.ids("/v1/tickets?landers=robru&active_only=true") == [building]
    assert await bileto.ids("/v1/tickets?landers=robru&active_only=false") == [landed, building]
    assert await bileto.ids("/v1/tickets?active_only&status=Landed") == []
    assert await bileto.ids("/v1/tickets?active_only") == [built, building]
    code, body = await bileto.get("/v1/tickets?active_only=perhaps")
    assert code == 400 and "active_only" in body["error"]


@pytest_twisted.ensureDeferred
async def test_field_queries_are_case_insensitive_substrings(bileto: Bileto) -> None:
    a = (await bileto.create(landers="robru, timo-jyrinki", qa_signoff="Ready for QA", series="xenial",
                             description="Fix the Browser tabs"))["request_id"]
    b = (await bileto.create(landers="Robert", qa_signoff="QA Granted", series="dual",
                             merge_proposals="https://code.launchpad.net/~x/y/+merge/1"))["request_id"]
    c = (await bileto.create(landers="bobbert", qa_signoff="", series="xenial", sources="unity8"))["request_id"]

    assert await bileto.ids("/v1/tickets?qa_signoff=Ready") == [a]
    assert await bileto.ids("/v1/tickets?qa_signoff=ready") == [a]
    assert await bileto.ids("/v1/tickets?qa_signoff=QA") == [b, a]
    assert await bileto.ids("/v1/tickets?landers=robru") == [a]
    assert await bileto.ids("/v1/tickets?landers=ROB") == [b, a]
    # several fields must all match; one field twice matches either
    assert await bileto.ids("/v1/tickets?landers=rob&series=xenial") == [a]
    assert await bileto.ids("/v1/tickets?landers=robert&landers=bobbert") == [c, b]
    # request_id matches exactly, not as a substring
    assert await bileto.ids(f"/v1/tickets?request_id={a}") == [a]
    # search looks across the fields it joins
    assert await bileto.ids("/v1/tickets?search=browser") == [a]
    assert await bileto.ids("/v1/tickets?search=UNITY8") == [c]
    assert await bileto.ids("/v1/tickets?search=%2Bmerge") == [b]
    # LIKE's wildcards are plain characters in a query
    assert await bileto.ids("/v1/tickets?landers=%25") == []
    assert await bileto.ids("/v1/tickets?landers=r_b") == []
    # the token bots add to every URL is ignored on reads
    assert await bileto.ids("/v1/tickets?landers=robru&token=x") == [a]

    code, body = await bileto.get("/v1/tickets?lander=robru")
    assert code == 400 and "unknown field 'lander'" in body["error"]
    code, body = await bileto.get("/v1/tickets?comments=approve")
    assert code == 400 and "'comments'" in body["error"]
    code, body = await bileto.get("/v1/tickets?request_id=six")
    assert code == 400 and "request_id" in body["error"]


@pytest_twisted.ensureDeferred
async def test_paging_with_limit_and_offset(bileto: Bileto) -> None:
    made = [(await bileto.create(description=f"t{n}"))["request_id"] for n in range(7)]
    newest_first = made[::-1]
    code, body, response = await bileto.request("GET", "/v1/tickets?limit=3")
    assert code == 200 and [t["request_id"] for t in body["requests"]] == newest_first[:3]
    assert response.headers.getRawHeaders("X-Total-Count") == ["7"]
    assert await bileto.ids("/v1/tickets?limit=3&offset=3") == newest_first[3:6]
    assert await bileto.ids("/v1/tickets?limit=3&offset=6") == newest_first[6:]
    assert await bileto.ids("/v1/tickets?offset=7") == []
    assert await bileto.ids("/v1/tickets?description=t&limit=2&offset=1") == newest_first[1:3]
    code, body = await bileto.get("/v1/tickets?limit=many")
    assert code == 400 and "limit" in body["error"]
    code, body = await bileto.get("/v1/tickets?limit=100000")
    assert code == 400 and "limit" in body["error"]
    code, body = await bileto.get("/v1/tickets?offset=-1")
    assert code == 400 and "offset" in body["error"]


@pytest_twisted.ensureDeferred
async def test_user_silo_publishable_and_failures(bileto: Bileto) -> None:
    async def make(**fields: str) -> int:
        return (await bileto.create(**fields))["request_id"]

    bob = await make(landers="bobbert", siloname="ubuntu/landing-001", status="Building")
    bob_landed = await make(landers="bob", siloname="ubuntu/landing-001", status="Landed")
    other = await make(landers="alice", siloname="ubuntu/landing-012", status="Packages built",
                       qa_signoff="QA Granted")
    waived = await make(landers="carol", siloname="ubuntu-rtm/landing-003", status="Packages built",
                        qa_signoff="Publish without QA")
    unsigned = await make(landers="dave", status="Packages built", qa_signoff="Ready for QA")
    granted_building = await make(landers="erin", status="Building", qa_signoff="QA Granted")
    cant = await make(landers="frank", status="Can't publish: not approved")
    failed = await make(landers="gina", status="Build FAILED")
    error = await make(landers="hal", status="Internal error while building")
    await make(landers="ivan", status="Published")

    # /v1/user: substring of landers, active only
    assert await bileto.ids("/v1/user/bob") == [bob]
    assert await bileto.ids("/v1/user/BOBBERT") == [bob]
    assert await bileto.ids("/v1/user/nobody") == []
    # /v1/silo: substring of the silo name, active only, short and full names
    assert await bileto.ids("/v1/silo/001") == [bob]
    assert await bileto.ids("/v1/silo/ubuntu/landing-001") == [bob]
    assert await bileto.ids("/v1/silo/landing-0") == [waived, other, bob]
    assert await bileto.ids("/v1/silo/ubuntu-rtm/landing-003") == [waived]
    # paging and field filters combine with them
    assert await bileto.ids("/v1/silo/landing-0?limit=1&offset=1") == [other]
    assert await bileto.ids("/v1/user/bob?status=build") == [bob]
    code, body = await bileto.get("/v1/user/bob?colour=red")
    assert code == 400 and "unknown field 'colour'" in body["error"]
    # /v1/publishable: Packages built with QA granted or waived
    assert await bileto.ids("/v1/publishable") == [waived, other]
    assert unsigned not in await bileto.ids("/v1/publishable")
    assert granted_building not in await bileto.ids("/v1/publishable")
    # /v1/failures: can't, failed or error in the status, any case
    assert await bileto.ids("/v1/failures") == [error, failed, cant]
    assert bob_landed not in await bileto.ids("/v1/failures")


@pytest_twisted.ensureDeferred
async def test_metadata_documents_fields_and_lists(bileto: Bileto) -> None:
    code, body = await bileto.get("/v1/metadata")
    assert code == 200
    assert set(body) == {"fields", "statuses", "qa_signoff", "distributions", "series"}
    assert set(body["fields"]) == SEED_FIELDS
    assert all(isinstance(doc, str) and doc for doc in body["fields"].values())
    assert "silo" in body["fields"]["siloname"]
    assert {"Packages built", "Landed", "Abandoned"} <= set(body["statuses"])
    assert {"QA Granted", "Publish without QA", "Ready for QA"} <= set(body["qa_signoff"])
    assert "ubuntu" in body["distributions"]
    assert body["series"] == ["xenial", "dual"]  # as the site configured


@pytest_twisted.ensureDeferred
async def test_an_update_comments_each_change_and_keeps_search_current(bileto: Bileto) -> None:
    events: list[tuple[str, ...]] = []
    bileto.data.events.subscribe(("tickets", "*", "*"), lambda key, entity: events.append(key))
    bileto.data.events.subscribe(("ticket_comments", "*", "*"), lambda key, entity: events.append(key))
    ticket = await bileto.create(**{**SEED_TICKET, "search": ""})
    rid = ticket["request_id"]
    assert events == [("tickets", str(rid), "new")]
    events.clear()

    change = {"request_id": rid, "author": "robru", "status": "Landed", "siloname": "",
              "landers": "oSoMoN",  # unchanged: no comment
              "date": "1999-01-01T00:00:00.000000", "comments": [{"text": "ignored"}], "search": "ignored"}
    code, body = await bileto.post("/v1/tickets", change)
    assert code == 200, body
    updated = body["requests"][0]
    assert updated["status"] == "Landed" and updated["siloname"] == ""
    assert updated["date"] == ticket["date"]  # the creation date stays
    assert [(c["author"], c["text"]) for c in updated["comments"]] == [
        ("robru", "siloname changed from ubuntu/landing-000 to (empty)"),
        ("robru", "status changed from Packages built to Landed"),
    ]
    assert all(c["request_id"] == rid and ISO_MICROSECONDS.match(c["date"]) for c in updated["comments"])
    assert updated["search"] == SEED_SEARCH.replace("6\n", f"{rid}\n", 1).replace(
        "Packages built\nubuntu/landing-000", "Landed\n")
    assert events == [("tickets", str(rid), "update"),
                      *[("ticket_comments", str(c["id"]), "new") for c in updated["comments"]]]

    # search follows the change: the new value is found, the old one no more
    assert await bileto.ids("/v1/tickets?search=landing-000") == []
    assert await bileto.ids("/v1/tickets?search=landed") == [rid]
    # and the ticket, now Landed, left the default listing
    assert rid not in await bileto.ids("/v1/tickets")

    # the same values again: nothing changed, no comment, no event
    events.clear()
    code, body = await bileto.post("/v1/tickets", change)
    assert code == 200 and len(body["requests"][0]["comments"]) == 2
    assert events == []
    # null means empty; request_id may be a string of digits
    code, body = await bileto.post("/v1/tickets", {"request_id": str(rid), "author": "bot", "jenkins": None})
    assert code == 200 and body["requests"][0]["jenkins"] == ""
    assert body["requests"][0]["comments"][-1]["text"] == "jenkins changed from http://ci-train.staging.ubuntu.com" \
                                                         " to (empty)"
    # the comments are a resource type too
    code, body = await bileto.get(f"/api/v2/tickets/{rid}/comments")
    assert code == 200 and [c["text"] for c in body["ticket_comments"]][-1].startswith("jenkins changed")


@pytest_twisted.ensureDeferred
async def test_bad_posts_are_refused_with_the_reason(bileto: Bileto) -> None:
    rid = (await bileto.create(description="x"))["request_id"]
    code, body = await bileto.post("/v1/tickets", {"description": "y", "colour": "red"})
    assert code == 400 and body == {"error": "unknown field 'colour'"}
    code, body = await bileto.post("/v1/tickets", {"request_id": rid, "author": "a", "flavour": "x"})
    assert code == 400 and body == {"error": "unknown field 'flavour'"}
    code, body = await bileto.post("/v1/tickets", {"request_id": rid, "author": "a", "status": 3})
    assert code == 400 and body == {"error": "status: expected a string, got int"}
    code, body = await bileto.post("/v1/tickets", {"request_id": "six", "author": "a"})
    assert code == 400 and body == {"error": "request_id must be an integer, got 'six'"}
    code, body = await bileto.post("/v1/tickets", {"request_id": 999, "author": "a", "status": "x"})
    assert code == 404 and body == {"error": "not found: tickets/999"}
    code, body = await bileto.post("/v1/tickets", {"request_id": rid, "status": "Landed"})
    assert code == 400 and body["error"].startswith("author: required")
    code, body = await bileto.post("/v1/tickets", b"{not json")
    assert code == 400 and body["error"].startswith("the body is not JSON")
    code, body = await bileto.post("/v1/tickets", [1, 2])
    assert code == 400 and body == {"error": "the body must be a JSON object, not list"}
    # nothing of the refused posts was written
    code, body = await bileto.get(f"/v1/ticket/{rid}")
    assert body["requests"][0]["status"] == "New" and body["requests"][0]["comments"] == []


@pytest_twisted.ensureDeferred
async def test_comments_are_posted_to_a_ticket(bileto: Bileto) -> None:
    rid = (await bileto.create(description="x"))["request_id"]
    code, body = await bileto.post("/v1/comment", {"request_id": rid, "text": "This request is broken, please fix it.",
                                                   "author": "trainguard-bot"})
    assert code == 201, body
    comment = body["comments"][0]
    assert list(comment) == ["author", "date", "id", "request_id", "text"]
    assert comment["author"] == "trainguard-bot" and comment["request_id"] == rid
    code, body = await bileto.get(f"/v1/ticket/{rid}")
    assert body["requests"][0]["comments"] == [comment]
    code, body = await bileto.get(f"/api/v2/ticket_comments/{comment['id']}")
    assert body["ticket_comments"] == [comment]

    code, body = await bileto.post("/v1/comment", {"text": "where?", "author": "a"})
    assert code == 400 and "request_id is required" in body["error"]
    code, body = await bileto.post("/v1/comment", {"request_id": rid, "text": "  ", "author": "a"})
    assert code == 400 and body == {"error": "text: must not be empty"}
    code, body = await bileto.post("/v1/comment", {"request_id": rid, "author": "a"})
    assert code == 400 and body == {"error": "text: required"}
    code, body = await bileto.post("/v1/comment", {"request_id": 999, "text": "hi", "author": "a"})
    assert code == 404
    code, body = await bileto.post("/v1/comment", {"request_id": rid, "text": "hi", "author": "a", "mood": "ok"})
    assert code == 400 and body == {"error": "unknown field 'mood'"}


@pytest_twisted.ensureDeferred
async def test_posts_need_the_site_token_or_an_allowed_ci_master_user(bileto: Bileto) -> None:
    new = {"description": "by whom?"}
    code, body, response = await bileto.request("POST", "/v1/tickets", new)
    assert code == 401 and "authentication required" in body["error"]
    assert response.headers.getRawHeaders("WWW-Authenticate") == ['Bearer realm="ci-master"']
    code, body = await bileto.post("/v1/tickets", new, token="wrong")
    assert code == 401 and body == {"error": "invalid token"}
    code, body = await bileto.post("/v1/comment", {"request_id": 1, "text": "x"}, token="wrong")
    assert code == 401
    # a ci-master user whose roles the rules do not allow on tickets
    code, body = await bileto.post("/v1/tickets", new, token=bileto.tokens["viewer"])
    assert code == 403 and body == {"error": "user 'viewer' may not call 'create' on tickets"}

    # a ci-master user with the role, by token in the query and by Bearer header; the author defaults to them
    code, body = await bileto.post("/v1/tickets", new, token=bileto.tokens["trainguard"])
    assert code == 201, body
    rid = body["requests"][0]["request_id"]
    code, body = await bileto.post("/v1/tickets", {"request_id": rid, "status": "Building"}, token=None,
                                   headers={"Authorization": f"Bearer {bileto.tokens['trainguard']}"})
    assert code == 200 and body["requests"][0]["comments"][0]["author"] == "trainguard"

    # a browser session: log in at /auth/login, then POST with the cookie
    response = await treq.post(bileto.api.url + "/auth/login", json={"username": "trainguard", "password": "tgpw"},
                               pool=bileto.api.pool)
    assert response.code == 200
    cookie = {"Cookie": f"ci_master_session={response.cookies()['ci_master_session']}",
              "Content-Type": "application/json"}  # a cookie's state change must be JSON (or same-origin)
    code, body = await bileto.post("/v1/comment", {"request_id": rid, "text": "from the web UI"}, token=None,
                                   headers=cookie)
    assert code == 201 and body["comments"][0]["author"] == "trainguard"
    code, body = await bileto.post("/v1/comment", {"request_id": rid, "text": "forged"}, token=None,
                                   headers={"Cookie": "ci_master_session=bm9wZQ.AAAA",
                                            "Content-Type": "application/json"})
    assert code == 401

    # the site's API token (Jenkins'): allowed whatever the rules
    code, body = await bileto.post("/v1/tickets", {"request_id": rid, "status": "Built", "author": "jenkins"})
    assert code == 200 and body["requests"][0]["comments"][-1]["author"] == "jenkins"
    # and nothing the refused posts sent was written
    code, body = await bileto.get(f"/v1/ticket/{rid}")
    assert [c["text"] for c in body["requests"][0]["comments"]] == [
        "status changed from New to Building", "from the web UI", "status changed from Building to Built"]
    assert await bileto.ids("/v1/tickets?description=by whom") == [rid]


@pytest_twisted.ensureDeferred
async def test_the_tickets_actions_on_api_v2_follow_the_masters_rules(bileto: Bileto) -> None:
    rid = (await bileto.create(description="x"))["request_id"]
    rpc = {"jsonrpc": "2.0", "id": 1, "method": "update", "params": {"status": "Publishing"}}
    code, body, _ = await bileto.request("POST", f"/api/v2/tickets/{rid}", rpc,
                                         headers={"Content-Type": "application/json"})
    assert code == 401
    code, body, _ = await bileto.request(
        "POST", f"/api/v2/tickets/{rid}", rpc,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {bileto.tokens['trainguard']}"},
    )
    assert code == 200, body
    assert body["result"]["comments"][0] == {**body["result"]["comments"][0], "author": "trainguard",
                                             "text": "status changed from New to Publishing"}


@pytest_twisted.ensureDeferred
async def test_unknown_paths_and_methods_get_json_errors(bileto: Bileto) -> None:
    code, body = await bileto.get("/v1/nothing/here")
    assert code == 404 and body == {"error": "no such path: /v1/nothing/here"}
    code, body = await bileto.get("/v1")
    assert code == 404 and "/v1/tickets" in body["error"]
    code, body, response = await bileto.request("DELETE", "/v1/tickets")
    assert code == 405 and response.headers.getRawHeaders("Allow") == ["GET, HEAD, POST"]
    code, body, response = await bileto.request("GET", "/v1/comment")
    assert code == 405 and response.headers.getRawHeaders("Allow") == ["POST"]
    code, body, response = await bileto.request("POST", "/v1/metadata", {})
    assert code == 405 and "not allowed" in body["error"]


@pytest_twisted.ensureDeferred
async def test_concurrent_updates_leave_a_consistent_comment_trail(bileto: Bileto) -> None:
    from twisted.internet import defer

    rid = (await bileto.create(status="s0"))["request_id"]
    posts = [
        defer.ensureDeferred(bileto.post("/v1/tickets", {"request_id": rid, "author": f"bot{n}", "status": f"s{n}"}))
        for n in range(1, 9)
    ]
    results = await defer.gatherResults(posts, consumeErrors=True)
    assert all(code == 200 for code, _ in results), results
    code, body = await bileto.get(f"/v1/ticket/{rid}")
    ticket = body["requests"][0]
    trail = [c["text"] for c in ticket["comments"]]
    assert len(trail) == 8
    # each update compared against the value the previous one wrote: the changes chain up
    current = "s0"
    for text in trail:
        prefix = f"status changed from {current} to "
        assert text.startswith(prefix), (text, trail)
        current = text[len(prefix):]
    assert current == ticket["status"] and ticket["search"].split("\n")[5] == current


@pytest_twisted.ensureDeferred
async def test_an_open_master_accepts_writes_and_an_unwired_one_refuses_them(
    storage: Any, migrated_url: str, tmp_path: Path
) -> None:
    plugin = BiletoPlugin()  # no api_token
    migrate.prepare_plugin_tables(migrated_url, migrate.plugin_schemas([plugin]))
    data = DataAPI(storage)
    data.add_plugin(plugin)
    async with serve(data, build_site(plugin.web_resources(data)), in_memory=True) as api:
        site = Bileto(api, data, {})
        # the master's Authenticator with auth off: writes are open, as the master's controls are
        data.bind_auth(Authenticator(None, tmp_path))
        code, body = await site.post("/v1/tickets", {"description": "open"}, token=None)
        assert code == 201, body
        code, body = await site.post("/v1/tickets", {"description": "x"}, token="anything")
        assert code == 401 and body == {"error": "invalid token"}
        # no Authenticator handed over at all: closed, whatever the request carries
        data.bind_auth(None)
        code, body = await site.post("/v1/tickets", {"description": "closed"}, token=None)
        assert code == 401 and "only BiletoPlugin(api_token=...) can write" in body["error"]
        assert await site.ids("/v1/tickets") == [1]


@pytest_twisted.ensureDeferred
async def test_read_rules_of_the_master_apply_to_v1(bileto: Bileto, tmp_path: Path) -> None:
    from master.www.auth import ReadRule

    rid = (await bileto.create(description="secret landing"))["request_id"]
    # the master restarts with read rules: only role bileto reads tickets (same users file)
    bileto.data.auth = Authenticator(
        Auth(rules=[ControlRule(roles=["bileto"], resources=["tickets"])],
             read_rules=[ReadRule(roles=["bileto"], resources=["tickets"])]),
        tmp_path,
    )
    for path in ("/v1/tickets", f"/v1/ticket/{rid}", "/v1/user/x", "/v1/silo/1", "/v1/publishable", "/v1/failures"):
        code, body = await bileto.get(path)
        assert code == 401 and body == {"error": "authentication required to read tickets"}, path
    code, body, _ = await bileto.request("GET", "/v1/tickets", token=bileto.tokens["viewer"])
    assert code == 403 and body == {"error": "user 'viewer' may not read tickets"}
    code, body, _ = await bileto.request("GET", "/v1/tickets", token="wrong")
    assert code == 401
    code, body, _ = await bileto.request("GET", "/v1/tickets", token=bileto.tokens["trainguard"])
    assert code == 200 and [t["request_id"] for t in body["requests"]] == [rid]
    code, body, _ = await bileto.request("GET", f"/v1/ticket/{rid}", token=API_TOKEN)
    assert code == 200 and body["requests"][0]["description"] == "secret landing"
    code, body = await bileto.get("/v1/metadata")  # documentation only: public
    assert code == 200
