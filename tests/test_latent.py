"""The latent-worker seam and its manager (master.engine.latent), with an in-memory ILatentWorker.

What a Kubernetes or cloud implementation would plug in is played by :class:`MemoryLatent`,
whose "instances" are entries of a dict; the real Docker one is tested in test_latent_docker.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer
from twisted.internet.task import Clock
from waiting import wait_for
from zope.interface import implementer
from zope.interface.verify import verifyObject

from master.config import ConfigError, load_config
from master.engine.docker import DockerLatentWorker
from master.engine.latent import (
    LABEL_PREFIX,
    ILatentWorker,
    LatentHostUnreachable,
    LatentWorkerFailed,
    LatentWorkers,
    LaunchContext,
)


@implementer(ILatentWorker)
class MemoryLatent:
    """Instances kept in a dict; ``ended`` makes check_instance report the next one as exited."""

    def __init__(self, name: str, build_wait_timeout: float = 0, missing_timeout: float = 30,
                 unreachable: bool = False, ended: str | None = None) -> None:
        self.name, self.password, self.max_builds = name, "pw", 1
        self.build_wait_timeout, self.missing_timeout = build_wait_timeout, missing_timeout
        self.unreachable, self.ended = unreachable, ended
        self.instances: dict[str, LaunchContext] = {}
        self.stopped: list[str] = []

    def describe(self) -> str:
        return f"memory instance of {self.name}"

    def host_key(self) -> str:
        return "memory"

    async def start_instance(self, context: LaunchContext) -> str:
        if self.unreachable:
            raise LatentHostUnreachable("the memory host is down")
        instance = f"{self.name}-{len(self.instances) + 1}"
        self.instances[instance] = context
        return instance

    async def check_instance(self, instance_id: str) -> str | None:
        return self.ended

    async def stop_instance(self, instance_id: str) -> None:
        self.stopped.append(instance_id)

    async def remove_leftovers(self, labels: dict[str, str]) -> list[str]:
        if self.unreachable:
            raise LatentHostUnreachable("the memory host is down")
        return []


class FakeConnection:
    """A connected worker: records shutdown and disconnects at once."""

    def __init__(self, name: str) -> None:
        self.name, self.workerid, self.max_builds, self.info = name, 0, 1, {}
        self.connected = True
        self.shutdowns: list[bool] = []
        self._callbacks: list[Any] = []

    def notify_on_disconnect(self, callback: Any) -> None:
        self._callbacks.append(callback)

    def shutdown(self, graceful: bool) -> None:
        self.shutdowns.append(graceful)
        self.connected = False
        for callback in self._callbacks:
            callback()


class FakeEngine:
    """What LatentWorkers uses of the engine: data.updates.find_worker_id, load, distributor."""

    def __init__(self) -> None:
        self.loads: dict[Any, int] = {}
        self.activity = 0
        self.ids: dict[str, int] = {}
        engine = self

        class Updates:
            async def find_worker_id(self, name: str) -> int:
                return engine.ids.setdefault(name, len(engine.ids) + 1)

        class Data:
            updates = Updates()

        class Distributor:
            def activity(self) -> None:
                engine.activity += 1

        self.data, self.distributor = Data(), Distributor()

    def load(self, slot: Any) -> int:
        return self.loads.get(slot, 0)

    async def set_graceful(self, workerid: int, graceful: bool) -> None:
        self.graceful = (workerid, graceful)


class Config:
    def __init__(self, workers: list[Any], max_latent_workers: int | None = None) -> None:
        self.workers, self.max_latent_workers = workers, max_latent_workers


_managers: list[LatentWorkers] = []


@pytest_twisted.async_yield_fixture(autouse=True)
async def _stop_managers() -> Any:
    """Stop each test's managers (their probe loops) at its end."""
    yield
    while _managers:
        await _managers.pop().stop()


async def _manager(
    workers: list[Any], cap: int | None = None, clock: Clock | None = None
) -> tuple[LatentWorkers, FakeEngine]:
    engine = FakeEngine()
    latent = LatentWorkers(engine, clock)
    _managers.append(latent)
    await latent.configure(Config(workers, cap))
    await latent.start("master-a", 7)
    latent.set_master_url("ws://127.0.0.1:1/worker")
    return latent, engine


def test_implementations_provide_the_interface() -> None:
    verifyObject(ILatentWorker, DockerLatentWorker("d", "pw", image="img"))
    verifyObject(ILatentWorker, MemoryLatent("m"))


@pytest_twisted.ensureDeferred
async def test_substantiate_then_insubstantiate_after_the_build() -> None:
    spec = MemoryLatent("m1")
    latent, engine = await _manager([spec])
    slot = latent.workers["m1"].slot
    said: list[str] = []
    waiting = defer.ensureDeferred(latent.substantiate(slot, said.append))
    assert latent.state_of_id(slot.workerid) == "starting"
    await wait_for(lambda: spec.instances)
    (instance, context), = spec.instances.items()
    assert context.labels == {LABEL_PREFIX + "master": "master-a", LABEL_PREFIX + "masterid": "7",
                              LABEL_PREFIX + "worker": "m1"}
    assert context.environment == {"CI_MASTER_URL": "ws://127.0.0.1:1/worker", "CI_WORKER_NAME": "m1",
                                   "CI_WORKER_PASSWORD": "pw", "CI_WORKER_MAX_BUILDS": "1"}
    conn = FakeConnection("m1")
    engine.loads[slot] = 1  # the build that waits holds the slot
    latent.worker_attached(conn)
    assert await waiting is conn
    assert latent.state_of_id(slot.workerid) == "running"
    assert any("started" in line for line in said) and "worker m1 connected" in said
    engine.loads[slot] = 0
    latent.build_ended(slot)  # build_wait_timeout=0: removed at once
    await wait_for(lambda: spec.stopped)
    assert spec.stopped == [instance] and conn.shutdowns == [False]
    assert engine.graceful == (slot.workerid, False)  # a 'stop' asked of it ends with the instance
    assert latent.state_of_id(slot.workerid) == "stopped"


@pytest_twisted.ensureDeferred
async def test_an_instance_that_ends_fails_the_build_with_its_reason() -> None:
    spec = MemoryLatent("m1", ended="container x exited with code 3\nboom")
    latent, _ = await _manager([spec])
    with pytest.raises(LatentWorkerFailed, match="exited with code 3\nboom"):
        await latent.substantiate(latent.workers["m1"].slot, lambda line: None)
    assert spec.stopped == ["m1-1"] and latent.workers["m1"].state == "stopped"


@pytest_twisted.ensureDeferred
async def test_a_worker_that_never_connects_is_stopped_after_missing_timeout() -> None:
    clock = Clock()
    spec = MemoryLatent("m1", missing_timeout=30)
    latent, _ = await _manager([spec], clock=clock)
    waiting = defer.ensureDeferred(latent.substantiate(latent.workers["m1"].slot, lambda line: None))
    clock.pump([1.0] * 29)
    assert not waiting.called and spec.instances and spec.stopped == []
    clock.pump([1.0] * 2)
    with pytest.raises(LatentWorkerFailed, match=r"did not connect within 30s"):
        await waiting
    assert spec.stopped == ["m1-1"]


@pytest_twisted.ensureDeferred
async def test_an_idle_worker_is_stopped_after_build_wait_timeout_on_the_clock() -> None:
    clock = Clock()
    spec = MemoryLatent("m1", build_wait_timeout=600)
    latent, engine = await _manager([spec], clock=clock)
    slot = latent.workers["m1"].slot
    waiting = defer.ensureDeferred(latent.substantiate(slot, lambda line: None))
    engine.loads[slot] = 1
    latent.worker_attached(FakeConnection("m1"))
    await waiting
    engine.loads[slot] = 0
    latent.build_ended(slot)
    clock.advance(599)
    assert latent.state_of_id(slot.workerid) == "running" and spec.stopped == []
    clock.advance(1)  # the idle timer fires; the memory instance goes at once
    assert spec.stopped == ["m1-1"] and latent.state_of_id(slot.workerid) == "stopped"


@pytest_twisted.ensureDeferred
async def test_an_unreachable_host_takes_the_worker_out_of_the_slots() -> None:
    spec = MemoryLatent("m1", unreachable=True)
    latent, _ = await _manager([spec])
    slot = latent.workers["m1"].slot
    assert latent.state_of_id(slot.workerid) == "unreachable"  # the start-up's leftover removal failed
    assert latent.slots() == []
    spec.unreachable = False
    latent._probe()
    await wait_for(lambda: latent.slots() == [slot])
    assert latent.state_of_id(slot.workerid) == "stopped"


@pytest_twisted.ensureDeferred
async def test_max_latent_workers_caps_the_instances_up() -> None:
    specs = [MemoryLatent(f"m{n}") for n in range(3)]
    latent, _ = await _manager(specs, cap=1)
    assert len(latent.slots()) == 3
    first = latent.workers["m0"].slot
    waiting = defer.ensureDeferred(latent.substantiate(first, lambda line: None))
    assert latent.slots() == [first]  # only the one starting may take builds
    waiting.cancel()
    with pytest.raises(defer.CancelledError):
        await waiting


@pytest_twisted.ensureDeferred
async def test_a_latent_worker_connecting_unasked_is_sent_away() -> None:
    latent, _ = await _manager([MemoryLatent("m1")])
    conn = FakeConnection("m1")
    latent.worker_attached(conn)
    assert conn.shutdowns == [False]


@pytest.mark.parametrize(("worker", "message"), [
    ('DockerLatentWorker("d", "", image="i")', "password: expected a non-empty string"),
    ('DockerLatentWorker("d", "pw", image="i", max_builds=0)', "max_builds: expected an integer >= 1"),
    ('DockerLatentWorker("d", "pw", image="i", volumes="/a:/b")', "volumes: expected a list"),
    ('DockerLatentWorker("d", "pw", image="i", build_wait_timeout=-1)', "build_wait_timeout: expected a number"),
])
def test_bad_docker_worker_arguments_are_config_errors(tmp_path: Path, worker: str, message: str) -> None:
    (tmp_path / "master.cfg").write_text(
        "from master.config import MasterConfig\nfrom master.engine.docker import DockerLatentWorker\n"
        f"config = MasterConfig(workers=[{worker}])\n")
    with pytest.raises(ConfigError, match=message):
        load_config(tmp_path)


def test_max_latent_workers_must_be_positive(tmp_path: Path) -> None:
    (tmp_path / "master.cfg").write_text(
        "from master.config import MasterConfig\nconfig = MasterConfig(max_latent_workers=0)\n")
    with pytest.raises(ConfigError, match="max_latent_workers: expected a number >= 1"):
        load_config(tmp_path)

