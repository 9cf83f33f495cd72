"""Build engine benchmark: builds/s from force to completion, and log lines/s stored and read back.

Usage::

    python bench/bench_engine.py [--backend sqlite|postgresql|both] [--builds K] [--log-lines N] ...
    python bench/bench_engine.py --profile      # the masters run under cProfile; top functions printed

Everything runs as real processes started from the command lines, as a site would run
them: a master made by ``ci-master create-master`` with a generated ``master.cfg`` and
started by ``ci-master start`` (a twistd daemon), and ``ci-worker`` processes made by
``ci-worker create-worker`` and started by ``ci-worker start``.  The benchmark process
forces builds through JSON-RPC and watches them through REST, as a user's script would.

Scenarios, each on a fresh master and database:

* builds, 1 worker and 2 workers: K builds of trivial builders (one ``ShellCommand``
  running ``true``) are forced as fast as a few client threads can, spread over the
  builders; the time from the first force to the moment REST counts K complete builds
  gives builds/s.  Then every build request must have run exactly once and succeeded.
* log (on the 2-worker master): one build whose step runs ``seq 1 N``; from force to the
  build's completion gives lines stored per second; the stdio log must hold N lines plus
  its header lines.  It is then read back whole (``logs/N/raw``, streamed) and by range
  (``logs/N/contents?offset=N/2&limit=1000``).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for _path in (str(ROOT / "tests"), str(ROOT)):  # master/, and tests/pgserver.py
    if _path not in sys.path:
        sys.path.insert(0, _path)

MASTER_CLI = [sys.executable, "-P", "-m", "master.cli"]
WORKER_CLI = [sys.executable, "-P", "-m", "worker.cli"]
PASSWORD = "bench-secret"
POLL = 0.05  # seconds between two REST polls while waiting for builds
REQUESTS_SETTLE = 5.0  # seconds a request may take to complete after its build (two writes)
CLI_TIMEOUT = 90.0  # seconds any one ci-master / ci-worker command may take
HEADER_LINES = 4  # the command, its directory, "program finished with exit code 0", "elapsedTime=..."
TARGET_BUILDS = 50.0  # builds/s force-to-finished with 2 workers
TARGET_LINES = 100_000.0  # log lines/s stored


def say(text: str) -> None:
    """Print a progress line at once."""
    print(text, flush=True)


# -- HTTP ------------------------------------------------------------------------------------------


class Client:
    """A keep-alive HTTP/1.1 connection per thread to the master's REST and JSON-RPC API."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._local = threading.local()

    def _conn(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        return conn

    def request(self, method: str, path: str, body: bytes | None = None) -> bytes:
        """One request (retried once on a dropped keep-alive connection); the body, or RuntimeError."""
        headers = {"Content-Type": "application/json"} if body is not None else {}
        for attempt in (1, 2):
            conn = self._conn()
            try:
                conn.request(method, path, body, headers)
                response = conn.getresponse()
                data = response.read()
                break
            except (http.client.HTTPException, ConnectionError):
                conn.close()
                self._local.conn = None
                if attempt == 2:
                    raise
        if response.status >= 400:
            raise RuntimeError(f"{method} {path}: HTTP {response.status} {data[:300]!r}")
        return data

    def get(self, path: str) -> dict[str, Any]:
        """GET a JSON document under /api/v2/."""
        return json.loads(self.request("GET", "/api/v2/" + path))

    def total(self, path: str) -> int:
        """``meta.total`` of a collection."""
        return self.get(path)["meta"]["total"]

    def rpc(self, path: str, method: str, **params: Any) -> Any:
        """Call a JSON-RPC control; its result, or RuntimeError with the error."""
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
        reply = json.loads(self.request("POST", "/api/v2/" + path, body))
        if "error" in reply:
            raise RuntimeError(f"{path} {method}: {reply['error']}")
        return reply["result"]

    def stream(self, path: str, piece: int = 1 << 16) -> Iterator[bytes]:
        """GET a raw document under /api/v2/ on a connection of its own, piece by piece."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request("GET", "/api/v2/" + path)
            response = conn.getresponse()
            if response.status != 200:
                raise RuntimeError(f"GET {path}: HTTP {response.status} {response.read()[:300]!r}")
            while True:
                data = response.read1(piece)
                if not data:
                    return
                yield data
        finally:
            conn.close()

    def paged(self, path: str, name: str, page: int = 1000) -> list[dict[str, Any]]:
        """Every item of a collection, *page* at a time."""
        items: list[dict[str, Any]] = []
        glue = "&" if "?" in path else "?"
        while True:
            got = self.get(f"{path}{glue}limit={page}&offset={len(items)}")[name]
            items += got
            if len(got) < page:
                return items


# -- processes -------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env() -> dict[str, str]:
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": str(ROOT) + (os.pathsep + path if path else "")}


def cli(command: list[str], *args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    """Run a ci-master or ci-worker command to completion (bounded in time)."""
    try:
        done = subprocess.run([*command, *args], cwd=cwd, capture_output=True, text=True, timeout=CLI_TIMEOUT,
                              env=_env(), stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{' '.join(args[:1])} did not end within {CLI_TIMEOUT:.0f}s") from None
    if check and done.returncode != 0:
        name = "ci-master" if command is MASTER_CLI else "ci-worker"
        raise RuntimeError(f"{name} {' '.join(args)} failed: {(done.stderr or done.stdout).strip()}")
    return done


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return True


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, every thread, and reaped children) of process *pid* so far; 0 if unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    # fields 14-17 of stat(5) (utime, stime, cutime, cstime); the split starts at field 3
    return sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def kill_leftover(pid: int) -> bool:
    """SIGKILL *pid* and its process group (unless it is ours) if it still runs; return whether it did."""
    if not _alive(pid):
        return False
    try:
        group = os.getpgid(pid)
        if group != os.getpgid(0):
            os.killpg(group, signal.SIGKILL)
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return True


@dataclass
class Site:
    """A running master and its workers."""

    dir: Path
    port: int
    client: Client
    workers: list[str]
    builders: dict[str, int] = field(default_factory=dict)  # name -> builderid
    pids: dict[str, int] = field(default_factory=dict)  # what -> pid, for the cleanup
    profile: Path | None = None  # the master's cProfile output, when profiled
    process: subprocess.Popen | None = None  # the profiled master (run in the foreground)

    @property
    def logfile(self) -> Path:
        """The master's log."""
        return self.dir / ("master.out" if self.profile is not None else "twistd.log")


def master_config(db_url: str, port: int, workers: list[str], builders: int, log_lines: int) -> str:
    """The master.cfg of a benchmark site: trivial builders on every worker, the log builder on the first."""
    trivial = [f"trivial-{n:02d}" for n in range(1, builders + 1)]
    return f'''\
# the master.cfg of bench/bench_engine.py
from master.config import BuilderConfig, MasterConfig, WorkerConfig
from master.engine.schedulers import ForceScheduler
from master.engine.steps import ShellCommand

WORKERS = {workers!r}
TRIVIAL = {trivial!r}

config = MasterConfig(
    title="ci-master engine benchmark",
    db_url={db_url!r},
    www={{"interface": "127.0.0.1", "port": {port}}},
    workers=[WorkerConfig(name, {PASSWORD!r}) for name in WORKERS],
    builders=[
        BuilderConfig(name=name, workernames=WORKERS, steps=[ShellCommand(name="true", command=["true"])])
        for name in TRIVIAL
    ] + [
        BuilderConfig(name="log", workernames=WORKERS[:1],
                      steps=[ShellCommand(name="seq", command=["seq", "1", "{log_lines}"])]),
    ],
    schedulers=[ForceScheduler(name="force", builderNames=[*TRIVIAL, "log"])],
)
'''


def _wait_for_line(path: Path, marker: str, timeout: float, alive: Callable[[], bool]) -> str | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive():
        try:
            for line in path.read_text(errors="replace").splitlines():
                if marker in line:
                    return line
        except FileNotFoundError:
            pass
        time.sleep(0.1)
    return None


def _start_master(site: Site) -> None:
    if site.profile is None:
        say(f"    {cli(MASTER_CLI, 'start', str(site.dir), cwd=site.dir).stdout.strip()}")
        site.pids["master"] = int((site.dir / "twistd.pid").read_text())
        return
    # in the foreground under cProfile; SIGTERM stops the reactor and cProfile writes its file
    with open(site.logfile, "wb") as out:
        site.process = subprocess.Popen(
            [sys.executable, "-m", "cProfile", "-o", str(site.profile), "-m", "master.cli", "start", "--nodaemon",
             str(site.dir)],
            cwd=site.dir, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=_env(),
            start_new_session=True,
        )
    site.pids["master"] = site.process.pid
    line = _wait_for_line(site.logfile, "ci-master is running at", 60, lambda: site.process.poll() is None)
    if line is None:
        tail = site.logfile.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"the profiled master did not start; the end of its output:\n{tail}")
    say(f"    master under cProfile: {line.strip()}")


def _stop_master(site: Site) -> None:
    if site.process is None:
        if "master" in site.pids:
            cli(MASTER_CLI, "stop", str(site.dir), cwd=site.dir, check=False)
        return
    if site.process.poll() is None:
        site.process.send_signal(signal.SIGTERM)
        try:
            site.process.wait(60)
        except subprocess.TimeoutExpired:
            pass


@contextmanager
def running_site(
    workdir: Path, name: str, db_url: str | None, workers: int, args: argparse.Namespace
) -> Iterator[Site]:
    """A master (``ci-master create-master`` and ``start``) with *workers* ``ci-worker`` processes connected.

    On leaving, the workers and the master are stopped through their CLIs, and any process
    left over (with its process group) is killed.
    """
    root = workdir / name
    root.mkdir()
    master_dir = root / "master"
    port = _free_port()
    names = [f"w{n}" for n in range(1, workers + 1)]
    site = Site(master_dir, port, Client(port), names,
                profile=(root / "master.prof") if args.profile else None)
    try:
        cli(MASTER_CLI, "create-master", str(master_dir), cwd=root)
        url = db_url or "sqlite:///state.sqlite"
        (master_dir / "master.cfg").write_text(master_config(url, port, names, args.builders, args.log_lines))
        if db_url is not None:
            # create-master made the sample's SQLite file; the configured database gets its schema here
            cli(MASTER_CLI, "upgrade-master", str(master_dir), cwd=root)
        _start_master(site)
        for worker in names:
            worker_dir = root / worker
            cli(WORKER_CLI, "create-worker", str(worker_dir), "--master", f"http://127.0.0.1:{port}",
                "--name", worker, "--password", PASSWORD, "--max-builds", str(args.max_builds), cwd=root)
            up = cli(WORKER_CLI, "start", str(worker_dir), cwd=root)
            site.pids[worker] = int((worker_dir / "twistd.pid").read_text())
            if "connected" not in up.stdout:
                raise RuntimeError(f"worker {worker} did not connect: {up.stdout.strip()}")
        deadline = time.monotonic() + 30
        while True:
            connected = [w for w in site.client.get("workers?field=name&field=connected_to")["workers"]
                         if w["connected_to"]]
            if len(connected) == workers:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(connected)} of {workers} workers connected after 30s")
            time.sleep(0.1)
        site.builders = {b["name"]: b["builderid"]
                         for b in site.client.get("builders?field=name&field=builderid&limit=1000")["builders"]}
        say(f"    master on port {port} with {workers} worker(s) of {args.max_builds} build slots, "
            f"{args.builders} trivial builders")
        yield site
    finally:
        for worker in names:
            if worker in site.pids:
                cli(WORKER_CLI, "stop", str(root / worker), cwd=root, check=False)
        _stop_master(site)
        for what, pid in site.pids.items():
            if kill_leftover(pid):
                say(f"    killed a leftover {what} process (pid {pid})")


def master_log_problems(site: Site, limit: int = 5) -> list[str]:
    """Lines of the master's log that tell of an error, at most *limit* of them."""
    try:
        lines = site.logfile.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return []
    bad = [line for line in lines if "Traceback" in line or " failed" in line or "Error" in line]
    return bad[:limit]


# -- builds/s --------------------------------------------------------------------------------------


@dataclass
class BuildsResult:
    """What one builds/s scenario measured."""

    label: str
    workers: int
    builds: int
    forced_in: float = 0.0  # seconds from the first force to the last force's answer
    first_done: float = 0.0  # seconds from the first force to the first complete build seen
    done_in: float = 0.0  # seconds from the first force to K complete builds seen (or the timeout)
    complete: int = 0  # complete builds seen at the end
    problems: list[str] = field(default_factory=list)
    per_worker: dict[str, int] = field(default_factory=dict)
    load: tuple[float, float] = (0.0, 0.0)
    master_cpu: float = 0.0  # CPU seconds the master used from the first force to the end
    workers_cpu: float = 0.0  # the same for the workers, their commands included
    client_cpu: float = 0.0  # the same for this benchmark process (forcing and polling)

    @property
    def rate(self) -> float:
        """Builds per second, force to finished."""
        return self.complete / self.done_in if self.done_in else 0.0


def _site_cpu(site: Site) -> tuple[float, float]:
    """CPU seconds used so far by the master, and by the workers with their commands."""
    workers = sum(cpu_seconds(pid) for what, pid in site.pids.items() if what != "master")
    return cpu_seconds(site.pids["master"]), workers


def force_builds(site: Site, count: int, threads: int) -> tuple[list[int], float, float]:
    """Force *count* builds over the trivial builders from *threads* threads; return (brids, t0, t_end)."""
    builders = sorted(v for k, v in site.builders.items() if k.startswith("trivial-"))
    order = [builders[n % len(builders)] for n in range(count)]

    def one(builderid: int) -> int:
        _, requests = site.client.rpc("forceschedulers/force", "force", builderid=builderid)
        return requests[str(builderid)]

    started = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        brids = list(pool.map(one, order))
    return brids, started, time.monotonic()


def bench_builds(site: Site, label: str, args: argparse.Namespace) -> BuildsResult:
    """Force K trivial builds, wait for them all to complete, and check each request ran once."""
    client, count = site.client, args.builds
    result = BuildsResult(label, len(site.workers), count)
    load_before = os.getloadavg()[0]
    cpu_before = _site_cpu(site)
    client_before = time.process_time()
    outcome: dict[str, Any] = {}

    def forcing() -> None:
        try:
            outcome["brids"], outcome["t0"], outcome["t1"] = force_builds(site, count, args.force_threads)
        except Exception as e:  # reported below
            outcome["error"] = e

    forcer = threading.Thread(target=forcing, daemon=True)
    t0 = time.monotonic()
    forcer.start()
    deadline = t0 + args.timeout
    next_report = t0 + 2.0
    complete = 0
    while True:
        now = time.monotonic()
        complete = client.total("builds?complete=true&field=buildid&limit=1")
        if complete and not result.first_done:
            result.first_done = now - t0
        if complete >= count or now > deadline or "error" in outcome:
            break
        if now >= next_report:
            say(f"    {label}: {complete}/{count} complete after {now - t0:.1f}s")
            next_report += 2.0
        time.sleep(POLL)
    result.done_in = now - t0
    result.complete = complete
    cpu_after = _site_cpu(site)
    result.master_cpu = cpu_after[0] - cpu_before[0]
    result.workers_cpu = cpu_after[1] - cpu_before[1]
    result.client_cpu = time.process_time() - client_before
    forcer.join(args.timeout)
    if "error" in outcome:
        result.problems.append(f"forcing failed: {outcome['error']}")
        return result
    result.forced_in = outcome["t1"] - t0
    result.load = (load_before, os.getloadavg()[0])
    if complete < count:
        result.problems.append(f"only {complete} of {count} builds complete after {args.timeout:.0f}s")
    say(f"    {label}: forced {count} in {result.forced_in:.2f}s; {complete}/{count} complete after "
        f"{result.done_in:.2f}s -> {result.rate:.1f} builds/s")
    # each request ran exactly once, and every one succeeded
    builds = client.paged("builds?field=buildrequestid&field=results&field=workerid&field=complete", "builds")
    brids = [b["buildrequestid"] for b in builds]
    duplicates = len(brids) - len(set(brids))
    if duplicates:
        result.problems.append(f"{duplicates} build request(s) ran more than once")
    missing = set(outcome["brids"]) - set(brids)
    if missing:
        result.problems.append(f"{len(missing)} forced request(s) have no build")
    failed = [b for b in builds if b["complete"] and b["results"] != 0]
    if failed:
        result.problems.append(f"{len(failed)} build(s) did not succeed (results {failed[0]['results']}, ...)")
    # a build's end and its request's completion are two writes: a request may complete a moment after
    # its build; one still open seconds later is stuck
    pending, settle_until = 0, time.monotonic() + REQUESTS_SETTLE
    while complete >= count:
        pending = client.total("buildrequests?complete=false&field=buildrequestid&limit=1")
        if not pending or time.monotonic() > settle_until:
            break
        time.sleep(0.05)
    if pending and complete >= count:
        result.problems.append(f"{pending} build request(s) still incomplete {REQUESTS_SETTLE:g}s after their builds")
    names = {w["workerid"]: w["name"] for w in client.get("workers?field=workerid&field=name")["workers"]}
    for build in builds:
        name = names.get(build["workerid"], "?")
        result.per_worker[name] = result.per_worker.get(name, 0) + 1
    result.problems += [f"master log: {line}" for line in master_log_problems(site)]
    return result


# -- log lines/s -----------------------------------------------------------------------------------


@dataclass
class LogResult:
    """What the log scenario measured."""

    lines: int
    stored_in: float = 0.0  # seconds from force to the build complete
    command_s: float | None = None  # the command's own run time, from the log's elapsedTime line
    first_line_at: float | None = None  # seconds from force to the first stored line seen
    num_lines: int = 0
    raw_bytes: int = 0
    raw_lines: int = 0
    raw_s: float = 0.0
    range_ms: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    load: tuple[float, float] = (0.0, 0.0)

    @property
    def stored_rate(self) -> float:
        """Lines stored per second, force to build complete."""
        return self.num_lines / self.stored_in if self.stored_in else 0.0


def _stdio_log(client: Client, buildid: int) -> dict[str, Any] | None:
    steps = client.get(f"builds/{buildid}/steps?field=stepid")["steps"]
    if not steps:
        return None
    logs = client.get(f"steps/{steps[0]['stepid']}/logs?field=logid&field=num_lines&field=slug&field=complete")
    return next((log for log in logs["logs"] if log["slug"] == "stdio"), None)


def bench_log(site: Site, args: argparse.Namespace) -> LogResult:
    """Force the ``seq`` build, time it to completion, then read its log back whole and by range."""
    client, lines = site.client, args.log_lines
    result = LogResult(lines)
    load_before = os.getloadavg()[0]
    builderid = site.builders["log"]
    t0 = time.monotonic()
    _, requests = client.rpc("forceschedulers/force", "force", builderid=builderid)
    brid = requests[str(builderid)]
    deadline = t0 + args.timeout
    next_report = t0 + 2.0
    build = None
    stdio = None
    while True:
        now = time.monotonic()
        builds = client.get(f"buildrequests/{brid}/builds?field=buildid&field=complete&field=results")["builds"]
        build = builds[0] if builds else None
        if build is not None and build["complete"]:
            break
        if now > deadline:
            result.problems.append(f"the log build did not complete within {args.timeout:.0f}s")
            break
        if build is not None and (result.first_line_at is None or now >= next_report):
            stdio = _stdio_log(client, build["buildid"])
            if stdio is not None and stdio["num_lines"] > HEADER_LINES and result.first_line_at is None:
                result.first_line_at = now - t0
            if now >= next_report:
                stored = stdio["num_lines"] if stdio else 0
                say(f"    log: {stored:,} lines stored after {now - t0:.1f}s")
                next_report += 2.0
        time.sleep(POLL)
    result.stored_in = now - t0
    result.load = (load_before, os.getloadavg()[0])
    if build is None:
        result.problems.append("the log build never started")
        return result
    stdio = _stdio_log(client, build["buildid"])
    if stdio is None:
        result.problems.append("the log build has no stdio log")
        return result
    logid, result.num_lines = stdio["logid"], stdio["num_lines"]
    say(f"    log: {result.num_lines:,} lines stored, build complete {result.stored_in:.2f}s after the force "
        f"-> {result.stored_rate:,.0f} lines/s")
    if build["complete"] and build["results"] != 0:
        result.problems.append(f"the log build ended with results {build['results']}")
    if result.num_lines != lines + HEADER_LINES:
        result.problems.append(f"num_lines is {result.num_lines:,}, not {lines:,} + {HEADER_LINES} header lines")
    tail = client.get(f"logs/{logid}/contents?offset={max(result.num_lines - 2, 0)}")["logchunks"][0]["content"]
    for line in tail.splitlines():
        if line.startswith("helapsedTime="):
            result.command_s = float(line.split("=", 1)[1])
    # the whole log, streamed: Builder/Build number/Worker name header, then the lines without stream chars
    started = time.monotonic()
    total = newlines = 0
    kept: list[bytes] = []
    for piece in client.stream(f"logs/{logid}/raw"):
        total += len(piece)
        newlines += piece.count(b"\n")
        if args.verify:
            kept.append(piece)
    result.raw_s = time.monotonic() - started
    result.raw_bytes, result.raw_lines = total, newlines
    expected_raw = result.num_lines + 3  # Builder:, Build number:, Worker name:
    if newlines != expected_raw:
        result.problems.append(f"raw log has {newlines:,} lines, not {expected_raw:,}")
    if args.verify:  # after the timing: the output lines must be 1..N, in order
        body = b"".join(kept).split(b"\n")
        numbers = [line for line in body if line.isdigit()]
        if numbers != [str(n).encode() for n in range(1, lines + 1)]:
            result.problems.append(f"raw log: {len(numbers):,} number lines, not 1..{lines:,} in order")
        del body, numbers, kept
    say(f"    log: raw read {total / 1e6:.1f} MB, {newlines:,} lines in {result.raw_s:.2f}s")
    # a range in the middle: offset counts stored lines, the header's first two come first
    middle = result.num_lines // 2
    for attempt in range(args.range_reads):
        started = time.monotonic()
        chunk = client.get(f"logs/{logid}/contents?offset={middle}&limit=1000")["logchunks"][0]
        result.range_ms.append((time.monotonic() - started) * 1000)
        if attempt == 0:
            got = chunk["content"].splitlines()
            first_number = middle - 2 + 1  # line `middle` is the (middle - 2)th output line, counting from 0
            want = [f"o{n}" for n in range(first_number, first_number + 1000)]
            if got != want:
                result.problems.append(f"contents?offset={middle}&limit=1000: {len(got)} lines starting "
                                       f"{got[:1]}, not 1000 starting {want[:1]}")
    result.problems += [f"master log: {line}" for line in master_log_problems(site)]
    return result


# -- the report ------------------------------------------------------------------------------------


@dataclass
class Check:
    """One target: a name, the figure, the bound, and whether it passes."""

    name: str
    value: str
    bound: str
    passed: bool


def report(backend: str, runs: list[BuildsResult], log: LogResult | None, args: argparse.Namespace) -> list[Check]:
    """Print the tables and the checks of one backend; return the checks."""
    print()
    print(f"== {backend}: {args.builds} builds over {args.builders} trivial builders (one step: true), "
          f"workers of {args.max_builds} slots; {os.cpu_count()} CPUs ==")
    header = (f"{'scenario':<10} {'builds':>6} {'forced in':>9} {'forces/s':>8} {'1st done':>8} {'all done':>8} "
              f"{'builds/s':>8} {'master CPU':>15} {'workers CPU':>15}  {'per worker':<15} {'load':>9}")
    print(header)
    print("-" * len(header))
    for run in runs:
        forces = run.builds / run.forced_in if run.forced_in else 0.0
        spread = ", ".join(f"{k} {v}" for k, v in sorted(run.per_worker.items()))
        per = max(run.complete, 1) * 1e-3
        master = f"{run.master_cpu / per:.1f}ms {run.master_cpu / run.done_in:>4.0%}" if run.done_in else "?"
        workers = f"{run.workers_cpu / per:.1f}ms {run.workers_cpu / run.done_in:>4.0%}" if run.done_in else "?"
        print(f"{run.label:<10} {run.complete:>6} {run.forced_in:>8.2f}s {forces:>8.0f} {run.first_done:>7.2f}s "
              f"{run.done_in:>7.2f}s {run.rate:>8.1f} {master:>15} {workers:>15}  {spread:<15} "
              f"{run.load[0]:>4.1f}->{run.load[1]:<4.1f}")
    print("  (CPU: CPU time per build, and as a share of one CPU over the scenario's wall time; "
          "workers' includes their commands)")
    checks: list[Check] = []
    two = [r for r in runs if r.workers == 2]
    if two:
        rate = two[0].rate
        checks.append(Check(f"builds/s force-to-finished, 2 workers >= {TARGET_BUILDS:.0f}", f"{rate:.1f}",
                            f">= {TARGET_BUILDS:.0f}", rate >= TARGET_BUILDS and two[0].complete == two[0].builds))
    for run in runs:
        checks.append(Check(f"{run.label}: every request ran exactly once and succeeded",
                            "ok" if not run.problems else "; ".join(run.problems), "no problem", not run.problems))
    if log is not None:
        print()
        command = f"{log.command_s:.2f}s" if log.command_s is not None else "?"
        first = f"{log.first_line_at:.2f}s" if log.first_line_at is not None else "?"
        mb = log.raw_bytes / 1e6
        range_med = statistics.median(log.range_ms) if log.range_ms else 0.0
        range_max = max(log.range_ms) if log.range_ms else 0.0
        header = f"{'log of `seq 1 ' + format(log.lines, ',') + '`':<44} {'figure':>26}"
        print(header)
        print("-" * len(header))
        rows = [
            ("stored: force -> build complete", f"{log.stored_in:.2f}s"),
            ("  the command itself (elapsedTime)", command),
            ("  force -> first lines stored (seen)", first),
            ("  lines stored (num_lines)", f"{log.num_lines:,}"),
            ("  lines stored/s", f"{log.stored_rate:,.0f}"),
            ("read whole: logs/N/raw streamed", f"{log.raw_s:.2f}s"),
            ("  bytes/s", f"{mb / log.raw_s if log.raw_s else 0:,.1f} MB/s"),
            ("  lines/s", f"{log.raw_lines / log.raw_s if log.raw_s else 0:,.0f}"),
            (f"read range: contents?offset={log.num_lines // 2}&limit=1000",
             f"median {range_med:.1f} ms, max {range_max:.1f}"),
            ("load average", f"{log.load[0]:.1f} -> {log.load[1]:.1f}"),
        ]
        for name, value in rows:
            print(f"{name:<44} {value:>26}")
        checks.append(Check(f"log lines/s stored >= {TARGET_LINES:,.0f}", f"{log.stored_rate:,.0f}",
                            f">= {TARGET_LINES:,.0f}", log.stored_rate >= TARGET_LINES and not log.problems))
        checks.append(Check("log stored whole and read back whole and by range",
                            "ok" if not log.problems else "; ".join(log.problems), "no problem", not log.problems))
    for check in checks:
        print(f"  {'PASS' if check.passed else 'FAIL'}  {check.name}: {check.value} ({check.bound})")
    if two and not checks[0].passed:
        print("  why (CPU accounting of the processes, from /proc):")
        for run in runs:
            for line in diagnose(run):
                print(f"    {line}")
    return checks


def diagnose(run: BuildsResult) -> list[str]:
    """Where the CPU of a builds/s scenario went, and the ceilings that follows from it."""
    if not run.complete or not run.done_in:
        return []
    master = run.master_cpu / run.complete * 1000
    workers = run.workers_cpu / run.complete * 1000
    client = run.client_cpu / run.complete * 1000
    cpus = os.cpu_count() or 1
    lines = [
        f"{run.label}: per build the master used {master:.1f} ms of CPU ({run.master_cpu / run.done_in:.0%} of one "
        f"CPU over the run), the workers {workers:.1f} ms, this benchmark {client:.1f} ms",
        f"  one master process (one reactor thread and the GIL) cannot go beyond ~{1000 / master:.0f} builds/s "
        f"at {master:.1f} ms; all processes together on {cpus} CPUs: ~{cpus * 1000 / (master + workers + client):.0f}"
        " builds/s, less what other processes on the machine take",
    ]
    return lines


def print_profile(path: Path, top: int) -> None:
    """The *top* functions of a master's cProfile by own time and by cumulative time."""
    import pstats

    if not path.exists():
        say(f"  (no profile at {path})")
        return
    for sort in ("tottime", "cumulative"):
        say(f"\n  -- master profile {path.parent.name}, by {sort} --")
        pstats.Stats(str(path)).strip_dirs().sort_stats(sort).print_stats(top)


# -- main ------------------------------------------------------------------------------------------


@contextmanager
def database(backend: str) -> Iterator[Callable[[str], str | None]]:
    """For the block, a maker of fresh database URLs on *backend* (None: the master's own SQLite file)."""
    if backend == "sqlite":
        yield lambda name: None
        return
    from pgserver import PostgresServer

    server = PostgresServer()
    server.start()
    try:
        yield server.create_database
    finally:
        server.stop()


def bench_backend(backend: str, args: argparse.Namespace, workdir: Path) -> list[Check]:
    """Run the scenarios on *backend* and report them."""
    started = time.monotonic()
    runs: list[BuildsResult] = []
    log: LogResult | None = None
    with database(backend) as make_db:
        for workers in args.workers:
            label = f"{workers} worker" + ("s" if workers > 1 else "")
            name = f"{backend}-{workers}w"
            say(f"\n[{backend}] {label}: {args.builds} builds")
            with running_site(workdir, name, make_db(name.replace("-", "_")), workers, args) as site:
                runs.append(bench_builds(site, label, args))
                if workers == max(args.workers) and args.log_lines:
                    say(f"[{backend}] log: one build printing {args.log_lines:,} lines")
                    log = bench_log(site, args)
            if args.profile:
                print_profile(site.profile, args.profile_top)
    checks = report(backend, runs, log, args)
    say(f"  ({backend} took {time.monotonic() - started:.0f}s)")
    return checks


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Parse the command line of the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="sqlite",
                        help="database of the masters (default sqlite)")
    parser.add_argument("--builds", type=int, default=200, help="builds forced per scenario (default 200)")
    parser.add_argument("--builders", type=int, default=4, help="trivial builders the builds spread over (default 4)")
    parser.add_argument("--max-builds", type=int, default=8, help="build slots of each worker (default 8)")
    parser.add_argument("--workers", default="1,2", help="worker counts to run, comma-separated (default 1,2)")
    parser.add_argument("--force-threads", type=int, default=4, help="client threads forcing builds (default 4)")
    parser.add_argument("--log-lines", type=int, default=1_000_000,
                        help="lines the log step prints; 0 skips the log scenario (default 1000000)")
    parser.add_argument("--range-reads", type=int, default=20, help="timed contents range reads (default 20)")
    parser.add_argument("--no-verify", dest="verify", action="store_false",
                        help="do not check the raw log's numbers (their sum) while reading it")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds each scenario may take (default 60)")
    parser.add_argument("--profile", action="store_true",
                        help="run the masters in the foreground under cProfile and print their top functions")
    parser.add_argument("--profile-top", type=int, default=25, help="functions printed per profile (default 25)")
    args = parser.parse_args(argv)
    try:
        args.workers = sorted({int(n) for n in args.workers.split(",")})
    except ValueError:
        parser.error("--workers takes numbers separated by commas, e.g. 1,2")
    if args.builds < 1 or args.builders < 1 or args.max_builds < 1 or min(args.workers) < 1:
        parser.error("--builds, --builders, --max-builds and --workers must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit 1 when a target or a check fails on SQLite."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    started = time.monotonic()
    backends = ("sqlite", "postgresql") if args.backend == "both" else (args.backend,)
    verdicts = {}
    with tempfile.TemporaryDirectory(prefix="ci-master-bench-engine-") as tmp:
        for backend in backends:
            try:
                verdicts[backend] = all(c.passed for c in bench_backend(backend, args, Path(tmp)))
            except (RuntimeError, OSError) as e:
                say(f"[{backend}] FAIL: {e}")
                verdicts[backend] = False
    print()
    for backend, passed in verdicts.items():
        print(f"{backend}: {'PASS' if passed else 'FAIL'}")
    overall = verdicts.get("sqlite", all(verdicts.values()))
    print(f"overall: {'PASS' if overall else 'FAIL'}; total time {time.monotonic() - started:.0f}s")
    return 0 if overall else 1


if __name__ == "__main__":
    sys.exit(main())
