"""Masters and projects: getters, update methods and what a stopping master lets go, on both backends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest_twisted
from apiclient import Api, serve

from master.data.connector import DataAPI
from master.data.resources import core_resource_types


class Events:
    """Every event produced, as ``'a/b/event'`` strings, in order."""

    def __init__(self, data: DataAPI) -> None:
        self.keys: list[str] = []
        for length in range(3, 8):
            data.events.subscribe(("*",) * length, lambda key, entity: self.keys.append("/".join(key)))

    def take(self) -> list[str]:
        keys, self.keys = self.keys, []
        return keys


@pytest_twisted.async_yield_fixture()
async def api(storage: Any) -> AsyncIterator[Api]:
    data = DataAPI(storage)
    for rtype in core_resource_types():
        data.add_resource_type(rtype)
    async with serve(data, in_memory=True) as client:
        yield client


@pytest_twisted.ensureDeferred
async def test_master_active_and_stopped_publish_once(api: Api) -> None:
    u, events = api.data.updates, Events(api.data)
    first = await u.master_active("host:/srv/a")
    assert await u.master_active("host:/srv/a") == first  # a heartbeat: no second 'started'
    assert events.take() == [f"masters/{first}/started"]
    code, body, _ = await api.get(f"/api/v2/masters/{first}")
    assert code == 200 and body["masters"][0]["active"] is True and body["masters"][0]["name"] == "host:/srv/a"
    await u.master_stopped(first)
    await u.master_stopped(first)
    assert events.take() == [f"masters/{first}/stopped"]
    code, body, _ = await api.get("/api/v2/masters?active=false")
    assert [m["masterid"] for m in body["masters"]] == [first]


@pytest_twisted.ensureDeferred
async def test_a_stopped_master_lets_go_of_builders_workers_and_schedulers(api: Api) -> None:
    u = api.data.updates
    m1, m2 = await u.master_active("m1"), await u.master_active("m2")
    a, b = await u.update_builder("a"), await u.update_builder("b")
    await u.set_master_builders(m1, [a, b])
    await u.set_master_builders(m2, [b])
    worker = await u.find_worker_id("w")
    await u.worker_configured(worker, m1, [a])
    await u.worker_configured(worker, m2, [b])
    await u.worker_connected(worker, m1, {})
    scheduler = await u.find_scheduler_id("s")
    await u.set_scheduler_master(scheduler, m1)
    code, body, _ = await api.get(f"/api/v2/masters/{m1}/builders?order=builderid")
    assert [x["builderid"] for x in body["builders"]] == [a, b]

    events = Events(api.data)
    await u.master_stopped(m1)
    keys = events.take()
    assert keys[0] == f"masters/{m1}/stopped"
    assert f"builders/{a}/update" in keys and f"workers/{worker}/disconnected" in keys
    assert f"schedulers/{scheduler}/updated" in keys

    code, body, _ = await api.get(f"/api/v2/builders/{b}/masters")
    assert [x["masterid"] for x in body["masters"]] == [m2]
    code, body, _ = await api.get(f"/api/v2/masters/{m1}/builders")
    assert code == 200 and body["meta"]["total"] == 0
    code, body, _ = await api.get(f"/api/v2/workers/{worker}")
    assert body["workers"][0]["connected_to"] == []
    assert body["workers"][0]["configured_on"] == [{"masterid": m2, "builderid": b}]
    code, body, _ = await api.get(f"/api/v2/schedulers/{scheduler}")
    assert body["schedulers"][0]["master"] is None
    await u.set_scheduler_master(scheduler, m2)  # free for another master to claim


@pytest_twisted.ensureDeferred
async def test_projects_are_found_or_made_and_active_when_served(api: Api) -> None:
    u, events = api.data.updates, Events(api.data)
    ci = await u.find_project_id("Core CI")
    assert await u.find_project_id("Core CI") == ci
    docs = await u.find_project_id("docs")
    assert events.take() == [f"projects/{ci}/new", f"projects/{docs}/new"]
    await u.update_project_info(ci, "core", description="the core", description_format="markdown")
    assert events.take() == [f"projects/{ci}/update"]
    code, body, _ = await api.get("/api/v2/projects/docs")  # by name (an identifier)
    assert body["projects"][0]["projectid"] == docs
    code, body, _ = await api.get(f"/api/v2/projects/{ci}")
    project = body["projects"][0]
    assert (project["slug"], project["description"], project["active"]) == ("core", "the core", False)

    master = await u.master_active("m")
    builder = await u.update_builder("build", projectid=ci)
    await u.set_master_builders(master, [builder])
    code, body, _ = await api.get("/api/v2/projects?active=true")
    assert [p["name"] for p in body["projects"]] == ["Core CI"] and body["meta"]["total"] == 1
    code, body, _ = await api.get("/api/v2/projects?active=false")
    assert [p["name"] for p in body["projects"]] == ["docs"]
    code, body, _ = await api.get(f"/api/v2/projects/{ci}/builders")
    assert [x["name"] for x in body["builders"]] == ["build"]
    await u.master_stopped(master)
    code, body, _ = await api.get("/api/v2/projects?active=true")
    assert body == {"projects": [], "meta": {"total": 0}}
    code, body, _ = await api.get("/api/v2/projects/99/builders")
    assert code == 404
