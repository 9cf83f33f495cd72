"""Workers, schedulers and force schedulers: getters, filters, actions over JSON-RPC and events, on both backends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_twisted
from apiclient import Api, serve

from master.data.connector import DataAPI
from master.data.errors import Conflict, NotFound
from master.data.resources import core_resource_types
from master.data.resultspec import Limits

INFO1 = {"host": "box1", "admin": "ann", "version": "4.3.0", "access_uri": None}
FIELDS = [
    {"type": "nested", "name": "", "fullName": None, "layout": "vertical", "columns": 1, "tooltip": "",
     "fields": [{"type": "text", "name": "reason", "fullName": "reason", "default": "force build", "tooltip": ""}]},
]


class Events:
    """Every event produced, as ``'a/b/event'`` strings, in order."""

    def __init__(self, data: DataAPI) -> None:
        self.keys: list[str] = []
        self.entities: list[dict[str, Any]] = []
        for length in range(3, 8):
            data.events.subscribe(("*",) * length, self._seen)

    def _seen(self, key: tuple[str, ...], entity: Any) -> None:
        self.keys.append("/".join(key))
        self.entities.append(dict(entity))

    def take(self) -> list[str]:
        keys, self.keys, self.entities = self.keys, [], []
        return keys


async def seed(data: DataAPI) -> dict[str, int]:
    """Masters m1, m2 (active) and m3 (stopped); builders a, b, c, b"a, x_y%; workers, schedulers, force forms.

    Workers: w1 on a and b of m1 and on b of m2, connected to m1 and m2; w2 on b of m1,
    paused, connected to m2; w3 on a of m1 and on b of m2 (never on b of m1), graceful; w4 nowhere.
    """
    u = data.updates
    ids = {name: await u.master_active(name) for name in ("m1", "m2", "m3")}
    await u.master_stopped(ids["m3"])
    for name in ("a", "b", "c", 'b"a', "x_y%", "xzy!"):
        ids[name] = await u.update_builder(name)
    await u.set_master_builders(ids["m1"], [ids["a"], ids["b"]])
    await u.set_master_builders(ids["m2"], [ids["b"]])
    for name in ("w1", "w2", "w3", "w4"):
        ids[name] = await u.find_worker_id(name)
    await u.worker_configured(ids["w1"], ids["m1"], [ids["a"], ids["b"]])
    await u.worker_configured(ids["w1"], ids["m2"], [ids["b"]])
    await u.worker_configured(ids["w2"], ids["m1"], [ids["b"]])
    await u.worker_configured(ids["w3"], ids["m1"], [ids["a"]])
    await u.worker_configured(ids["w3"], ids["m2"], [ids["b"]])
    await u.worker_connected(ids["w1"], ids["m1"], INFO1)
    await u.worker_connected(ids["w1"], ids["m2"], INFO1)
    await u.worker_connected(ids["w2"], ids["m2"], {"host": "box2"})
    await u.set_worker_state(ids["w2"], True, False, pause_reason="disk full")
    await u.set_worker_state(ids["w3"], False, True)
    for name in ("force", "nightly", "orphan", "deploy"):
        ids[name] = await u.find_scheduler_id(name)
    await u.set_scheduler_master(ids["force"], ids["m1"])
    await u.set_scheduler_master(ids["nightly"], ids["m2"])
    await u.set_scheduler_enabled(ids["nightly"], False)
    await u.set_scheduler_enabled(ids["deploy"], False)
    await u.update_forcescheduler("force", "Force a build", "Go", ["a", "b"], FIELDS)
    await u.update_forcescheduler("deploy", "Deploy", "Ship", ["c"], [])
    await u.update_forcescheduler("tricky", "Tricky", "T", ['b"a', "x_y%"], [])
    return ids


@pytest_twisted.async_yield_fixture()
async def api(storage: Any) -> AsyncIterator[Api]:
    data = DataAPI(storage, Limits(default=50, maximum=100))
    for rtype in core_resource_types():
        data.add_resource_type(rtype)
    data.ids = await seed(data)
    async with serve(data, in_memory=True) as served:
        yield served


async def names(api: Api, path: str, plural: str = "workers") -> tuple[int, list[str] | None, Any]:
    code, body, _ = await api.get(path)
    if code != 200:
        return code, None, body
    assert body["meta"].get("total", len(body[plural])) == len(body[plural]) or "limit" in path
    return code, [item["name"] for item in body[plural]], body


def rpc(method: str, **params: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}


# -- workers ---------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_worker_shape(api: Api) -> None:
    ids = api.data.ids
    code, body, _ = await api.get("/api/v2/workers/1")
    assert code == 200
    assert body["workers"] == [{
        "workerid": ids["w1"], "name": "w1", "workerinfo": INFO1, "paused": False, "pause_reason": None,
        "graceful": False,
        "configured_on": [
            {"masterid": ids["m1"], "builderid": ids["a"]}, {"masterid": ids["m1"], "builderid": ids["b"]},
            {"masterid": ids["m2"], "builderid": ids["b"]},
        ],
        "connected_to": [{"masterid": ids["m1"]}, {"masterid": ids["m2"]}],
        "latent_state": None,  # not a latent worker (master.engine.latent)
    }]
    code, body, _ = await api.get("/api/v2/workers/w4")
    assert body["workers"][0]["workerinfo"] == {} and body["workers"][0]["configured_on"] == []
    assert body["workers"][0]["connected_to"] == []
    code, body, _ = await api.get("/api/v2/workers?name=w2&field=name,paused,pause_reason,connected_to")
    assert body["workers"] == [
        {"name": "w2", "paused": True, "pause_reason": "disk full", "connected_to": [{"masterid": ids["m2"]}]}
    ]


WORKER_PATHS_FILTERS_AND_ORDER = [
        ("/api/v2/workers", ["w1", "w2", "w3", "w4"]),
        ("/api/v2/workers/2", ["w2"]),
        ("/api/v2/workers/w3", ["w3"]),
        ("/api/v2/builders/1/workers", ["w1", "w3"]),  # a
        ("/api/v2/builders/2/workers", ["w1", "w2", "w3"]),  # b, on any master
        ("/api/v2/builders/3/workers", []),  # c exists, nobody on it
        ("/api/v2/builders/2/workers/2", ["w2"]),
        ("/api/v2/builders/2/workers/w3", ["w3"]),
        ("/api/v2/masters/1/workers", ["w1", "w2", "w3"]),
        ("/api/v2/masters/2/workers", ["w1", "w3"]),
        ("/api/v2/masters/3/workers", []),
        ("/api/v2/masters/2/workers/3", ["w3"]),
        ("/api/v2/masters/2/workers/w1", ["w1"]),
        ("/api/v2/masters/1/builders/2/workers", ["w1", "w2"]),  # w3 is on a of m1 and on b of m2 only
        ("/api/v2/masters/2/builders/2/workers", ["w1", "w3"]),
        ("/api/v2/masters/1/builders/2/workers/1", ["w1"]),
        ("/api/v2/masters/1/builders/2/workers/w2", ["w2"]),
        ("/api/v2/workers?paused=true", ["w2"]),
        ("/api/v2/workers?paused=false&graceful=false", ["w1", "w4"]),
        ("/api/v2/workers?graceful=yes", ["w3"]),
        ("/api/v2/workers?name__in=w4,w1&order=-name", ["w4", "w1"]),
        ("/api/v2/workers?name__contains=3", ["w3"]),
        ("/api/v2/workers?name__gt=w2&order=-workerid", ["w4", "w3"]),
        ("/api/v2/workers?pause_reason=disk%20full", ["w2"]),
        ("/api/v2/workers?order=-paused&order=name", ["w2", "w1", "w3", "w4"]),
        ("/api/v2/workers?order=name&limit=2&offset=1", ["w2", "w3"]),
        ("/api/v2/masters/1/workers?paused=false", ["w1", "w3"]),
]


@pytest_twisted.ensureDeferred
async def test_worker_paths_filters_and_order(api: Api) -> None:
    for path, expected in WORKER_PATHS_FILTERS_AND_ORDER:
        code, got, body = await names(api, path)
        assert (code, got) == (200, expected), (path, body)
        if "limit" in path:
            assert body["meta"]["total"] == 4


WORKER_ERRORS = [
    ("/api/v2/workers/99", 404, "not found"),
    ("/api/v2/workers/nosuch", 404, "not found"),
    ("/api/v2/builders/99/workers", 404, "builders/99"),
    ("/api/v2/builders/3/workers/1", 404, "not found"),  # w1 is not on c
    ("/api/v2/masters/99/workers", 404, "masters/99"),
    ("/api/v2/masters/3/workers/1", 404, "not found"),
    ("/api/v2/masters/2/builders/1/workers", 404, "masters/2/builders/1"),  # m2 does not serve a
    ("/api/v2/masters/1/builders/2/workers/3", 404, "not found"),
    ("/api/v2/workers?connected_to=1", 400, "connected_to"),
    ("/api/v2/workers?order=configured_on", 400, "configured_on"),
    ("/api/v2/workers?workerinfo=x", 400, "workerinfo"),
]


@pytest_twisted.ensureDeferred
async def test_worker_errors(api: Api) -> None:
    for path, status, words in WORKER_ERRORS:
        code, body, _ = await api.get(path)
        assert code == status and words in body["error"], (path, body)


@pytest_twisted.ensureDeferred
async def test_worker_lists_follow_the_path(api: Api) -> None:
    ids = api.data.ids
    code, body, _ = await api.get("/api/v2/masters/2/workers/1")
    assert body["workers"][0]["configured_on"] == [{"masterid": ids["m2"], "builderid": ids["b"]}]
    assert body["workers"][0]["connected_to"] == [{"masterid": ids["m2"]}]
    code, body, _ = await api.get("/api/v2/builders/1/workers")
    w1 = body["workers"][0]
    assert w1["configured_on"] == [{"masterid": ids["m1"], "builderid": ids["a"]}]
    assert w1["connected_to"] == [{"masterid": ids["m1"]}, {"masterid": ids["m2"]}]  # not per builder
    code, body, _ = await api.get("/api/v2/masters/1/builders/2/workers?field=name,configured_on")
    assert body["workers"] == [
        {"name": "w1", "configured_on": [{"masterid": ids["m1"], "builderid": ids["b"]}]},
        {"name": "w2", "configured_on": [{"masterid": ids["m1"], "builderid": ids["b"]}]},
    ]


@pytest_twisted.ensureDeferred
async def test_pause_and_unpause_over_jsonrpc(api: Api) -> None:
    events = Events(api.data)
    code, body = await api.rpc("/api/v2/workers/1", rpc("pause", reason="maintenance"))
    assert code == 200 and body["result"] is None
    code, got, body = await names(api, "/api/v2/workers?paused=true")
    assert got == ["w1", "w2"]
    assert body["workers"][0]["pause_reason"] == "maintenance"
    assert events.take() == [
        "workers/1/state_updated",
        "builders/1/workers/1/state_updated",
        "builders/2/workers/1/state_updated",
        "masters/1/workers/1/state_updated",
        "masters/2/workers/1/state_updated",
        "masters/1/builders/1/workers/1/state_updated",
        "masters/1/builders/2/workers/1/state_updated",
        "masters/2/builders/2/workers/1/state_updated",
    ]
    # pausing again is accepted, as in Buildbot; without a reason the reason is cleared
    assert await api.call("/api/v2/workers/w1", "pause") is None
    code, body, _ = await api.get("/api/v2/workers/1")
    assert body["workers"][0]["paused"] is True and body["workers"][0]["pause_reason"] is None
    assert await api.call("/api/v2/masters/1/builders/2/workers/1", "unpause") is None
    code, body, _ = await api.get("/api/v2/workers/1")
    assert body["workers"][0]["paused"] is False and body["workers"][0]["pause_reason"] is None
    assert await api.call("/api/v2/workers/4", "unpause") is None  # not paused: still fine
    # graceful is kept by both actions
    assert await api.call("/api/v2/builders/1/workers/w3", "pause", reason="x") is None
    code, body, _ = await api.get("/api/v2/workers/3?field=paused,graceful,pause_reason")
    assert body["workers"] == [{"paused": True, "graceful": True, "pause_reason": "x"}]
    assert "workers/3/state_updated" in events.take()


WORKER_ACTION_ERRORS = [
    ("/api/v2/workers/99", rpc("pause"), 404, -32600),
    ("/api/v2/builders/3/workers/1", rpc("pause"), 404, -32600),  # w1 is not on c
    ("/api/v2/workers/1", rpc("pause", reason=5), 400, -32602),
    ("/api/v2/workers/1", rpc("unpause", reason="x"), 400, -32602),
    ("/api/v2/workers/1", rpc("explode"), 400, -32601),
    ("/api/v2/workers", rpc("pause"), 405, -32601),
]


@pytest_twisted.ensureDeferred
async def test_worker_action_errors(api: Api) -> None:
    for path, body, status, code in WORKER_ACTION_ERRORS:
        http_code, answer = await api.rpc(path, body)
        assert http_code == status and answer["error"]["code"] == code, (path, answer)
        code_, got, _ = await names(api, "/api/v2/workers?paused=true")
        assert got == ["w2"]  # nothing changed


@pytest_twisted.ensureDeferred
async def test_worker_update_methods_and_events(api: Api) -> None:
    data, ids = api.data, api.data.ids
    events = Events(data)
    w5 = await data.updates.find_worker_id("w5")
    assert await data.updates.find_worker_id("w5") == w5  # found, not created again
    assert events.take() == [f"workers/{w5}/new"]
    await data.updates.worker_configured(w5, ids["m2"], [ids["b"]])
    assert events.take() == [
        f"workers/{w5}/update", f"builders/{ids['b']}/workers/{w5}/update", f"masters/{ids['m2']}/workers/{w5}/update",
        f"masters/{ids['m2']}/builders/{ids['b']}/workers/{w5}/update",
    ]
    await data.updates.worker_configured(w5, ids["m2"], [ids["b"]])
    assert events.take() == []  # nothing changed
    # replacing m1's rows of w1 leaves m2's alone
    await data.updates.worker_configured(ids["w1"], ids["m1"], [ids["a"]])
    entity = await data.get(("workers", str(ids["w1"])))
    assert entity["configured_on"] == [
        {"masterid": ids["m1"], "builderid": ids["a"]}, {"masterid": ids["m2"], "builderid": ids["b"]},
    ]
    assert events.take()[0] == f"workers/{ids['w1']}/update"
    await data.updates.worker_configured(ids["w1"], ids["m2"], [])
    entity = await data.get(("workers", str(ids["w1"])))
    assert entity["configured_on"] == [{"masterid": ids["m1"], "builderid": ids["a"]}]
    events.take()

    await data.updates.worker_connected(w5, ids["m1"], {"host": "new"})
    assert events.entities[0]["workerinfo"] == {"host": "new"}
    assert events.entities[0]["connected_to"] == [{"masterid": ids["m1"]}]
    assert events.take()[0] == f"workers/{w5}/connected"
    await data.updates.worker_connected(w5, ids["m1"], {"host": "newer"})  # reconnect: info refreshed, one row
    entity = await data.get(("workers", "w5"))
    assert entity["workerinfo"] == {"host": "newer"} and entity["connected_to"] == [{"masterid": ids["m1"]}]
    events.take()
    await data.updates.worker_disconnected(w5, ids["m1"])
    keys = events.take()
    assert keys[0] == f"workers/{w5}/disconnected"
    assert (await data.get(("workers", "w5")))["connected_to"] == []
    await data.updates.worker_disconnected(w5, ids["m1"])
    assert events.take() == []  # was not connected

    await data.updates.set_worker_state(w5, True, True, pause_reason="why")
    assert events.entities[0]["pause_reason"] == "why"
    assert events.take()[0] == f"workers/{w5}/state_updated"
    entity = await data.get(("workers", str(w5)))
    assert (entity["paused"], entity["graceful"], entity["pause_reason"]) == (True, True, "why")
    await data.updates.set_worker_state(w5, False, False, pause_reason="ignored when not paused")
    entity = await data.get(("workers", str(w5)))
    assert (entity["paused"], entity["graceful"], entity["pause_reason"]) == (False, False, None)


# -- schedulers ------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_scheduler_shape(api: Api) -> None:
    ids = api.data.ids
    master = (await api.data.get(("masters", str(ids["m1"]))))
    code, body, _ = await api.get("/api/v2/schedulers?order=schedulerid")
    assert code == 200 and body["meta"]["total"] == 4
    assert body["schedulers"][0] == {"schedulerid": ids["force"], "name": "force", "enabled": True, "master": master}
    assert set(master) == {"masterid", "name", "active", "last_active"} and master["active"] is True
    assert body["schedulers"][2] == {"schedulerid": ids["orphan"], "name": "orphan", "enabled": True, "master": None}
    code, body, _ = await api.get("/api/v2/schedulers/2?field=master,enabled")
    assert body["schedulers"] == [{"enabled": False, "master": await api.data.get(("masters", str(ids["m2"])))}]


SCHEDULER_PATHS_FILTERS_AND_ORDER = [
    ("/api/v2/schedulers", ["force", "nightly", "orphan", "deploy"]),
    ("/api/v2/schedulers?order=name", ["deploy", "force", "nightly", "orphan"]),
    ("/api/v2/schedulers?order=-name&limit=2", ["orphan", "nightly"]),
    ("/api/v2/schedulers?enabled=false", ["nightly", "deploy"]),
    ("/api/v2/schedulers?enabled=true&order=-schedulerid", ["orphan", "force"]),
    ("/api/v2/schedulers?name=orphan", ["orphan"]),
    ("/api/v2/schedulers?name__contains=or", ["force", "orphan"]),
    ("/api/v2/schedulers?order=enabled&order=name", ["deploy", "nightly", "force", "orphan"]),
    ("/api/v2/schedulers/3", ["orphan"]),
    ("/api/v2/masters/1/schedulers", ["force"]),
    ("/api/v2/masters/2/schedulers?enabled=false", ["nightly"]),
    ("/api/v2/masters/3/schedulers", []),
    ("/api/v2/masters/2/schedulers/2", ["nightly"]),
]


@pytest_twisted.ensureDeferred
async def test_scheduler_paths_filters_and_order(api: Api) -> None:
    for path, expected in SCHEDULER_PATHS_FILTERS_AND_ORDER:
        code, got, body = await names(api, path, "schedulers")
        assert (code, got) == (200, expected), (path, body)


SCHEDULER_ERRORS = [
    ("/api/v2/schedulers/99", 404, "not found"),
    ("/api/v2/masters/99/schedulers", 404, "masters/99"),
    ("/api/v2/masters/2/schedulers/1", 404, "not found"),
    ("/api/v2/schedulers?master=1", 400, "master"),
    ("/api/v2/schedulers?order=master", 400, "master"),
]


@pytest_twisted.ensureDeferred
async def test_scheduler_errors(api: Api) -> None:
    for path, status, words in SCHEDULER_ERRORS:
        code, body, _ = await api.get(path)
        assert code == status and words in body["error"], (path, body)


@pytest_twisted.ensureDeferred
async def test_enable_over_jsonrpc(api: Api) -> None:
    ids = api.data.ids
    events = Events(api.data)
    code, body = await api.rpc("/api/v2/schedulers/2", rpc("enable", enabled=True))
    assert code == 200 and body["result"] is None
    code, got, _ = await names(api, "/api/v2/schedulers?enabled=true", "schedulers")
    assert got == ["force", "nightly", "orphan"]
    assert events.entities[0]["enabled"] is True and events.entities[0]["master"]["masterid"] == ids["m2"]
    assert events.take() == ["schedulers/2/updated", f"masters/{ids['m2']}/schedulers/2/updated"]
    assert await api.call("/api/v2/masters/1/schedulers/1", "enable", enabled="false") is None
    code, body, _ = await api.get("/api/v2/schedulers/1")
    assert body["schedulers"][0]["enabled"] is False
    assert await api.call("/api/v2/schedulers/3", "enable", enabled=True) is None  # already enabled: accepted
    assert events.take() == ["schedulers/1/updated", "masters/1/schedulers/1/updated", "schedulers/3/updated"]
    for path, params, status, code_ in [
        ("/api/v2/schedulers/1", {}, 400, -32602),
        ("/api/v2/schedulers/1", {"enabled": "perhaps"}, 400, -32602),
        ("/api/v2/schedulers/1", {"enabled": True, "why": 1}, 400, -32602),
        ("/api/v2/schedulers/99", {"enabled": True}, 404, -32600),
        ("/api/v2/masters/2/schedulers/1", {"enabled": True}, 404, -32600),
        ("/api/v2/schedulers", {"enabled": True}, 405, -32601),
    ]:
        http_code, answer = await api.rpc(path, rpc("enable", **params))
        assert (http_code, answer["error"]["code"]) == (status, code_), (path, answer)
    code, body, _ = await api.get("/api/v2/schedulers/1")
    assert body["schedulers"][0]["enabled"] is False
    assert events.take() == []


@pytest_twisted.ensureDeferred
async def test_scheduler_claims(api: Api) -> None:
    data, ids = api.data, api.data.ids
    u = data.updates
    events = Events(data)
    assert await u.find_scheduler_id("force") == ids["force"]
    assert events.take() == []
    with pytest.raises(Conflict, match="already claimed"):
        await u.set_scheduler_master(ids["force"], ids["m2"])  # m1 is active and holds it
    assert (await data.get(("schedulers", str(ids["force"]))))["master"]["masterid"] == ids["m1"]
    await u.set_scheduler_master(ids["force"], ids["m1"])  # again by the holder: nothing to do
    assert events.take() == []
    await u.set_scheduler_master(ids["force"], None)
    assert (await data.get(("schedulers", str(ids["force"]))))["master"] is None
    assert events.take() == [f"schedulers/{ids['force']}/updated"]
    await u.set_scheduler_master(ids["force"], ids["m2"])
    assert events.take() == [f"schedulers/{ids['force']}/updated", f"masters/{ids['m2']}/schedulers/1/updated"]
    # a claim held by a master that stopped is taken over
    await u.set_scheduler_master(ids["orphan"], ids["m3"])
    entity = await data.get(("schedulers", str(ids["orphan"])))
    assert entity["master"]["masterid"] == ids["m3"] and entity["master"]["active"] is False
    await u.set_scheduler_master(ids["orphan"], ids["m1"])
    assert (await data.get(("schedulers", str(ids["orphan"]))))["master"]["masterid"] == ids["m1"]
    with pytest.raises(NotFound):
        await u.set_scheduler_master(99, ids["m1"])
    new = await u.find_scheduler_id("hourly")
    entity = await data.get(("schedulers", str(new)))
    assert entity == {"schedulerid": new, "name": "hourly", "enabled": True, "master": None}
    assert events.take()[-1] == f"schedulers/{new}/new"


# -- force schedulers ------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_forcescheduler_shape(api: Api) -> None:
    code, body, _ = await api.get("/api/v2/forceschedulers/force")
    assert code == 200
    assert body["forceschedulers"] == [{
        "name": "force", "label": "Force a build", "button_name": "Go", "builder_names": ["a", "b"],
        "enabled": True, "all_fields": FIELDS,
    }]
    code, body, _ = await api.get("/api/v2/forceschedulers")
    assert body["meta"]["total"] == 3
    assert [(f["name"], f["enabled"]) for f in body["forceschedulers"]] == [
        ("deploy", False), ("force", True), ("tricky", True),  # deploy's scheduler is disabled
    ]


FORCESCHEDULER_PATHS_AND_FILTERS = [
    ("/api/v2/forceschedulers?order=-name", ["tricky", "force", "deploy"]),
    ("/api/v2/forceschedulers?enabled=false", ["deploy"]),
    ("/api/v2/forceschedulers?label__contains=Force", ["force"]),
    ("/api/v2/forceschedulers?button_name=Ship", ["deploy"]),
    ("/api/v2/forceschedulers?builder_names=b", ["force"]),
    ("/api/v2/forceschedulers?builder_names__contains=c&builder_names__contains=a", ["deploy", "force"]),
    ("/api/v2/forceschedulers?builder_names__ne=a", ["deploy", "tricky"]),
    ("/api/v2/forceschedulers?builder_names=x_y%25", ["tricky"]),
    ("/api/v2/forceschedulers?builder_names=x", []),
    ("/api/v2/builders/1/forceschedulers", ["force"]),  # a: not tricky, whose b"a is written "b\"a"
    ("/api/v2/builders/2/forceschedulers", ["force"]),
    ("/api/v2/builders/3/forceschedulers", ["deploy"]),
    ("/api/v2/builders/4/forceschedulers", ["tricky"]),  # b"a
    ("/api/v2/builders/5/forceschedulers", ["tricky"]),  # x_y%
    ("/api/v2/builders/6/forceschedulers", []),  # xzy! would match x_y% as a LIKE pattern
    ("/api/v2/builders/2/forceschedulers?label=Deploy", []),
]


@pytest_twisted.ensureDeferred
async def test_forcescheduler_paths_and_filters(api: Api) -> None:
    for path, expected in FORCESCHEDULER_PATHS_AND_FILTERS:
        code, got, body = await names(api, path, "forceschedulers")
        assert (code, got) == (200, expected), (path, body)


FORCESCHEDULER_ERRORS = [
    ("/api/v2/forceschedulers/nosuch", 404, "not found"),
    ("/api/v2/builders/99/forceschedulers", 404, "builders/99"),
    ("/api/v2/forceschedulers?all_fields=x", 400, "all_fields"),
    ("/api/v2/forceschedulers?order=builder_names", 400, "builder_names"),
    ("/api/v2/forceschedulers?builder_names__lt=b", 400, "builder_names__lt"),
]


@pytest_twisted.ensureDeferred
async def test_forcescheduler_errors(api: Api) -> None:
    for path, status, words in FORCESCHEDULER_ERRORS:
        code, body, _ = await api.get(path)
        assert code == status and words in body["error"], (path, body)


@pytest_twisted.ensureDeferred
async def test_forcescheduler_upsert_and_remove(api: Api) -> None:
    data = api.data
    events = Events(data)
    await data.updates.update_forcescheduler("deploy", "Deploy now", "Ship it", ["a", "c"], FIELDS)
    entity = await data.get(("forceschedulers", "deploy"))
    assert entity["label"] == "Deploy now" and entity["builder_names"] == ["a", "c"] and entity["all_fields"] == FIELDS
    assert events.entities == [entity]
    assert events.take() == ["forceschedulers/deploy/update"]
    code, got, _ = await names(api, "/api/v2/builders/1/forceschedulers", "forceschedulers")
    assert got == ["deploy", "force"]
    await data.updates.update_forcescheduler("release", "Release", "Go", [], [])
    assert events.take() == ["forceschedulers/release/new"]
    code, got, _ = await names(api, "/api/v2/forceschedulers", "forceschedulers")
    assert got == ["deploy", "force", "release", "tricky"]
    await data.updates.remove_forcescheduler("release")
    keys, removed = events.keys, events.entities
    assert keys == ["forceschedulers/release/removed"] and removed[0]["name"] == "release"
    events.take()
    code, body, _ = await api.get("/api/v2/forceschedulers/release")
    assert code == 404
    await data.updates.remove_forcescheduler("release")
    assert events.take() == []
    with pytest.raises(ValueError, match="identifier"):
        await data.updates.update_forcescheduler("not a name", "x", "y", [], [])
