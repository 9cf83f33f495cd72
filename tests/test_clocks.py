"""Timers on a ``Clock``: the engine's schedulers and the heartbeat run on the clock they are given.

No real time passes: the test moves the clock; the database work each timer starts runs on the
reactor and is awaited through the event or the Deferred it produces.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest_twisted
import sqlalchemy as sa
from twisted.internet import defer
from twisted.internet.task import Clock
from waiting import within

from master.data.connector import DataAPI
from master.data.resources import core_resource_types
from master.db import schema
from master.engine.engine import Engine
from master.engine.schedulers import Periodic
from master.heartbeat import Heartbeat


@dataclass
class Builder:
    name: str
    workernames: list[str] = field(default_factory=list)
    steps: list[Any] = field(default_factory=list)


async def _data(storage: Any) -> tuple[DataAPI, int]:
    data = DataAPI(storage)
    for rtype in core_resource_types():
        data.add_resource_type(rtype)
    masterid = await data.updates.master_active("m1")
    data.bind_master(masterid)
    return data, masterid


@pytest_twisted.ensureDeferred
async def test_a_periodic_scheduler_fires_when_the_engine_clock_says(storage: Any) -> None:
    data, masterid = await _data(storage)
    clock = Clock()
    engine = Engine(poll_interval=10, clock=clock)
    config = SimpleNamespace(builders=[Builder("b")], schedulers=[Periodic("tick", ["b"], periodicBuildTimer=60)])
    await engine.start(data, masterid, config)
    try:
        assert data.engine is engine and engine.schedulers["tick"].running
        submitted: list[defer.Deferred] = [defer.Deferred(), defer.Deferred()]

        def on_new(key: Any, entity: Any) -> None:
            waiting = next((d for d in submitted if not d.called), None)
            if waiting is not None:
                waiting.callback(entity["bsid"])

        subscription = data.events.subscribe(("buildsets", "*", "new"), on_new)
        clock.advance(59)
        assert not submitted[0].called
        clock.advance(1)
        first = await within(submitted[0], "the first periodic buildset")
        clock.advance(60)
        second = await within(submitted[1], "the second periodic buildset")
        assert second > first and (await data.get("buildsets")).total == 2
        subscription.cancel()
    finally:
        await engine.stop()
    assert data.engine is None  # unbound: the data API's controls answer Conflict again


class Recovering:
    """What the heartbeat uses of the engine: ``recover`` of an expired master, recorded."""

    def __init__(self) -> None:
        self.recovered: list[int] = []

    async def recover(self, masterid: int) -> None:
        self.recovered.append(masterid)


@pytest_twisted.ensureDeferred
async def test_the_heartbeat_beats_and_waits_out_an_outage_on_its_clock(storage: Any) -> None:
    data, masterid = await _data(storage)
    silent = await data.updates.master_active("m2")
    await storage.execute(sa.update(schema.masters).where(schema.masters.c.id == silent).values(last_active=1))
    clock, engine = Clock(), Recovering()
    config = SimpleNamespace(heartbeat_seconds=10, master_expiry_seconds=30, event_retention_minutes=60)
    heartbeat = Heartbeat(data, engine, masterid, config, clock=clock)
    heartbeat._availability(True)  # the database is back from an outage now (clock 0): m2 gets its grace
    heartbeat.startService()  # beats at once
    try:
        await within(heartbeat.last_beat, "the first beat")
        first = heartbeat.last_beat
        clock.advance(10)
        assert heartbeat.last_beat is not first  # the clock, not real time, made the second beat
        await within(heartbeat.last_beat, "the beat at 10s")
        clock.advance(10)
        await within(heartbeat.last_beat, "the beat at 20s")
        assert engine.recovered == []  # m2 has had 20 of its 30 seconds to say it survived
        clock.advance(10)
        await within(heartbeat.last_beat, "the beat at 30s")
        assert engine.recovered == [silent]
        masters = (await data.get("masters", query={"field": ["masterid", "active"]})).items
        assert {m["masterid"]: m["active"] for m in masters} == {masterid: True, silent: False}
    finally:
        heartbeat.stopService()
