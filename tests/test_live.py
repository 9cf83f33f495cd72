"""``/ws`` live updates on both backends, through a real port and a real Autobahn client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_twisted
import sqlalchemy as sa
from apiclient import Api, serve
from liveclient import LiveClient
from twisted.internet import defer, reactor
from twisted.internet.task import deferLater
from waiting import within

from master.data.connector import DataAPI
from master.data.resources import core_resource_types
from master.db import schema
from master.results import SUCCESS
from master.www.auth import Auth, Authenticator, ReadRule, UserStore
from master.www.rest import RestApi
from master.www.site import build_site
from master.www.ws import CLOSE_TOO_SLOW, LiveUpdates


@pytest_twisted.async_yield_fixture()
async def data(storage: Any) -> AsyncIterator[DataAPI]:
    """Builder 'hello' (id 1), worker w1 (id 1), a buildset with one request."""
    api = DataAPI(storage)
    for rtype in core_resource_types():
        api.add_resource_type(rtype)
    api.bind_master(await api.updates.master_active("m1"))
    await api.updates.update_builder("hello")
    await storage.execute(sa.insert(schema.buildsets).values(submitted_at=1, reason="test"))
    await storage.execute(sa.insert(schema.buildrequests).values(buildsetid=1, builderid=1, submitted_at=1))
    await storage.execute(sa.insert(schema.workers).values(name="w1"))
    yield api


async def _served(data: DataAPI, auth: Authenticator | None = None, **options: Any) -> Any:
    live = LiveUpdates(data, auth, **options)
    site = build_site({"api": RestApi(data, auth=auth).resource(), "ws": live.resource()})
    return live, serve(data, site)


@pytest_twisted.async_yield_fixture()
async def api(data: DataAPI) -> AsyncIterator[Api]:
    live, served = await _served(data)
    async with served as running:
        yield running
    live.stop()


def ws_url(api: Api) -> str:
    return api.url.replace("http://", "ws://") + "/ws"


@pytest_twisted.async_yield_fixture()
async def client(api: Api) -> AsyncIterator[LiveClient]:
    connected = await LiveClient(ws_url(api)).connect()
    yield connected
    connected.close()


async def run_build(data: DataAPI) -> int:
    """A build on builder 1 and worker 1 through new, two updates and finished; return its id."""
    buildid, _ = await data.updates.add_build(1, 1, 1, None)
    await data.updates.set_build_state_string(buildid, "building")
    await data.updates.set_build_state_string(buildid, "almost")
    await data.updates.finish_build(buildid, SUCCESS)
    return buildid


# -- the protocol -------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_commands_and_their_errors(client: LiveClient) -> None:
    assert await client.command("ping") == {"msg": "pong", "code": 200, "_id": 1}
    assert (await client.command("startConsuming", path="builds/*/*"))["code"] == 200
    assert (await client.command("stopConsuming", path="builds/*/*"))["code"] == 200
    reply = await client.command("stopConsuming", path="builds/*/*")
    assert reply["code"] == 400 and "not consuming" in reply["error"]
    reply = await client.command("startConsuming", path="nothing/here/*")
    assert reply["code"] == 400 and "nothing is published under 'nothing/here/*'" in reply["error"]
    reply = await client.command("startConsuming", path="control/builds/*")
    assert reply["code"] == 400  # internal topics are not exposed
    reply = await client.command("startConsuming")
    assert reply["code"] == 400 and reply["error"] == "missing 'path'"
    reply = await client.command("fly")
    assert reply["code"] == 404 and "unknown command 'fly'" in reply["error"]
    reply = await client.command("startConsuming", path="builds/*/*", since="yesterday")
    assert reply["code"] == 400 and "since" in reply["error"]
    reply = await client.command("startConsuming", path="builds/*/*", since=2**63)  # beyond what SQL binds
    assert reply["code"] == 400 and "since" in reply["error"]
    # frames without an _id or a cmd, and frames that are not JSON objects
    for frame, error in ((b'{"cmd": "ping"}', "missing '_id'"), (b'{"_id": 99}', "missing 'cmd'"),
                         (b"not json", "the frame is not JSON"), (b"[1]", "the frame must be a JSON object")):
        before = len(client.unmatched)
        waiter = None
        if b'"_id": 99' in frame:
            waiter = client.replies[99] = defer.Deferred()
        client.send_raw(frame)
        if waiter is not None:
            reply = await within(waiter)
        else:
            for _ in range(100):
                if len(client.unmatched) > before:
                    break
                await deferLater(reactor, 0.02, lambda: None)
            reply = client.unmatched[-1]
        assert reply["code"] == 400 and reply["error"] == error


@pytest_twisted.ensureDeferred
async def test_new_update_finished_in_order_under_every_path(data: DataAPI, api: Api) -> None:
    clients = {}
    for path in ("builds/*/*", "builders/1/builds/*/*", "workers/1/builds/*/*", "builds/*/finished"):
        clients[path] = await LiveClient(ws_url(api)).connect()
        assert (await clients[path].command("startConsuming", path=path))["code"] == 200
    buildid = await run_build(data)
    got = await clients["builds/*/*"].events_until(lambda m: m["k"].endswith("/finished"))
    assert [m["k"] for m in got] == [f"builds/{buildid}/{e}" for e in ("new", "update", "update", "finished")]
    assert [m["m"]["state_string"] for m in got][1:3] == ["building", "almost"]
    assert got[-1]["m"]["complete"] is True and got[-1]["m"]["results"] == SUCCESS
    assert set(got[0]["m"]) >= {"buildid", "number", "builderid", "workerid", "complete", "started_at"}
    ids = [m["id"] for m in got]
    assert ids == sorted(ids) and len(set(ids)) == 4
    by_builder = await clients["builders/1/builds/*/*"].events_until(lambda m: m["k"].endswith("/finished"))
    assert [m["k"] for m in by_builder][0] == "builders/1/builds/1/new"
    assert [m["id"] for m in by_builder] == ids  # the same events, under the builder's path
    by_worker = await clients["workers/1/builds/*/*"].events_until(lambda m: m["k"].endswith("/finished"))
    assert [m["k"] for m in by_worker][-1] == f"workers/1/builds/{buildid}/finished"
    finished = await clients["builds/*/finished"].next_event()
    assert finished["k"] == f"builds/{buildid}/finished" and finished["id"] == ids[-1]
    for connected in clients.values():
        assert connected.events.pending == []  # nothing more, nothing twice
        connected.close()


@pytest_twisted.ensureDeferred
async def test_resume_with_since_gets_exactly_the_missed_events(data: DataAPI, api: Api) -> None:
    first = await LiveClient(ws_url(api)).connect()
    await first.command("startConsuming", path="builds/*/*")
    buildid, _ = await data.updates.add_build(1, 1, 1, None)
    seen = await first.next_event()
    assert seen["k"] == f"builds/{buildid}/new"
    first.drop()  # gone mid-build, without a goodbye
    await within(first.closed, what="close")
    await data.updates.set_build_state_string(buildid, "step 1")
    await data.updates.set_build_state_string(buildid, "step 2")
    await data.updates.add_build(1, 1, None, None)  # another build: also under builds/*/*
    again = await LiveClient(ws_url(api)).connect()
    reply = await again.command("startConsuming", path=f"builds/{buildid}/*", since=seen["id"])
    assert reply["code"] == 200
    missed = [await again.next_event() for _ in range(2)]
    assert [m["k"] for m in missed] == [f"builds/{buildid}/update"] * 2
    assert [m["m"]["state_string"] for m in missed] == ["step 1", "step 2"]
    assert missed[0]["id"] > seen["id"] and missed[1]["id"] > missed[0]["id"]
    await data.updates.finish_build(buildid, SUCCESS)  # then live events follow
    live = await again.next_event()
    assert live["k"] == f"builds/{buildid}/finished" and live["id"] > missed[1]["id"]
    assert again.events.pending == []
    again.close()


@pytest_twisted.ensureDeferred
async def test_resume_from_a_pruned_id_says_reload(data: DataAPI, client: LiveClient) -> None:
    await client.command("startConsuming", path="builds/*/*")
    await run_build(data)
    await run_build(data)
    ids = [(await client.next_event())["id"] for _ in range(8)]
    cut = ids[3]
    await data.storage.execute(sa.delete(schema.events).where(schema.events.c.id <= cut))  # as pruning does
    again = await LiveClient(client.url).connect()
    reply = await again.command("startConsuming", path="builds/*/*", since=cut - 1)
    assert reply["code"] == 410 and "reload" in reply["error"]
    reply = await again.command("startConsuming", path="builds/*/*", since=cut)
    assert reply["code"] == 200  # everything after the cut is still there
    assert [(await again.next_event())["id"] for _ in range(4)] == ids[4:]
    again.close()


@pytest_twisted.ensureDeferred
async def test_a_log_subscription_receives_the_lines(data: DataAPI, client: LiveClient) -> None:
    buildid, _ = await data.updates.add_build(1, 1, 1, None)
    stepid, _, _ = await data.updates.add_step(buildid, "compile")
    logid = await data.updates.add_log(stepid, "stdio", "s")
    assert (await client.command("startConsuming", path=f"logs/{logid}/*"))["code"] == 200
    await data.updates.append_log(logid, "ohello\n")
    await data.updates.append_log(logid, "oworld\nesecond line\n")
    first, second = await client.next_event(), await client.next_event()
    assert first["k"] == f"logs/{logid}/append"
    assert first["m"]["appended"] == {"firstline": 0, "lastline": 0, "content": "ohello\n"}
    assert second["m"]["appended"] == {"firstline": 1, "lastline": 2, "content": "oworld\nesecond line\n"}
    assert second["m"]["num_lines"] == 3
    # replayed from the journal, the lines are read back from the log
    again = await LiveClient(client.url).connect()
    await again.command("startConsuming", path=f"steps/{stepid}/logs/*/*", since=first["id"] - 1)
    replayed = [await again.next_event() for _ in range(2)]
    assert [m["m"]["appended"]["content"] for m in replayed] == ["ohello\n", "oworld\nesecond line\n"]
    assert replayed[0]["k"] == f"steps/{stepid}/logs/stdio/append"
    again.close()


@pytest_twisted.ensureDeferred
async def test_a_slow_consumer_is_closed_not_buffered(data: DataAPI) -> None:
    live, served = await _served(data, max_queued=20)
    async with served as api:
        slow = await LiveClient(ws_url(api)).connect()
        await slow.command("startConsuming", path="logs/*/*")
        slow.protocol.transport.pauseProducing()  # the client stops reading its socket
        buildid, _ = await data.updates.add_build(1, 1, 1, None)
        stepid, _, _ = await data.updates.add_step(buildid, "noisy")
        logid = await data.updates.add_log(stepid, "stdio", "s")
        line = "o" + "x" * 1000 + "\n"
        for _ in range(300):  # ~20 MB of events, far more than the sockets' buffers
            await data.updates.append_log(logid, line * 64)
            if live.factory.connections == set():
                break
        assert live.factory.connections == set()  # the master let go of it
        slow.protocol.transport.resumeProducing()
        code, reason = await within(slow.closed, what="close")
        assert code == CLOSE_TOO_SLOW or slow.protocol.wasClean is False
    live.stop()


@pytest_twisted.ensureDeferred
async def test_subscriptions_obey_read_rules(data: DataAPI, tmp_path: Any) -> None:
    store = UserStore(tmp_path / "users.json")
    store.add_user("ann", "pw", ["dev"])
    _, token = store.new_token("ann")
    auth = Authenticator(Auth(read_rules=[ReadRule(roles="*", resources=["builders"]),
                                          ReadRule(roles=["dev"])]), tmp_path)
    live, served = await _served(data, auth)
    async with served as api:
        anonymous = await LiveClient(ws_url(api)).connect()
        reply = await anonymous.command("startConsuming", path="builds/*/*")
        assert reply["code"] == 401 and "builds" in reply["error"]
        assert (await anonymous.command("startConsuming", path="builders/*/*"))["code"] == 200
        code, _, _ = await api.get("/api/v2/builds")
        assert code == 401
        ann = await LiveClient(ws_url(api), headers={"Authorization": f"Bearer {token}"}).connect()
        assert (await ann.command("startConsuming", path="builds/*/*"))["code"] == 200
        buildid, _ = await data.updates.add_build(1, 1, 1, None)
        assert (await ann.next_event())["k"] == f"builds/{buildid}/new"
        code, body, _ = await api.get("/api/v2/builds", headers={"Authorization": f"Bearer {token}"})
        assert code == 200 and body["meta"]["total"] == 1
        assert anonymous.events.pending == []
        anonymous.close()
        ann.close()
    live.stop()


@pytest_twisted.ensureDeferred
async def test_since_zero_on_a_fresh_journal_replays_everything(data: DataAPI, client: LiveClient) -> None:
    buildid = await run_build(data)
    reply = await client.command("startConsuming", path="builders/*/*", since=0)
    assert reply["code"] == 200
    first = await client.next_event()
    assert first["k"] == "builders/1/new"  # the journal kept everything from the first event on
    await client.command("startConsuming", path=f"builds/{buildid}/*", since=0)
    assert (await client.next_event())["k"] == f"builds/{buildid}/new"


@pytest.mark.slow  # waits for keepalive pings in real time
@pytest_twisted.ensureDeferred
async def test_keepalive_pings_drop_a_silent_peer(data: DataAPI) -> None:
    # Autobahn batches its ping timers (about a second apart), so the intervals are not shorter
    live, served = await _served(data, ping_interval=1.0, ping_timeout=2.0)
    async with served as api:
        alive = await LiveClient(ws_url(api)).connect()
        silent = await LiveClient(ws_url(api)).connect()
        silent.protocol.transport.pauseProducing()  # reads nothing: answers no ping
        await within(deferLater(reactor, 5.0, lambda: None), "the 5 s pause", timeout=10)
        assert len(live.factory.connections) == 1  # the silent one was dropped, the other answered
        assert (await alive.command("ping"))["msg"] == "pong"
        alive.close()
    live.stop()
