"""``/ws`` under a flood of subscriptions or connections (issue 16, item 1): cost, and the limits."""

from __future__ import annotations

import random
import socket
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import pytest_twisted
from apiclient import serve
from liveclient import LiveClient
from test_live import data, run_build  # noqa: F401 (the fixture)
from twisted.internet import threads

import master.data.events as events_module
import master.www.ws as ws_module
from master.config import ConfigError, MasterConfig, _check
from master.data.connector import DataAPI
from master.data.events import EventHub, PatternIndex, key_matches, split_key
from master.www.rest import RestApi
from master.www.site import build_site
from master.www.ws import LiveUpdates

# -- the index ---------------------------------------------------------------------------------


def test_pattern_index_matches_like_key_matches_and_prunes() -> None:
    rng = random.Random(16)
    segments = ["builds", "builders", "1", "2", "12", "new", "finished", "*"]
    patterns = {tuple(rng.choice(segments) for _ in range(rng.randint(1, 5))) for _ in range(400)}
    index = PatternIndex()
    for n, pattern in enumerate(sorted(patterns)):
        index.add(pattern, n)
        index.add(pattern, -n - 1)
    for _ in range(2000):
        key = tuple(rng.choice(segments[:-1]) for _ in range(rng.randint(1, 5)))
        found = {pattern for pattern, _ in index.match(key)}
        assert found == {p for p in patterns if key_matches(p, key)}, key
    for n, pattern in enumerate(sorted(patterns)):
        index.discard(pattern, n)
        assert index.members(pattern) == {-n - 1}
        index.discard(pattern, -n - 1)
    assert len(index) == 0 and index._roots == {}  # nothing left behind once every member is gone
    assert index.match(("builds", "1", "new")) == []


class _Counting:
    """Wraps key_matches, counting its calls: the per-event cost of matching patterns one by one."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, pattern: Any, key: Any) -> bool:
        self.calls += 1
        return key_matches(pattern, key)


@pytest_twisted.ensureDeferred
async def test_ws_fan_out_does_not_scan_every_subscription(monkeypatch: pytest.MonkeyPatch) -> None:
    hub = EventHub()
    live = LiveUpdates(_Data(hub), max_subscriptions=30_000)  # type: ignore[arg-type]
    received: list[Any] = []

    class Connection:
        def deliver(self, pattern: Any, event: Any, prepared: Any) -> None:
            received.append((pattern, event.id))

    flood, watcher = Connection(), Connection()
    for i in range(20_000):
        live.factory.subscribe(split_key(f"builds/{i + 1000}/*"), flood)
    live.factory.subscribe(split_key("builds/*/*"), watcher)
    counting = _Counting()
    monkeypatch.setattr(ws_module, "key_matches", counting, raising=False)
    monkeypatch.setattr(events_module, "key_matches", counting)
    await (hub.produce(_RType(), {"buildid": 1005}, "new", [("builds", "1005", "new")]))
    await (hub.produce(_RType(), {"buildid": 7}, "new", [("builds", "7", "new")]))
    # each event reached exactly the subscriptions matching it, without comparing it to the 20,000
    assert sorted(received) == [(("builds", "*", "*"), 1), (("builds", "*", "*"), 2), (("builds", "1005", "*"), 1)]
    assert counting.calls < 10


@pytest_twisted.ensureDeferred
async def test_hub_subscriptions_do_not_scan_every_pattern(monkeypatch: pytest.MonkeyPatch) -> None:
    hub = EventHub()
    seen: list[tuple[str, ...]] = []
    for i in range(20_000):
        hub.subscribe(f"builds/{i + 1000}/*", lambda key, entity: seen.append(key))
    hub.subscribe("builds/*/new", lambda key, entity: seen.append(("any", *key)))
    counting = _Counting()
    monkeypatch.setattr(events_module, "key_matches", counting)
    await (hub.produce(_RType(), {}, "new", [("builds", "1001", "new")]))
    assert sorted(seen) == [("any", "builds", "1001", "new"), ("builds", "1001", "new")]
    assert counting.calls < 10
    subscription = hub.subscribe("builds/1001/new", lambda key, entity: seen.append(("once", *key)))
    subscription.cancel()
    await (hub.produce(_RType(), {}, "new", [("builds", "1001", "new")]))
    assert ("once", "builds", "1001", "new") not in seen


class _RType:
    plural = "builds"


class _Data:
    """What LiveUpdates reads of a DataAPI, for the fan-out alone."""

    def __init__(self, hub: EventHub) -> None:
        self.events = hub
        self.rtypes: dict[str, Any] = {}


# -- the limits, through a real port ------------------------------------------------------------


@pytest_twisted.async_yield_fixture()
async def limited(data: DataAPI) -> AsyncIterator[str]:  # noqa: F811
    live = LiveUpdates(data, max_subscriptions=3, max_connections_per_ip=2)
    site = build_site({"api": RestApi(data).resource(), "ws": live.resource()})
    async with serve(data, site) as running:
        yield running.url.replace("http://", "ws://") + "/ws"
    live.stop()


@pytest_twisted.ensureDeferred
async def test_subscriptions_per_connection_are_capped_with_429(data: DataAPI, limited: str) -> None:  # noqa: F811
    client = await LiveClient(limited).connect()
    for path in ("builds/*/*", "builds/*/new", "builders/*/*"):
        assert (await client.command("startConsuming", path=path))["code"] == 200
    assert (await client.command("startConsuming", path="builds/*/*"))["code"] == 200  # held already: no new one
    reply = await client.command("startConsuming", path="builds/*/finished")
    assert reply["code"] == 429 and "ws_max_subscriptions" in reply["error"] and "3" in reply["error"]
    # the refused subscription gets nothing; the others still work; stopping one frees a place
    buildid = await run_build(data)
    got = await client.events_until(lambda m: m["k"] == f"builds/{buildid}/finished")
    assert all(not m["k"].startswith("builders/") for m in got)
    assert (await client.command("stopConsuming", path="builders/*/*"))["code"] == 200
    assert (await client.command("startConsuming", path="builds/*/finished"))["code"] == 200
    client.close()


def _handshake(url: str) -> tuple[str, dict[str, str], bytes]:
    """A raw websocket upgrade request; the response's status line, headers and body."""
    host, port = url.split("//")[1].split("/")[0].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(
            f"GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = s.recv(4096)
            if not chunk:
                break
            response += chunk
        head, _, body = response.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines[1:])
        length = int(headers.get("Content-Length", 0))
        while len(body) < length:
            chunk = s.recv(4096)
            if not chunk:
                break
            body += chunk
        return lines[0], headers, body


@pytest_twisted.ensureDeferred
async def test_connections_per_address_are_capped_with_429(limited: str) -> None:
    first = await LiveClient(limited).connect()
    second = await LiveClient(limited).connect()
    status, headers, body = await threads.deferToThread(_handshake, limited)
    assert status.startswith("HTTP/1.1 429")
    assert headers["Content-Type"] == "application/json"
    refusal = orjson.loads(body)
    assert refusal["code"] == 429 and "ws_max_connections_per_ip" in refusal["error"]
    assert "127.0.0.1" in refusal["error"]
    with pytest.raises(ConnectionError):
        await LiveClient(limited).connect()
    # the open ones still work; once one closes, a new one is let in
    assert (await first.command("ping"))["code"] == 200
    second.close()
    await second.closed
    for _ in range(50):
        status, _, _ = await threads.deferToThread(_handshake, limited)
        if status.startswith("HTTP/1.1 101"):
            break
    assert status.startswith("HTTP/1.1 101")
    first.close()


def test_limits_are_www_keys(tmp_path: Any) -> None:
    config = _check(MasterConfig(www={"ws_max_subscriptions": 50, "ws_max_connections_per_ip": 4}), tmp_path)
    assert (config.www.ws_max_subscriptions, config.www.ws_max_connections_per_ip) == (50, 4)
    default = _check(MasterConfig(), tmp_path)
    assert (default.www.ws_max_subscriptions, default.www.ws_max_connections_per_ip) == (1000, 200)
    for bad in (0, -1, "10", True):
        with pytest.raises(ConfigError, match="www.ws_max_subscriptions: expected a positive integer"):
            _check(MasterConfig(www={"ws_max_subscriptions": bad}), tmp_path)
