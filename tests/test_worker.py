"""The worker: its protocol with a stand-in master, the commands it runs, and the ci-worker command.

Real processes and real sockets on 127.0.0.1; every wait is bounded.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor, task, threads
from waiting import wait_for, within
from wsmaster import FakeMaster, WorkerLink

from ci_common import protocol
from ci_common.workerconfig import WorkerConfig, WorkerConfigError, master_url
from worker.client import Backoff, Worker
from worker.runner import OutputBatcher

pytestmark = pytest.mark.slow  # the worker runs real commands, and the ci-worker program

CLI = [sys.executable, "-P", "-m", "worker.cli"]
PASSWORD = "s3cret"


def sleep(seconds: float):
    return task.deferLater(reactor, seconds, lambda: None)


def make_worker(basedir: Path, url: str, password: str = PASSWORD, **backoff: float) -> Worker:
    basedir.mkdir(parents=True, exist_ok=True)
    config = WorkerConfig(master=master_url(url), name="w1", password=password, max_builds=2)
    delays = {"initial": 0.05, "maximum": 0.3, "bad_credentials": 1.0, **backoff}
    return Worker(basedir, config, backoff=Backoff(**delays), kill_grace=0.5)


def gone(pid: int) -> bool:
    """Whether *pid* has exited (a zombie nobody reaped yet counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


@pytest_twisted.async_yield_fixture()
async def fake():
    master = FakeMaster({"w1": PASSWORD})
    master.start()
    yield master
    await master.stop()


@pytest_twisted.async_yield_fixture()
async def link(fake: FakeMaster, tmp_path: Path):
    worker = make_worker(tmp_path / "w", fake.url)
    worker.startService()
    connected = await fake.next_link()
    connected.worker = worker
    yield connected
    await worker.stopService()


# -- the connection ----------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_hello_and_welcome_carry_name_password_and_info(fake: FakeMaster, link: WorkerLink) -> None:
    hello = link.hello
    assert hello["type"] == "hello" and hello["protocol"] == protocol.PROTOCOL_VERSION
    assert (hello["name"], hello["password"], hello["max_builds"]) == ("w1", PASSWORD, 2)
    info = hello["info"]
    assert {"os", "python", "hostname", "cpu_count", "worker_version"} <= set(info)
    assert info["python"] == ".".join(map(str, sys.version_info[:3])) and info["cpu_count"] == os.cpu_count()
    worker = link.worker
    assert (await worker.first_outcome).startswith(f"connected to {fake.url} as w1 (workerid 7)")
    assert worker.connected and worker.workerid == 7


@pytest_twisted.ensureDeferred
async def test_bad_credentials_close_with_4001_and_back_off_long(fake: FakeMaster, tmp_path: Path) -> None:
    worker = make_worker(tmp_path / "w", fake.url, password="wrong", bad_credentials=1.0)
    worker.startService()
    try:
        outcome = await worker.first_outcome
        assert "refused worker 'w1': unknown worker name or wrong password" in outcome
        assert fake.refusals == [protocol.CLOSE_BAD_CREDENTIALS]
        assert worker.last_close_code == protocol.CLOSE_BAD_CREDENTIALS
        await sleep(0.6)  # a normal retry (0.05 s) would have come many times by now
        assert len(fake.attempts) == 1
        assert await wait_for(lambda: len(fake.attempts) == 2, timeout=3)
        assert fake.attempts[1] - fake.attempts[0] >= 0.95
        assert not worker.connected
    finally:
        await worker.stopService()


@pytest_twisted.ensureDeferred
async def test_a_down_master_is_retried_with_growing_delays(tmp_path: Path) -> None:
    fake = FakeMaster({"w1": PASSWORD})
    fake.start()
    await fake.stop()  # a port nobody listens on
    worker = make_worker(tmp_path / "w", fake.url, initial=0.1, maximum=0.4)
    worker.startService()
    try:
        outcome = await worker.first_outcome
        assert outcome.startswith(f"retrying: cannot connect to {fake.url}") and "next attempt in" in outcome
        await sleep(0.5)
        fake.start(fake.port)
        link = await fake.next_link(timeout=5)
        assert link.hello["name"] == "w1" and await wait_for(lambda: worker.connected)
    finally:
        await worker.stopService()
        await fake.stop()


@pytest_twisted.ensureDeferred
async def test_reconnects_when_the_master_goes_and_comes_back(fake: FakeMaster, link: WorkerLink) -> None:
    worker = link.worker
    running = link.run(shell="echo $$; sleep 300")
    assert await wait_for(lambda: running.text("o").endswith("\n"))
    pid = int(running.text("o"))
    port = fake.port
    await fake.stop()
    # the command is orphaned on the master's side: the worker stops it rather than let it run for nobody
    assert await wait_for(lambda: gone(pid), timeout=5)
    assert await wait_for(lambda: not worker.connected)
    fake.start(port)
    again = await fake.next_link(timeout=5)
    assert again.hello["name"] == "w1" and await wait_for(lambda: worker.connected)
    assert len(fake.hellos) == 2
    done = await again.run(argv=["echo", "back"]).wait()
    assert done["rc"] == 0


@pytest_twisted.ensureDeferred
async def test_a_second_worker_of_the_same_name_is_refused_as_duplicate(fake: FakeMaster, link: WorkerLink,
                                                                      tmp_path: Path) -> None:
    twin = make_worker(tmp_path / "twin", fake.url)
    twin.startService()
    try:
        outcome = await twin.first_outcome
        assert "has a worker named 'w1' connected already" in outcome
        assert fake.refusals == [protocol.CLOSE_DUPLICATE]
    finally:
        await twin.stopService()


# -- commands ------------------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_argv_and_shell_commands(link: WorkerLink) -> None:
    argv = link.run(argv=[sys.executable, "-c", "import sys; print('out'); print('err', file=sys.stderr)"])
    shell = link.run(shell="echo one && echo two >&2; exit 3")
    done = await argv.wait()
    assert done == {"type": "exit", "cmd": argv.cmd, "rc": 0, "signal": None, "interrupted": False,
                    "timed_out": False, "elapsed": done["elapsed"]}
    assert 0 < done["elapsed"] < 10
    assert argv.text("o") == "out\n" and argv.text("e") == "err\n"
    done = await shell.wait()
    assert done["rc"] == 3 and shell.text("o") == "one\n" and shell.text("e") == "two\n"
    assert not link.unexpected


@pytest_twisted.ensureDeferred
async def test_output_of_both_streams_arrives_in_order(link: WorkerLink) -> None:
    record = link.run(shell="echo a; sleep 0.25; echo b >&2; sleep 0.25; echo c; sleep 0.25; printf 'no newline' >&2")
    await record.wait()
    assert record.output == [("o", "a\n"), ("e", "b\n"), ("o", "c\n"), ("e", "no newline")]


@pytest_twisted.ensureDeferred
async def test_big_output_arrives_complete_in_line_bounded_chunks(link: WorkerLink) -> None:
    record = link.run(shell="seq 1 200000; seq 1 50000 >&2")
    done = await record.wait(timeout=30)
    assert done["rc"] == 0
    assert record.text("o") == "".join(f"{n}\n" for n in range(1, 200001))
    assert record.text("e") == "".join(f"{n}\n" for n in range(1, 50001))
    for _, text in record.output:
        assert text.endswith("\n") and len(text.encode()) <= protocol.OUTPUT_CHUNK
    assert len(record.output) < 40  # batched, not a message per read


@pytest_twisted.ensureDeferred
async def test_exit_codes_and_signals(link: WorkerLink) -> None:
    assert (await link.run(argv=["false"]).wait())["rc"] == 1
    assert (await link.run(shell="exit 42").wait())["rc"] == 42
    killed = await link.run(shell="kill -KILL $$").wait()
    assert (killed["rc"], killed["signal"], killed["interrupted"]) == (None, "SIGKILL", False)


@pytest_twisted.ensureDeferred
async def test_a_missing_executable_gives_rc_minus_one_and_says_why(link: WorkerLink, tmp_path: Path) -> None:
    missing = link.run(argv=["no-such-program-ci-worker", "x"])
    done = await missing.wait()
    assert done["rc"] == -1 and done["signal"] is None
    assert missing.output == [("e", "cannot run 'no-such-program-ci-worker': No such file or directory\n")]
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"\x00\x01\x02 not a program")
    garbage.chmod(0o755)
    not_executable = link.run(argv=[str(garbage)])
    assert (await not_executable.wait())["rc"] == -1
    assert not_executable.text("e") == f"cannot run {str(garbage)!r}: Exec format error\n"


@pytest_twisted.ensureDeferred
async def test_bad_run_messages_are_answered_with_rc_minus_one(link: WorkerLink) -> None:
    both = link.run(argv=["true"], shell="true")
    assert (await both.wait())["rc"] == -1 and "exactly one of argv and shell" in both.text("e")
    outside = link.run(argv=["true"], builder="..", workdir="../escape")
    assert (await outside.wait())["rc"] == -1 and "outside the worker directory" in outside.text("e")


@pytest_twisted.ensureDeferred
async def test_env_is_merged_and_workdir_made(link: WorkerLink, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CI_WORKER_KEPT", "kept")
    monkeypatch.setenv("CI_WORKER_REMOVED", "there")
    record = link.run(
        shell='echo "$CI_WORKER_NEW $CI_WORKER_KEPT ${CI_WORKER_REMOVED-unset}"; pwd',
        env={"CI_WORKER_NEW": "new", "CI_WORKER_REMOVED": None}, builder="linux", workdir="src/build",
    )
    assert (await record.wait())["rc"] == 0
    workdir = (tmp_path / "w" / "linux" / "src" / "build").resolve()
    assert record.text("o") == f"new kept unset\n{workdir}\n"
    default = link.run(argv=["pwd"])
    await default.wait()
    assert default.text("o") == f"{(tmp_path / 'w' / 'build').resolve()}\n"


@pytest_twisted.ensureDeferred
async def test_interrupt_kills_the_whole_process_group(link: WorkerLink) -> None:
    record = link.run(shell="sleep 300 & echo $!; wait")
    assert await wait_for(lambda: record.text("o").endswith("\n"))
    child = int(record.text("o"))
    assert not gone(child)
    link.interrupt(record.cmd, "cancelled by alice")
    done = await record.wait(timeout=5)
    assert (done["rc"], done["signal"], done["interrupted"], done["timed_out"]) == (None, "SIGTERM", True, False)
    assert await wait_for(lambda: gone(child))


@pytest_twisted.ensureDeferred
async def test_a_group_ignoring_sigterm_gets_sigkill_after_the_grace(link: WorkerLink) -> None:
    record = link.run(shell="trap '' TERM; sleep 300 & echo $!; wait")
    assert await wait_for(lambda: record.text("o").endswith("\n"))
    child = int(record.text("o"))
    started = time.monotonic()
    link.interrupt(record.cmd)
    done = await record.wait(timeout=5)
    assert done["signal"] == "SIGKILL" and done["interrupted"] is True
    assert time.monotonic() - started >= 0.45  # the worker's kill_grace in these tests
    assert await wait_for(lambda: gone(child))


@pytest_twisted.ensureDeferred
async def test_timeout_without_output(link: WorkerLink) -> None:
    record = link.run(shell="echo start; sleep 0.3; echo more; sleep 300", timeout=0.6)
    done = await record.wait(timeout=5)
    assert (done["rc"], done["signal"], done["interrupted"], done["timed_out"]) == (None, "SIGTERM", False, True)
    assert 0.85 < done["elapsed"] < 3  # output at 0.3 s put the deadline back
    assert record.text("o") == "start\nmore\n"
    assert "command timed out: no output for 0.6 s" in record.text("e")


@pytest_twisted.ensureDeferred
async def test_max_time_stops_a_chatty_command(link: WorkerLink) -> None:
    record = link.run(shell="while true; do echo tick; sleep 0.05; done", timeout=5, max_time=0.5)
    done = await record.wait(timeout=5)
    assert done["timed_out"] is True and done["signal"] == "SIGTERM" and 0.45 < done["elapsed"] < 3
    assert record.text("o").startswith("tick\n") and "(max_time)" in record.text("e")


@pytest_twisted.ensureDeferred
async def test_graceful_shutdown_lets_commands_end_then_leaves_for_good(fake: FakeMaster, link: WorkerLink) -> None:
    record = link.run(shell="sleep 0.4; echo finished")
    link.shutdown(graceful=True)
    refused = link.run(argv=["true"])
    assert (await refused.wait())["rc"] == -1 and "shutting down" in refused.text("e")
    done = await record.wait()
    assert done["rc"] == 0 and record.text("o") == "finished\n" and not done["interrupted"]
    was_clean, code, _ = await link.wait_closed()
    assert was_clean and code == protocol.CLOSE_NORMAL
    await within(link.worker.left, "the worker to leave", timeout=5)
    await sleep(0.4)
    assert len(fake.hellos) == 1  # no reconnection


@pytest_twisted.ensureDeferred
async def test_immediate_shutdown_interrupts_commands(link: WorkerLink) -> None:
    record = link.run(shell="sleep 300")
    await sleep(0.2)
    link.shutdown(graceful=False)
    done = await record.wait(timeout=5)
    assert done["interrupted"] is True and done["signal"] == "SIGTERM"
    assert (await link.wait_closed())[1] == protocol.CLOSE_NORMAL


def test_output_batcher_cuts_on_lines_and_characters() -> None:
    clock = task.Clock()
    sent: list[tuple[str, str]] = []
    batcher = OutputBatcher(lambda s, t: sent.append((s, t)), clock, chunk=10, interval=0.1)
    batcher.feed("o", b"ab\ncd")
    assert sent == []
    clock.advance(0.1)
    assert sent == [("o", "ab\n")]  # the partial line waits for its end
    batcher.feed("o", "ééééééé".encode()[:-1])  # 13 bytes, the last character cut in two
    assert sent == [("o", "ab\n"), ("o", "cdéééé")]  # a line longer than a chunk: cut on a character
    batcher.feed("e", b"\xff\n")
    batcher.feed("o", b"\xa9\n")
    clock.advance(0.1)
    assert sent[2:] == [("e", "\ufffd\n"), ("o", "ééé\n")]
    batcher.feed("o", b"1\n2\n3\n4\n5\n6\n")
    assert sent[4:] == [("o", "1\n2\n3\n4\n5\n")]  # a full chunk goes at once, ending on a line
    batcher.feed("o", b"tail")
    batcher.close()
    assert sent[5:] == [("o", "6\ntail")]
    assert not clock.getDelayedCalls()


# -- configuration and the command line --------------------------------------------------------------


def test_master_urls_are_normalised() -> None:
    assert master_url("http://ci:8010") == "ws://ci:8010/worker"
    assert master_url("https://ci.example.org/ci/") == "wss://ci.example.org/ci/worker"
    assert master_url("ws://127.0.0.1:8010/worker") == "ws://127.0.0.1:8010/worker"
    for bad in ("ftp://ci/", "ws://", "http://ci:port/"):
        with pytest.raises(WorkerConfigError):
            master_url(bad)


def cli(*args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=60, input=stdin)


def test_help_of_every_command(tmp_path: Path) -> None:
    done = cli("--help", cwd=tmp_path)
    assert done.returncode == 0 and "create-worker" in done.stdout
    for command in ("create-worker", "start", "stop", "restart"):
        done = cli(command, "--help", cwd=tmp_path)
        assert done.returncode == 0 and f"ci-worker {command}" in done.stdout and "DIR" in done.stdout


def test_create_worker_writes_a_private_config(tmp_path: Path) -> None:
    done = cli("create-worker", "w", "--master", "http://127.0.0.1:8010", "--name", "w1", "--password", "pw",
               "--max-builds", "3", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "created worker w1" in done.stdout and "ci-worker start w" in done.stdout
    path = tmp_path / "w" / "worker.cfg"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == {
        "master": "ws://127.0.0.1:8010/worker", "name": "w1", "password": "pw", "max_builds": 3,
    }
    again = cli("create-worker", "w", "--master", "ws://h/worker", "--name", "w1", "--password", "x", cwd=tmp_path)
    assert again.returncode == 1 and again.stderr.count("\n") == 1 and "already exists" in again.stderr
    stdin = cli("create-worker", "w2", "--master", "ws://h:1/worker", "--name", "w2", "--password-stdin",
                cwd=tmp_path, stdin="from stdin\n")
    assert stdin.returncode == 0
    assert json.loads((tmp_path / "w2" / "worker.cfg").read_text())["password"] == "from stdin"
    bad = cli("create-worker", "w3", "--master", "ftp://h", "--name", "w3", "--password", "x", cwd=tmp_path)
    assert bad.returncode == 1 and "scheme" in bad.stderr and not (tmp_path / "w3").exists()


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    cases = [
        (("start", str(tmp_path / "nope")), "no such directory"),
        (("start", str(tmp_path / "empty")), "is not a worker directory"),
        (("stop", str(tmp_path / "empty")), "is not a worker directory"),
    ]
    for args, words in cases:
        done = cli(*args, cwd=tmp_path)
        assert done.returncode == 1 and words in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert cli("create-worker", "w", "--master", "ws://127.0.0.1:1/worker", "--name", "w1", "--password", "x",
               cwd=tmp_path).returncode == 0
    done = cli("stop", "w", cwd=tmp_path)
    assert done.returncode == 1 and "is not running" in done.stderr
    (tmp_path / "w" / "twistd.pid").write_text("999999\n")
    done = cli("stop", "w", cwd=tmp_path)
    assert done.returncode == 1 and "stale pidfile of pid 999999" in done.stderr
    assert not (tmp_path / "w" / "twistd.pid").exists()


def _pid(basedir: Path) -> int:
    return int((basedir / "twistd.pid").read_text())


@pytest_twisted.ensureDeferred
async def test_cli_start_connects_stop_closes_and_shutdown_ends_the_daemon(fake: FakeMaster, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{fake.port}"
    created = cli("create-worker", "w", "--master", url, "--name", "w1", "--password", PASSWORD, cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    basedir = tmp_path / "w"
    started = await threads.deferToThread(cli, "start", "w", cwd=tmp_path)
    try:
        assert started.returncode == 0, started.stderr
        assert f"ci-worker started: connected to {fake.url} as w1 (workerid 7)" in started.stdout
        link = await fake.next_link()
        assert link.hello["info"]["worker_version"]
        record = link.run(shell="echo $PWD")
        assert (await record.wait())["rc"] == 0 and record.text("o") == f"{basedir / 'build'}\n"
        twice = await threads.deferToThread(cli, "start", "w", cwd=tmp_path)
        assert twice.returncode == 1 and "already running" in twice.stderr
        stopped = await threads.deferToThread(cli, "stop", "w", cwd=tmp_path)
        assert stopped.returncode == 0 and "ci-worker stopped" in stopped.stdout, stopped.stderr
        assert (await link.wait_closed())[1] == protocol.CLOSE_NORMAL
        assert not (basedir / "twistd.pid").exists()

        again = await threads.deferToThread(cli, "restart", "w", cwd=tmp_path)
        assert again.returncode == 0 and "connected" in again.stdout, again.stderr
        link = await fake.next_link()
        pid = _pid(basedir)
        link.shutdown(graceful=True)
        assert (await link.wait_closed())[1] == protocol.CLOSE_NORMAL
        assert await wait_for(lambda: gone(pid) and not (basedir / "twistd.pid").exists(), timeout=10)
        assert "left the master on its request; not reconnecting" in (basedir / "twistd.log").read_text()
    finally:
        if (basedir / "twistd.pid").exists():
            os.kill(_pid(basedir), signal.SIGKILL)


@pytest_twisted.ensureDeferred
async def test_cli_start_with_the_master_down_says_it_is_retrying(tmp_path: Path) -> None:
    fake = FakeMaster({})
    fake.start()
    await fake.stop()
    created = cli("create-worker", "w", "--master", fake.url, "--name", "w1", "--password", "x", cwd=tmp_path)
    assert created.returncode == 0
    (tmp_path / "w" / "twistd.pid").write_text("999999\n")
    started = await threads.deferToThread(cli, "start", "w", cwd=tmp_path)
    try:
        assert started.returncode == 0, started.stderr
        assert "removed a stale pidfile (pid 999999 is not running)" in started.stdout
        assert f"ci-worker started: retrying: cannot connect to {fake.url}" in started.stdout
        assert gone(_pid(tmp_path / "w")) is False
    finally:
        stopped = await threads.deferToThread(cli, "stop", "w", cwd=tmp_path)
        assert stopped.returncode == 0, stopped.stderr


@pytest_twisted.ensureDeferred
async def test_cli_start_nodaemon_runs_in_the_foreground_until_sigterm(fake: FakeMaster, tmp_path: Path) -> None:
    created = cli("create-worker", "w", "--master", fake.url, "--name", "w1", "--password", PASSWORD, cwd=tmp_path)
    assert created.returncode == 0
    process = subprocess.Popen([*CLI, "start", "--nodaemon", "w"], cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        link = await fake.next_link(timeout=20)
        record = link.run(argv=["echo", "foreground"])
        assert (await record.wait())["rc"] == 0 and record.text("o") == "foreground\n"
        process.send_signal(signal.SIGTERM)
        assert (await link.wait_closed())[1] == protocol.CLOSE_NORMAL
        assert await threads.deferToThread(process.wait, 20) == 0
        output = process.stdout.read()
        assert "running in the foreground" in output and "connected to" in output
        assert not (tmp_path / "w" / "twistd.pid").exists()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
