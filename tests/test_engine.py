"""The build engine on both backends, with workers that run real local subprocesses.

``LocalWorker`` implements IWorkerConnection in-process with ``reactor.spawnProcess`` (each
command in its own session, so that an interrupt reaches its whole process group): a stand-in
for the WebSocket worker link, which is tested on its own.
"""

from __future__ import annotations

import codecs
import datetime
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from apiclient import serve
from twisted.internet import defer, protocol, reactor
from twisted.internet.task import deferLater
from waiting import wait_for
from zope.interface import implementer
from zope.interface.verify import verifyObject

from master.data.connector import DataAPI
from master.data.errors import Conflict, InvalidParams
from master.data.resources import core_resource_types
from master.db.backends import make_storage
from master.engine.config import check_engine_config
from master.engine.engine import Engine
from master.engine.interfaces import (
    Command,
    CommandResult,
    IRunningCommand,
    IWorkerConnection,
    IWorkerListener,
    WorkerLost,
)
from master.engine.properties import Interpolate, Properties, Property
from master.engine.schedulers import (
    BooleanParameter,
    ChoiceStringParameter,
    ForceScheduler,
    IntParameter,
    Nightly,
    Periodic,
    SingleBranchScheduler,
    StringParameter,
    Triggerable,
)
from master.engine.steps import SetPropertyFromCommand, ShellCommand, Trigger
from master.results import CANCELLED, EXCEPTION, FAILURE, RETRY, SKIPPED, SUCCESS

KILL_GRACE = 2.0
WAIT = 30.0  # the bound of every wait


# -- a worker connection running local subprocesses ----------------------------------------------------


@implementer(IRunningCommand)
class LocalCommand(protocol.ProcessProtocol):
    """One command of a LocalWorker, with the worker's timeouts and interrupt (SIGTERM, then SIGKILL)."""

    def __init__(self, worker: LocalWorker, cmd_id: str, command: Command, on_output: Callable[[str, str], Any]):
        self.worker = worker
        self.id = cmd_id
        self.command = command
        self.on_output = on_output
        self.result: defer.Deferred = defer.Deferred()
        self.interrupted = self.timed_out = False
        self.decoders = {s: codecs.getincrementaldecoder("utf-8")("replace") for s in "oe"}
        self.started = reactor.seconds()
        self.timers: list[Any] = []
        self.pid: int | None = None

    def start(self) -> None:
        workdir = self.worker.basedir / self.command.builder / self.command.workdir
        workdir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, WORKERNAME=self.worker.name)
        for name, value in self.command.env.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        argv = self.command.argv if self.command.argv is not None else ["/bin/sh", "-c", self.command.shell]
        process = reactor.spawnProcess(self, "/usr/bin/setsid", ["setsid", *argv], env, str(workdir))
        self.pid = process.pid
        self.worker.pids.append(self.pid)
        if self.command.max_time is not None:
            self.timers.append(reactor.callLater(self.command.max_time, self._timeout))
        self._idle = reactor.callLater(self.command.timeout, self._timeout) if self.command.timeout else None

    def _output(self, stream: str, data: bytes) -> None:
        if self._idle is not None and self._idle.active():
            self._idle.reset(self.command.timeout)
        text = self.decoders[stream].decode(data)
        if text:
            self.on_output(stream, text)

    def outReceived(self, data: bytes) -> None:  # noqa: N802
        self._output("o", data)

    def errReceived(self, data: bytes) -> None:  # noqa: N802
        self._output("e", data)

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            # setsid has not run yet in the child (no such group): signal the process itself
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def _timeout(self) -> None:
        self.timed_out = True
        self.interrupt("timeout")

    def interrupt(self, reason: str) -> None:
        if self.result.called:
            return
        self.interrupted = True
        self._signal(signal.SIGTERM)
        self.timers.append(reactor.callLater(KILL_GRACE, self._signal, signal.SIGKILL))

    def lose(self) -> None:
        """The worker vanished: kill the process, fail the result with WorkerLost."""
        self._signal(signal.SIGKILL)
        self._cancel_timers()
        if not self.result.called:
            self.result.errback(WorkerLost(f"worker {self.worker.name} disconnected"))

    def _cancel_timers(self) -> None:
        for timer in [*self.timers, self._idle]:
            if timer is not None and timer.active():
                timer.cancel()

    def processEnded(self, reason: Any) -> None:  # noqa: N802
        self._cancel_timers()
        self.worker.running.pop(self.id, None)
        if self.result.called:
            return
        status = reason.value
        sig = getattr(status, "signal", None)
        result = CommandResult(
            rc=status.exitCode, signal=signal.Signals(sig).name if sig else None, interrupted=self.interrupted,
            timed_out=self.timed_out, elapsed=reactor.seconds() - self.started,
        )
        self.result.callback(result)
        self.worker.command_ended()


@implementer(IWorkerConnection)
class LocalWorker:
    """An attached worker that runs commands as local subprocesses under *basedir*."""

    def __init__(self, name: str, workerid: int, basedir: Path, listener: Any, max_builds: int = 1) -> None:
        self.name = name
        self.workerid = workerid
        self.basedir = basedir
        self.listener = listener
        self.max_builds = max_builds
        self.info = {"os": "test", "hostname": "localhost"}
        self.running: dict[str, LocalCommand] = {}
        self.pids: list[int] = []
        self.connected = True
        self._callbacks: list[Callable[[], Any]] = []
        self._ids = 0
        self._leaving = False

    def run(self, command: Command, on_output: Callable[[str, str], Any]) -> LocalCommand:
        self._ids += 1
        running = LocalCommand(self, f"c{self._ids}", command, on_output)
        if not self.connected:
            running.result.errback(WorkerLost("not connected"))
            return running
        self.running[running.id] = running
        running.start()
        return running

    def shutdown(self, graceful: bool) -> None:
        self._leaving = True
        if not graceful:
            self.disconnect()
        elif not self.running:
            self.disconnect()

    def command_ended(self) -> None:
        if self._leaving and not self.running:
            reactor.callLater(0.2, self.disconnect)  # a build may be starting its next step

    def notify_on_disconnect(self, callback: Callable[[], Any]) -> None:
        self._callbacks.append(callback)

    def disconnect(self) -> None:
        """Drop the connection: running commands fail with WorkerLost, the listener is told."""
        if not self.connected:
            return
        self.connected = False
        for running in list(self.running.values()):
            running.lose()
        self.running.clear()
        for callback in self._callbacks:
            callback()
        self.listener.worker_detached(self)


# -- helpers -------------------------------------------------------------------------------------------


@dataclass
class BuilderSpec:
    """What the engine reads of a builder's config (BuilderConfig plus the steps the lead adds)."""

    name: str
    workernames: list[str]
    steps: list[Any]
    tags: list[str] = field(default_factory=list)
    description: str | None = None


@dataclass
class Config:
    builders: list[BuilderSpec] = field(default_factory=list)
    schedulers: list[Any] = field(default_factory=list)


def make_data(storage: Any) -> DataAPI:
    data = DataAPI(storage)
    for rtype in core_resource_types():
        data.add_resource_type(rtype)
    return data


@dataclass
class Master:
    """A data API, its master id, an engine and the workers attached to it."""

    data: DataAPI
    masterid: int
    engine: Engine
    basedir: Path
    workers: list[LocalWorker] = field(default_factory=list)

    async def attach(self, name: str, max_builds: int = 1) -> LocalWorker:
        workerid = await self.data.updates.find_worker_id(name)
        worker = LocalWorker(name, workerid, self.basedir / name, self.engine, max_builds)
        verifyObject(IWorkerConnection, worker)
        self.workers.append(worker)
        self.engine.worker_attached(worker)
        return worker

    async def build_done(self, buildid: int) -> dict[str, Any]:
        async def check() -> Any:
            build = await self.data.get(("builds", str(buildid)))
            return build if build["complete"] else None

        return await wait_for(check, what=f"build {buildid} to finish")

    async def request_done(self, brid: int) -> dict[str, Any]:
        async def check() -> Any:
            request = await self.data.get(("buildrequests", str(brid)))
            return request if request["complete"] else None

        return await wait_for(check, what=f"request {brid} to complete")

    async def builds_of(self, brid: int) -> list[dict[str, Any]]:
        query = {"order": ["buildid"]}
        return (await self.data.get(("buildrequests", str(brid), "builds"), query=query)).items

    async def first_build(self, brid: int) -> dict[str, Any]:
        async def check() -> Any:
            builds = await self.builds_of(brid)
            return builds[0] if builds else None

        return await wait_for(check, what=f"a build of request {brid}")

    async def steps(self, buildid: int) -> list[dict[str, Any]]:
        return (await self.data.get(("builds", str(buildid), "steps"), query={"order": ["number"]})).items

    async def log_text(self, stepid: int, slug: str = "stdio") -> str:
        log = await self.data.get(("steps", str(stepid), "logs", slug))
        return (await self.data.get(("logs", str(log["logid"]), "contents")))["content"]

    async def stop(self) -> None:
        await self.engine.stop()
        for worker in self.workers:
            worker.disconnect()


async def start_master(storage: Any, name: str, tmp_path: Path, config: Config, poll: float = 0.5) -> Master:
    data = make_data(storage)
    masterid = await data.updates.master_active(name)
    engine = Engine(poll_interval=poll, stop_timeout=10)
    verifyObject(IWorkerListener, engine)
    for spec in config.builders:
        await data.updates.update_builder(spec.name)
    await engine.start(data, masterid, config)
    return Master(data, masterid, engine, tmp_path / name)


@pytest_twisted.async_yield_fixture()
async def masters(storage: Any, tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Master]]]:
    """A factory of masters on the test's database; all are stopped at the end."""
    started: list[Master] = []

    async def make(config: Config, name: str = "m1", poll: float = 0.5, store: Any = None) -> Master:
        master = await start_master(store or storage, name, tmp_path, config, poll)
        started.append(master)
        return master

    yield make
    for master in started:
        await master.stop()


async def force(master: Master, scheduler: str = "force", **params: Any) -> tuple[int, dict[str, int]]:
    bsid, brids = await master.data.control(("forceschedulers", scheduler), "force", params)
    return bsid, brids


async def buildset(master: Master, builder: str, priority: int = 0) -> int:
    builderid = master.engine.builders[builder].builderid
    _, brids = await master.data.updates.add_buildset(None, [], "test", {}, [builderid], priority=priority)
    return brids[builderid]


# -- tests without a database ---------------------------------------------------------------------


def test_interpolate_and_property() -> None:
    props = Properties({"branch": ("main", "Build"), "empty": ("", "Build"), "jobs": (4, "Build")})
    assert Interpolate("on %(prop:branch)s, -j%(prop:jobs)d, 100%%").render(props) == "on main, -j4, 100%"
    assert Interpolate("%(prop:missing)s|%(prop:missing:-dflt)s|%(prop:empty:~none)s|%(prop:branch:+yes)s"
                       "|%(prop:missing:+yes)s").render(props) == "|dflt|none|yes|"
    assert Interpolate("%(kw:who)s on %(kw:where:-here)s", who=Property("branch")).render(props) == "main on here"
    assert props.render(["make", Interpolate("B=%(prop:branch)s"), {"k": Property("nope", default="d")}]) == [
        "make", "B=main", {"k": "d"},
    ]
    with pytest.raises(KeyError):
        Interpolate("%(bogus)s").render(props)
    assert Interpolate("a %(prop:x)s") == Interpolate("a %(prop:x)s") != Interpolate("b")
    step = ShellCommand(["echo", Interpolate("%(prop:x)s")], name="e")
    assert step == ShellCommand(["echo", Interpolate("%(prop:x)s")], name="e") and step.fresh() == step
    assert step.fresh() is not step


def test_check_engine_config() -> None:
    builders = [BuilderSpec("a", [], [ShellCommand(["true"]), Trigger(["t"])])]
    check_engine_config(builders, [Triggerable("t", ["a"]), ForceScheduler("f", ["a"])])
    with pytest.raises(ValueError, match=r"builders\[0\]\.steps\[1\]: no Triggerable scheduler named 't'"):
        check_engine_config(builders, [])
    with pytest.raises(ValueError, match=r"schedulers\[1\]\.builderNames: no such builder\(s\) 'zz'"):
        check_engine_config(builders, [Triggerable("t", ["a"]), ForceScheduler("f", ["zz"])])
    with pytest.raises(ValueError, match=r"schedulers\[1\]: scheduler name 't' is used twice"):
        check_engine_config(builders, [Triggerable("t", ["a"]), Triggerable("t", ["a"])])


def test_nightly_next_time() -> None:
    nightly = Nightly("n", ["b"], minute=30, hour=[3, 15], dayOfWeek=0)  # Mondays 03:30 and 15:30
    after = datetime.datetime(2026, 1, 7, 12, 0)  # a Wednesday
    assert nightly.next_time(after) == datetime.datetime(2026, 1, 12, 3, 30)
    assert nightly.next_time(datetime.datetime(2026, 1, 12, 3, 30)) == datetime.datetime(2026, 1, 12, 15, 30)
    monthly = Nightly("m", ["b"], minute=0, hour=0, dayOfMonth=1, month=[2])
    assert monthly.next_time(after) == datetime.datetime(2026, 2, 1, 0, 0)
    with pytest.raises(ValueError):
        Nightly("bad", ["b"], hour=24)
    with pytest.raises(ValueError):
        Periodic("p", ["b"], periodicBuildTimer=0)


# -- builds --------------------------------------------------------------------------------------------


def hello_config() -> Config:
    steps = [
        ShellCommand(["echo", Interpolate("hello %(prop:who)s")], name="greet"),
        SetPropertyFromCommand("echo 42", property="answer", name="answer"),
        ShellCommand("echo oops >&2; exit 3", name="fail", haltOnFailure=True),
        ShellCommand(["echo", "never"], name="never"),
        ShellCommand(["echo", Interpolate("the answer was %(prop:answer)s")], name="cleanup", alwaysRun=True),
    ]
    forcer = ForceScheduler("force", ["hello"], properties=[StringParameter("who", default="world")])
    return Config([BuilderSpec("hello", ["w1"], steps)], [forcer])


@pytest.mark.slow  # a local worker runs the steps
@pytest_twisted.ensureDeferred
async def test_force_build_steps_results_and_logs(masters: Any) -> None:
    master = await masters(hello_config())
    await master.attach("w1")
    async with serve(master.data) as api:
        builderid = master.engine.builders["hello"].builderid
        code, body = await api.rpc("/api/v2/forceschedulers/force", {
            "jsonrpc": "2.0", "id": 1, "method": "force",
            "params": {"builderid": str(builderid), "username": "alice <alice@example.org>", "who": "ci"},
        })
        assert code == 200, body
        bsid, brids = body["result"]
        brid = brids[str(builderid)]
        build = await master.build_done((await master.first_build(brid))["buildid"])
        assert build["results"] == FAILURE and build["state_string"] == "build failure"
        assert build["workerid"] == master.workers[0].workerid and build["masterid"] == master.masterid
        steps = await master.steps(build["buildid"])
        assert [(s["name"], s["results"]) for s in steps] == [
            ("greet", SUCCESS), ("answer", SUCCESS), ("fail", FAILURE), ("cleanup", SUCCESS),
        ]
        assert all(s["complete"] and s["started_at"] and s["complete_at"] for s in steps)
        assert steps[0]["state_string"] == "'echo hello ci'"
        assert steps[2]["state_string"] == "'echo oops >&2; exit 3' (failure)"
        assert steps[1]["state_string"] == "property 'answer' set"
        greet = await master.log_text(steps[0]["stepid"])
        assert greet.startswith("hecho 'hello ci'\nh in dir build") and "ohello ci\n" in greet
        assert "hprogram finished with exit code 0\n" in greet
        fail = await master.log_text(steps[2]["stepid"])
        assert "eoops\n" in fail and "hprogram finished with exit code 3\n" in fail
        assert "othe answer was 42\n" in await master.log_text(steps[3]["stepid"])
        # through REST: the build with its properties, and the raw log
        code, body, _ = await api.get(f"/api/v2/builds/{build['buildid']}?property=*")
        props = body["builds"][0]["properties"]
        assert props["answer"] == ["42", "SetPropertyFromCommand Step"]
        assert props["who"] == ["ci", "Force Build Form"] and props["owner"][0] == "alice <alice@example.org>"
        assert props["buildername"] == ["hello", "Build"] and props["scheduler"] == ["force", "Scheduler"]
        code, body, _ = await api.get(f"/api/v2/builds/{build['buildid']}/steps/greet/logs/stdio/contents")
        assert code == 200 and "ohello ci\n" in body["logchunks"][0]["content"]
        request = await master.request_done(brid)
        assert request["results"] == FAILURE
        assert (await master.data.get(("buildsets", str(bsid))))["results"] == FAILURE
        # rebuild: the same buildset again, which fails again
        rebuilt_bsid, rebuilt = await master.data.control(("builds", str(build["buildid"])), "rebuild", {})
        again = await master.request_done(rebuilt[str(builderid)])
        assert again["results"] == FAILURE
        assert (await master.data.get(("buildsets", str(rebuilt_bsid))))["rebuilt_buildid"] == build["buildid"]


@pytest.mark.slow  # a local worker runs the steps
@pytest_twisted.ensureDeferred
async def test_priority_then_age(masters: Any) -> None:
    master = await masters(Config([BuilderSpec("p", ["w1"], [ShellCommand(["true"])])]))
    low = await buildset(master, "p", priority=0)
    high = await buildset(master, "p", priority=5)
    mid = await buildset(master, "p", priority=1)
    mid2 = await buildset(master, "p", priority=1)
    await master.attach("w1")  # max_builds 1: one at a time, in queue order
    for brid in (low, high, mid, mid2):
        await master.request_done(brid)
    order = [(await master.builds_of(brid))[0]["number"] for brid in (high, mid, mid2, low)]
    assert order == [1, 2, 3, 4]


@pytest.mark.slow  # a local worker runs the steps
@pytest_twisted.ensureDeferred
async def test_stop_and_cancel_running_builds(masters: Any) -> None:
    slow = [ShellCommand(["sleep", "60"], name="sleep"), ShellCommand(["true"], name="after", alwaysRun=True)]
    master = await masters(Config([BuilderSpec("slow", ["w1"], slow)]))
    worker = await master.attach("w1", max_builds=2)
    first, second = await buildset(master, "slow"), await buildset(master, "slow")
    builds = [await master.first_build(brid) for brid in (first, second)]
    await wait_for(lambda: defer.succeed(len(worker.running) == 2), what="both sleeps to run")
    pids = list(worker.pids)
    # build stop
    assert await master.data.control(("builds", str(builds[0]["buildid"])), "stop", {"reason": "enough"}) is None
    # buildrequest cancel of a claimed request stops its build
    assert await master.data.control(("buildrequests", str(second)), "cancel", {"reason": "no"}) is None
    for build in builds:
        done = await master.build_done(build["buildid"])
        assert done["results"] == CANCELLED
        assert [s["results"] for s in await master.steps(build["buildid"])] == [CANCELLED]
    assert "(enough)" in (await master.data.get(("builds", str(builds[0]["buildid"]))))["state_string"]
    for brid in (first, second):
        assert (await master.request_done(brid))["results"] == CANCELLED
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    # a finished build's stop is accepted and changes nothing, as in Buildbot
    assert await master.data.control(("builds", str(builds[0]["buildid"])), "stop", {}) is None


@pytest.mark.slow  # a local worker runs the steps
@pytest_twisted.ensureDeferred
async def test_worker_lost_retries_on_another_worker(masters: Any) -> None:
    command = 'if [ "$WORKERNAME" = w1 ]; then sleep 60; fi; echo ran on $WORKERNAME'
    master = await masters(Config([BuilderSpec("b", ["w1", "w2"], [ShellCommand(command, name="run")])]))
    w1 = await master.attach("w1")
    brid = await buildset(master, "b")
    lost = await master.first_build(brid)
    await wait_for(lambda: defer.succeed(bool(w1.running)), what="the command to run on w1")
    pid = w1.pids[0]
    w1.disconnect()
    done = await master.build_done(lost["buildid"])
    assert done["results"] == RETRY
    assert [s["results"] for s in await master.steps(lost["buildid"])] == [RETRY]

    async def requeued() -> bool:
        request = await master.data.get(("buildrequests", str(brid)))
        return not request["claimed"] and not request["complete"]

    await wait_for(requeued, what="the request to be queued again")
    await master.attach("w2")
    request = await master.request_done(brid)
    assert request["results"] == SUCCESS
    builds = await master.builds_of(brid)
    assert [b["results"] for b in builds] == [RETRY, SUCCESS]
    assert builds[1]["workerid"] == master.workers[1].workerid
    steps = await master.steps(builds[1]["buildid"])
    assert "oran on w2\n" in await master.log_text(steps[0]["stepid"])
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@pytest.mark.slow  # a local worker runs the steps
@pytest_twisted.ensureDeferred
async def test_worker_kill_action_and_engine_stop_requeue(masters: Any) -> None:
    master = await masters(Config([BuilderSpec("b", ["w1", "w2"], [ShellCommand(["sleep", "60"])])]))
    w1 = await master.attach("w1")
    brid = await buildset(master, "b")
    build = await master.first_build(brid)
    await wait_for(lambda: defer.succeed(bool(w1.running)), what="the command to run")
    assert await master.data.control(("workers", str(w1.workerid)), "kill", {}) is None
    assert (await master.build_done(build["buildid"]))["results"] == RETRY
    await master.attach("w2")
    second = await wait_for(lambda: _nth_build(master, brid, 1), what="the retry")
    await wait_for(lambda: defer.succeed(bool(master.workers[1].running)), what="the retry's command")
    await master.engine.stop()  # builds of a stopping master end RETRY and their requests are queued again
    assert (await master.build_done(second["buildid"]))["results"] == RETRY
    request = await master.data.get(("buildrequests", str(brid)))
    assert not request["claimed"] and not request["complete"]


async def _nth_build(master: Master, brid: int, n: int) -> Any:
    builds = await master.builds_of(brid)
    return builds[n] if len(builds) > n else None


@pytest.mark.slow  # a local worker runs the steps
@pytest_twisted.ensureDeferred
async def test_crash_recovery(masters: Any, storage: Any) -> None:
    # what a master killed mid-build leaves: a claimed request with a running build, step and log;
    # and a request whose build finished but which was not marked complete
    data = make_data(storage)
    masterid = await data.updates.master_active("m1")
    builderid = await data.updates.update_builder("b")
    workerid = await data.updates.find_worker_id("w1")
    _, brids = await data.updates.add_buildset(None, [], "x", {}, [builderid])
    _, brids2 = await data.updates.add_buildset(None, [], "y", {}, [builderid])
    running, finished = brids[builderid], brids2[builderid]
    assert await data.updates.claim_buildrequests([running, finished], masterid) == sorted([running, finished])
    lost_buildid, _ = await data.updates.add_build(builderid, running, workerid, masterid)
    stepid, _, _ = await data.updates.add_step(lost_buildid, "compile")
    await data.updates.start_step(stepid)
    logid = await data.updates.add_log(stepid, "stdio", "s")
    await data.updates.append_log(logid, "ohalf\n")
    done_buildid, _ = await data.updates.add_build(builderid, finished, workerid, masterid)
    await data.updates.finish_build(done_buildid, SUCCESS)

    master = await masters(Config([BuilderSpec("b", ["w1"], [ShellCommand(["true"])])]))
    lost = await master.data.get(("builds", str(lost_buildid)))
    assert lost["complete"] and lost["results"] == EXCEPTION
    step = await master.data.get(("steps", str(stepid)))
    assert step["results"] == EXCEPTION and (await master.data.get(("logs", str(logid))))["complete"]
    request = await master.data.get(("buildrequests", str(finished)))
    assert request["complete"] and request["results"] == SUCCESS  # not run a second time
    await master.attach("w1")
    assert (await master.request_done(running))["results"] == SUCCESS
    assert [b["results"] for b in await master.builds_of(running)] == [EXCEPTION, SUCCESS]
    assert len(await master.builds_of(finished)) == 1


@pytest.mark.slow  # a local worker runs the steps
@pytest_twisted.ensureDeferred
async def test_two_masters_claim_each_request_once(masters: Any, migrated_url: str) -> None:
    config = Config([BuilderSpec("t", ["w1", "w2"], [ShellCommand(["true"])])])
    other_storage = make_storage(migrated_url)
    await other_storage.start()
    try:
        m1 = await masters(config, "m1", poll=0.2)
        m2 = await masters(config, "m2", poll=0.2, store=other_storage)
        await m1.attach("w1", max_builds=2)
        await m2.attach("w2", max_builds=2)
        brids = [await buildset(m1, "t") for _ in range(50)]

        async def all_done() -> bool:
            query = {"complete": ["false"], "field": ["buildrequestid"]}
            return (await m1.data.get("buildrequests", query=query)).total == 0

        await wait_for(all_done, timeout=60, what="50 requests to complete")
        query = {"field": ["buildrequestid", "results", "masterid"], "limit": ["1000"]}
        builds = (await m1.data.get("builds", query=query)).items
        assert sorted(b["buildrequestid"] for b in builds) == sorted(brids)  # each ran exactly once
        assert all(b["results"] == SUCCESS for b in builds)
        # both masters built (m2 finds requests by polling: no event crosses masters)
        assert {b["masterid"] for b in builds} == {m1.masterid, m2.masterid}
        await m2.stop()
    finally:
        await other_storage.stop()


# -- schedulers -----------------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_force_scheduler_fields_and_validation(masters: Any) -> None:
    forcer = ForceScheduler("force", ["a", "b"], properties=[
        IntParameter("jobs", default=2),
        BooleanParameter("clean"),
        ChoiceStringParameter("flavour", choices=["debug", "release"]),
        StringParameter("ticket", required=True, regex=r"[A-Z]+-\d+"),
    ])
    config = Config([BuilderSpec("a", [], []), BuilderSpec("b", [], [])], [forcer])
    master = await masters(config)
    entity = await master.data.get(("forceschedulers", "force"))
    assert entity["builder_names"] == ["a", "b"] and entity["enabled"] is True
    first, codebase, *props = entity["all_fields"]
    assert [f["name"] for f in first["fields"]] == ["username", "reason", "priority"]
    assert first["type"] == "nested" and first["columns"] == 1 and first["fullName"] is None
    assert first["fields"][0] == {
        "autopopulate": None, "default": "", "fullName": "username", "hide": False, "label": "Your name:",
        "maxsize": None, "multiple": False, "name": "username", "need_email": True, "regex": None,
        "required": False, "size": 30, "tablabel": "Your name:", "tooltip": "", "type": "username",
    }
    assert [f["name"] for f in codebase["fields"]] == ["branch", "project", "repository", "revision"]
    assert codebase["columns"] == 2 and codebase["fields"][0]["label"] == "Branch:"
    assert [(p["name"], p["type"]) for p in props] == [
        ("jobs", "int"), ("clean", "bool"), ("flavour", "list"), ("ticket", "text"),
    ]
    with pytest.raises(InvalidParams) as caught:
        await force(master, builderid="99", priority="notanint", jobs="x", clean="maybe", flavour="fast",
                    ticket="nope", username="bob", bogus=1)
    assert caught.value.errors == {
        "builderid": "'99' is not a builder of this scheduler",
        "priority": "invalid literal for int() with base 10: 'notanint'",
        "jobs": "invalid literal for int() with base 10: 'x'",
        "clean": "expected a boolean, got 'maybe'",
        "flavour": "'fast' is not one of: debug, release",
        "ticket": "does not match [A-Z]+-\\d+",
        "username": "bob: please fill in email address",
        "bogus": "unknown field",
    }
    with pytest.raises(InvalidParams) as caught:
        await force(master)
    assert caught.value.errors == {"ticket": "required"}
    async with serve(master.data) as api:
        code, body = await api.rpc("/api/v2/forceschedulers/force", {
            "jsonrpc": "2.0", "id": 7, "method": "force", "params": {"priority": "notanint", "ticket": "T-1"},
        })
        assert code == 400 and body["error"]["code"] == -32602
        assert body["error"]["data"] == {"priority": "invalid literal for int() with base 10: 'notanint'"}
    # valid: one request per builder (no builderid: all of them), with the typed properties
    builderid_b = master.engine.builders["b"].builderid
    bsid, brids = await force(master, ticket="T-1", jobs="8", clean="on", flavour="release", priority="3",
                              reason="try", branch="dev")
    assert set(brids) == {str(master.engine.builders[n].builderid) for n in ("a", "b")}
    buildset_entity = await master.data.get(("buildsets", str(bsid)), query={"property": ["*"]})
    assert buildset_entity["properties"]["jobs"] == [8, "Force Build Form"]
    assert buildset_entity["properties"]["clean"] == [True, "Force Build Form"]
    assert buildset_entity["reason"] == "A build was forced by 'anonymous': try"
    assert buildset_entity["sourcestamps"][0]["branch"] == "dev"
    assert (await master.data.get(("buildrequests", str(brids[str(builderid_b)]))))["priority"] == 3
    _, only_b = await force(master, builderid=builderid_b, ticket="T-2")
    assert list(only_b) == [str(builderid_b)]
    # disabled: refused
    schedulerid = master.engine.schedulers["force"].schedulerid
    await master.data.control(("schedulers", str(schedulerid)), "enable", {"enabled": False})
    with pytest.raises(Conflict):
        await force(master, ticket="T-3")


@pytest.mark.slow  # a local worker runs the steps
@pytest_twisted.ensureDeferred
async def test_single_branch_scheduler_tree_stable_timer(masters: Any) -> None:
    sched = SingleBranchScheduler("sbs", ["b"], branch="main", treeStableTimer=0.5)
    master = await masters(Config([BuilderSpec("b", ["w1"], [ShellCommand(["echo", Property("revision")])])],
                                  [sched]))
    await master.attach("w1")
    add = master.data.updates.add_change
    await add(author="a", files=["x"], comments="1", revision="r1", branch="main", repository="repo")
    await add(author="a", files=["y"], comments="2", revision="r2", branch="main", repository="repo")
    await add(author="a", files=["z"], comments="3", revision="o1", branch="other", repository="repo")

    async def one_buildset() -> Any:
        found = (await master.data.get("buildsets", query={"order": ["bsid"]})).items
        return found if found else None

    found = await wait_for(one_buildset, what="the tree-stable timer's buildset")
    await deferLater(reactor, 0.7, lambda: None)  # no other buildset follows
    found = (await master.data.get("buildsets")).items
    assert len(found) == 1
    assert found[0]["sourcestamps"][0]["revision"] == "r2" and "sbs" in found[0]["reason"]
    request = (await master.data.get("buildrequests")).items[0]
    await master.request_done(request["buildrequestid"])
    build = (await master.builds_of(request["buildrequestid"]))[0]
    assert build["results"] == SUCCESS
    assert "or2\n" in await master.log_text((await master.steps(build["buildid"]))[0]["stepid"])
    # disabled: changes are ignored
    await master.data.updates.set_scheduler_enabled(sched.schedulerid, False)
    await add(author="a", files=["x"], comments="4", revision="r3", branch="main", repository="repo")
    await deferLater(reactor, 0.8, lambda: None)
    assert (await master.data.get("buildsets")).total == 1


@pytest.mark.slow  # waits for the periodic timer in real time
@pytest_twisted.ensureDeferred
async def test_periodic_scheduler(masters: Any) -> None:
    master = await masters(Config([BuilderSpec("b", [], [])], [Periodic("tick", ["b"], periodicBuildTimer=0.3)]))

    async def two() -> bool:
        return (await master.data.get("buildsets")).total >= 2

    await wait_for(two, timeout=5, what="two periodic buildsets")
    entity = await master.data.get(("schedulers", str(master.engine.schedulers["tick"].schedulerid)))
    assert entity["master"]["masterid"] == master.masterid


@pytest.mark.slow  # a local worker runs the steps
@pytest_twisted.ensureDeferred
async def test_trigger_waits_for_triggered_build(masters: Any) -> None:
    parent_steps = [
        Trigger(["trig"], waitForFinish=True, set_properties={"from": Interpolate("%(prop:buildername)s")}),
        ShellCommand(["echo", "after"], name="after"),
    ]
    child_steps = [ShellCommand('sleep 0.3; echo "from $FROM"; exit 1', env={"FROM": Property("from")})]
    config = Config(
        [BuilderSpec("parent", ["w1"], parent_steps), BuilderSpec("child", ["w1"], child_steps)],
        [Triggerable("trig", ["child"])],
    )
    master = await masters(config)
    await master.attach("w1", max_builds=2)
    brid = await buildset(master, "parent")
    parent = await master.build_done((await master.first_build(brid))["buildid"])
    assert parent["results"] == FAILURE
    steps = await master.steps(parent["buildid"])
    assert [(s["name"], s["results"]) for s in steps] == [("trigger", FAILURE), ("after", SUCCESS)]
    assert steps[0]["urls"] and steps[0]["state_string"] == "triggered trig (failure)"
    child_sets = (await master.data.get("buildsets", query={"parent_buildid": [str(parent["buildid"])]})).items
    assert len(child_sets) == 1 and child_sets[0]["complete"] and child_sets[0]["results"] == FAILURE
    child_request = (await master.data.get("buildrequests", query={"buildsetid": [str(child_sets[0]["bsid"])]}))
    child = (await master.builds_of(child_request.items[0]["buildrequestid"]))[0]
    assert child["complete_at"] <= parent["complete_at"]
    assert "ofrom parent\n" in await master.log_text((await master.steps(child["buildid"]))[0]["stepid"])


@pytest.mark.slow  # a local worker runs the steps
@pytest_twisted.ensureDeferred
async def test_skipped_step_and_reconfig(masters: Any) -> None:
    steps = [ShellCommand(["true"], name="maybe", doStepIf=False), ShellCommand(["true"], name="ok")]
    master = await masters(Config([BuilderSpec("b", ["w1"], steps)]))
    await master.attach("w1")
    brid = await buildset(master, "b")
    build = (await master.builds_of((await master.request_done(brid))["buildrequestid"]))[0]
    assert build["results"] == SUCCESS
    assert [(s["name"], s["results"]) for s in await master.steps(build["buildid"])] == [
        ("maybe", SKIPPED), ("ok", SUCCESS),
    ]
    await master.engine.reconfig(Config([BuilderSpec("b", ["w1"], [ShellCommand("exit 1", name="new")])]))
    brid = await buildset(master, "b")
    assert (await master.request_done(brid))["results"] == FAILURE


@pytest.mark.slow  # a local worker runs the steps
@pytest_twisted.ensureDeferred
async def test_graceful_worker_stop_lets_the_build_end_and_is_cleared_when_the_worker_returns(masters: Any) -> None:
    master = await masters(Config([BuilderSpec("b", ["w1"], [ShellCommand(["sleep", "1"])])]))
    w1 = await master.attach("w1")
    brid = await buildset(master, "b")
    build = await master.first_build(brid)
    await wait_for(lambda: defer.succeed(bool(w1.running)), what="the command to run")
    assert await master.data.control(("workers", str(w1.workerid)), "stop", {}) is None
    assert (await master.data.get(("workers", str(w1.workerid))))["graceful"] is True
    assert (await master.build_done(build["buildid"]))["results"] == SUCCESS  # the running build ends normally
    await wait_for(lambda: defer.succeed(not w1.connected), what="the worker to leave")
    await master.attach("w1")  # back again: it takes builds
    await wait_for(lambda: _not_graceful(master, w1.workerid), what="graceful cleared")
    second = await master.first_build(await buildset(master, "b"))
    assert (await master.build_done(second["buildid"]))["results"] == SUCCESS


async def _not_graceful(master: Master, workerid: int) -> bool:
    return (await master.data.get(("workers", str(workerid))))["graceful"] is False
