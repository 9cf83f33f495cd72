"""The service tree: ordered asynchronous starts, reverse one-at-a-time stops, and the master's children."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.application import service
from twisted.internet import defer, reactor
from twisted.web.resource import Resource
from twisted.web.server import Site
from waiting import within

from master.config import MasterConfig, WWWConfig
from master.lifecycle import AsyncService, Made, OrderedServices
from master.service import MasterService, NotRunning, StartupError


class Recorded(AsyncService):
    """Records its start and stop in *log*; each waits for a Deferred the test fires, when it is given one."""

    def __init__(self, name: str, log: list[str], fail: bool = False) -> None:
        super().__init__(name)
        self.log, self.fail = log, fail
        self.gate: defer.Deferred | None = None  # the stop waits for it

    async def start(self) -> None:
        self.log.append(f"start {self.name}")
        if self.fail:
            raise RuntimeError(f"{self.name} cannot start")

    async def stop(self) -> None:
        if self.gate is not None:
            await self.gate
        self.log.append(f"stop {self.name}")


class Plain(service.Service):
    """A plain Twisted service (synchronous start and stop)."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.setName(name)
        self.log = log

    def startService(self) -> None:  # noqa: N802
        super().startService()
        self.log.append(f"start {self.name}")

    def stopService(self) -> None:  # noqa: N802
        super().stopService()
        self.log.append(f"stop {self.name}")


@pytest_twisted.ensureDeferred
async def test_children_start_in_order_and_stop_in_reverse_one_at_a_time() -> None:
    log: list[str] = []
    tree = OrderedServices()
    first, second = Recorded("a", log), Recorded("b", log)
    nested = OrderedServices("nested")
    nested.addService(Recorded("n1", log))
    nested.addService(Plain("n2", log))
    for child in (first, second, nested, Plain("p", log)):
        tree.addService(child)
    assert log == []  # adding never starts
    tree.startService()
    await tree.ready
    assert log == ["start a", "start b", "start n1", "start n2", "start p"]
    del log[:]
    second.gate = defer.Deferred()  # b's stop takes time: a must wait for it
    stopping = tree.stopService()
    assert log == ["stop p", "stop n2", "stop n1"]
    second.gate.callback(None)
    await stopping
    assert log == ["stop p", "stop n2", "stop n1", "stop b", "stop a"]
    assert not any(child.running for child in tree)


@pytest_twisted.ensureDeferred
async def test_a_failed_start_stops_what_started_in_reverse() -> None:
    log: list[str] = []
    tree = OrderedServices()
    for child in (Recorded("a", log), Plain("b", log), Recorded("c", log, fail=True), Recorded("d", log)):
        tree.addService(child)
    tree.startService()
    with pytest.raises(RuntimeError, match="c cannot start"):
        await tree.ready
    # c's stop runs too (it may have started half-way); d never started
    assert log == ["start a", "start b", "start c", "stop c", "stop b", "stop a"]
    del log[:]
    await tree.stopService()  # nothing runs any more: nothing is stopped twice
    assert log == []


class Slow(Recorded):
    """Starts once the test fires ``opened``."""

    def __init__(self, name: str, log: list[str]) -> None:
        super().__init__(name, log)
        self.opened: defer.Deferred = defer.Deferred()

    async def start(self) -> None:
        await self.opened
        await super().start()


@pytest_twisted.ensureDeferred
async def test_a_tree_stopped_while_starting_starts_no_further_child() -> None:
    log: list[str] = []
    tree = OrderedServices("tree")
    slow = Slow("slow", log)
    for child in (Recorded("a", log), slow, Recorded("b", log)):
        tree.addService(child)
    tree.startService()
    stopping = tree.stopService()
    slow.opened.callback(None)
    await stopping
    with pytest.raises(defer.CancelledError, match="tree stopped while starting"):
        await tree.ready
    assert "start b" not in log and log[:1] == ["start a"] and "stop a" in log


@pytest_twisted.ensureDeferred
async def test_children_swapped_in_a_running_tree() -> None:
    log: list[str] = []
    tree = OrderedServices()
    tree.addService(Recorded("a", log))
    made: list[Any] = []
    tree.addService(Made("m", lambda: made.append(Plain("inner", log)) or made[-1]))
    tree.startService()
    await tree.ready
    late = Recorded("late", log)
    await tree.start_child(late)
    assert late.running and list(tree)[-1] is late
    await tree.stop_child(late)
    assert not late.running and late not in list(tree)
    with pytest.raises(RuntimeError):
        await tree.start_child(Recorded("bad", log, fail=True))
    assert [child.name for child in tree] == ["a", "m"]
    await tree.stopService()
    assert log == ["start a", "start inner", "start late", "stop late", "start bad", "stop bad", "stop inner",
                   "stop a"]
    assert tree.getServiceNamed("m").made is None and len(made) == 1


def _config(db_url: str, port: int = 0) -> MasterConfig:
    return MasterConfig(db_url=db_url, www=WWWConfig(interface="127.0.0.1", port=port))


CHILDREN = ["storage", "data", "reporters", "workerlink", "live", "engine", "web", "plugins", "port",
            "local_workers", "retention", "heartbeat"]


@pytest_twisted.ensureDeferred
async def test_master_starts_its_children_in_order_and_stops_them_in_reverse(
    migrated_url: str, tmp_path: Path
) -> None:
    master = MasterService(tmp_path, _config(migrated_url))
    assert [child.name for child in master] == CHILDREN
    stopped: list[str] = []
    for child in master:
        def recording(child: Any = child, stop: Any = child.stopService) -> Any:
            stopped.append(child.name)
            return stop()
        child.stopService = recording
    master.startService()
    url = await within(master.started, "the master to start")
    assert url == f"http://127.0.0.1:{master.port.getHost().port}/"
    assert all(child.running for child in master)
    assert master.data.engine is master.engine and master.data.auth is master.auth
    assert master.data.basedir == tmp_path.resolve() and master.data.events.masterid == master.masterid
    assert master.heartbeat is not None and master.heartbeat.clock is master.clock
    await master.stopService()
    assert stopped == CHILDREN[::-1]
    assert master.storage is None and master.port is None and master.data.engine is None


@pytest_twisted.ensureDeferred
async def test_a_master_that_cannot_listen_stops_what_it_started(migrated_url: str, tmp_path: Path) -> None:
    taken = reactor.listenTCP(0, Site(Resource()), interface="127.0.0.1")
    try:
        master = MasterService(tmp_path, _config(migrated_url, taken.getHost().port))
        master.startService()
        with pytest.raises(StartupError, match="cannot listen on 127.0.0.1"):
            await within(master.started, "the start to fail")
        assert not any(child.running for child in master)
        assert master.storage is None and master.data.engine is None  # the engine stopped, storage closed
        await master.stopService()  # what the reactor's shutdown does next: nothing left to stop
    finally:
        await taken.stopListening()


@pytest_twisted.ensureDeferred
async def test_an_old_schema_is_refused_before_anything_starts(tmp_path: Path) -> None:
    master = MasterService(tmp_path, _config(f"sqlite:///{tmp_path / 'empty.sqlite'}"))
    master.startService()
    with pytest.raises(StartupError, match="upgrade-master|create-master"):
        await within(master.started, "the start to fail")
    assert master.data_part.data is None and not any(child.running for child in master)
    with pytest.raises(NotRunning, match="the master's data is not running"):
        master.data  # noqa: B018 (asking is the point)
