"""REST benchmark: requests/s and p50/p99 latency of four build queries at 100,000 builds.

Usage::

    python bench/bench_rest.py [--backend sqlite|postgresql|both] [--builds N] [--duration S] ...
    python bench/bench_rest.py serve --db URL --port P      # the server half, started by the above

For each backend the benchmark seeds a fresh database (builds over 50 builders, with
steps, properties, build requests and buildsets) through a synchronous SQLAlchemy engine
and its driver connection (executemany, COPY), starts the REST server in a subprocess of
its own (one Twisted reactor, one process) and loads it with ``wrk``, another process, so
that the client never shares the server's core accounting.  The server also answers ``GET /const/``, a plain Klein route
returning a constant JSON body the size of a single build, through the same site and
JSON helper: its figures, measured in the same run, are the ceiling the API is compared
with.  Every figure is the median over ``--rounds`` interleaved wrk runs.
"""

from __future__ import annotations

import argparse
import gc
import io
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
for _path in (str(ROOT / "tests"), str(ROOT)):  # master/, and tests/pgserver.py
    if _path not in sys.path:
        sys.path.insert(0, _path)

BUILDERS = 50
STEPS = ("git", "compile", "test")
WORKERS = 20
RUNNING_PER_BUILDER = 2  # the newest builds of each builder are still running
BASE_TIME = 1_700_000_000
# result codes 0..6 (success .. cancelled), weighted roughly like a busy CI
RESULT_WEIGHTS = (70, 10, 12, 2, 4, 1, 1)
STATE = ("build successful", "build warnings", "failed test", "skipped", "exception", "retry", "cancelled")
CHUNK = 10_000  # builds generated and inserted per batch
COMMIT_EVERY = 50_000  # builds per seeding transaction
SETTLE = 0.5  # seconds of quiet after each wrk run
RSS_MB = 80  # the server's RSS before load
RSS_GROWTH_MB = 10  # and its growth over the runs
CPU_MS = 0.25  # the server's CPU per request over the core four reads
TOTAL_SECONDS = 15 * 60  # the whole run, every backend and size


# -- seeding ---------------------------------------------------------------------------------------

COLUMNS = {
    "buildsets": ("id", "reason", "submitted_at", "complete", "complete_at", "results", "scheduler"),
    "buildrequests": (
        "id", "buildsetid", "builderid", "priority", "complete", "results", "submitted_at", "complete_at",
        "claimed_by_masterid", "claimed_at",
    ),
    "builds": (
        "id", "number", "builderid", "buildrequestid", "workerid", "masterid", "started_at", "complete_at",
        "locks_duration_s", "state_string", "results",
    ),
    "steps": (
        "id", "number", "name", "buildid", "started_at", "locks_acquired_at", "complete_at", "state_string",
        "results", "urls", "hidden",
    ),
    "build_properties": ("buildid", "name", "value", "source"),
}
"""The tables filled per build, in foreign-key order, with the columns given."""


def _chunk_rows(
    first: int, last: int, numbers: list[int], per_builder: list[int], rng: random.Random
) -> dict[str, list[tuple]]:
    """Rows (tuples in :data:`COLUMNS` order) of every table for builds *first*..*last*; ids are given."""
    rows: dict[str, list[tuple]] = {name: [] for name in COLUMNS}
    buildsets, requests, builds = rows["buildsets"], rows["buildrequests"], rows["builds"]
    steps, properties = rows["steps"], rows["build_properties"]
    last_step = len(STEPS) - 1
    for buildid in range(first, last + 1):
        builderid = (buildid - 1) % BUILDERS + 1
        numbers[builderid] += 1
        number = numbers[builderid]
        started = BASE_TIME + buildid * 30
        done = number <= per_builder[builderid] - RUNNING_PER_BUILDER
        results = rng.choices(range(7), RESULT_WEIGHTS)[0] if done else None
        complete_at = started + rng.randint(60, 3600) if done else None
        buildsets.append((buildid, "benchmark", started - 5, done, complete_at, results, "bench"))
        requests.append(
            (buildid, buildid, builderid, 0, done, results, started - 5, complete_at, 1, started - 1)
        )
        builds.append((
            buildid, number, builderid, buildid, rng.randint(1, WORKERS), 1, started, complete_at,
            rng.randint(0, 5), STATE[results] if done else "building", results,
        ))
        for index, name in enumerate(STEPS):
            at = started + index * 10
            step_done = done or index < last_step
            steps.append((
                (buildid - 1) * len(STEPS) + index + 1, index, name, buildid, at, at,
                at + 9 if step_done else None, f"{name} done" if step_done else f"{name} running",
                (results if index == last_step else 0) if step_done else None, "[]", False,
            ))
        branch = orjson.dumps(rng.choice(("main", "release", "dev"))).decode()
        properties.append((buildid, "branch", branch, "Build"))
        properties.append((buildid, "got_revision", f'"{rng.getrandbits(160):040x}"', "Git"))
    return rows


def _copy_value(value: Any) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, str):
        return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
    return str(value)


def _bulk_insert(cursor: Any, dialect: str, table: str, rows: list[tuple]) -> None:
    """Insert *rows* into *table*: one executemany on SQLite, one COPY on PostgreSQL."""
    columns = COLUMNS[table]
    if dialect == "sqlite":
        marks = ", ".join("?" * len(columns))
        cursor.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)
        return
    text = "".join("\t".join(map(_copy_value, row)) + "\n" for row in rows)
    cursor.copy_expert(f"COPY {table} ({', '.join(columns)}) FROM STDIN", io.StringIO(text))


def seed(url: str, builds: int, log: Callable[[str], None] = print) -> None:
    """Create the schema at *url* and fill it with *builds* builds over 50 builders, in bulk.

    Each build has a buildset and a build request (the foreign keys want them), 3 steps and
    2 properties; results vary, and the newest two builds of each builder are still running.
    The few fixed rows go through SQLAlchemy Core; the per-build rows through the driver
    (executemany on SQLite, COPY on PostgreSQL) in transactions of 50,000 builds, since
    seeding is setup and not what is measured.
    """
    import sqlalchemy as sa

    from master.db import counters, migrate, schema
    from master.db.migrate import sqlalchemy_url

    started = time.monotonic()
    migrate.create(url)
    engine = sa.create_engine(sqlalchemy_url(url), poolclass=sa.pool.NullPool)
    dialect = engine.dialect.name
    rng = random.Random(20240601)
    per_builder = [0] + [builds // BUILDERS + (1 if b <= builds % BUILDERS else 0) for b in range(1, BUILDERS + 1)]
    numbers = [0] * (BUILDERS + 1)
    every_builder = range(1, BUILDERS + 1)
    with engine.begin() as conn:
        conn.execute(sa.insert(schema.masters), [{"id": 1, "name": "bench", "active": True, "last_active": BASE_TIME}])
        conn.execute(sa.insert(schema.workers), [{"id": w, "name": f"worker-{w:02d}"} for w in range(1, WORKERS + 1)])
        conn.execute(
            sa.insert(schema.builders),
            [{"id": b, "name": f"builder-{b:02d}", "description": f"benchmark builder {b}"} for b in every_builder],
        )
        conn.execute(sa.insert(schema.builder_masters), [{"builderid": b, "masterid": 1} for b in every_builder])
        conn.execute(sa.insert(schema.builder_tags), [{"builderid": b, "tag": f"group-{b % 5}"} for b in every_builder])
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        for statement in counters.drop_ddl(dialect):  # counted once at the end, not row by row
            cursor.execute(statement)
        if dialect == "sqlite":  # seeding only: durability is not needed
            cursor.execute("PRAGMA synchronous=OFF")
        else:  # the rows are consistent by construction: skip the per-row foreign-key triggers
            cursor.execute("SET session_replication_role = replica")
        for first in range(1, builds + 1, CHUNK):
            last = min(first + CHUNK - 1, builds)
            rows = _chunk_rows(first, last, numbers, per_builder, rng)
            for table, table_rows in rows.items():
                _bulk_insert(cursor, dialect, table, table_rows)
            if last % COMMIT_EVERY == 0 or last == builds:
                raw.commit()
                log(f"  seeded {last:,}/{builds:,} builds ({time.monotonic() - started:.1f}s)")
        counters.recount(cursor.execute, dialect)
        for statement in counters.trigger_ddl(dialect):
            cursor.execute(statement)
        raw.commit()
        if dialect == "postgresql":
            for table in ("masters", "workers", "builders", "buildsets", "buildrequests", "builds", "steps"):
                cursor.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
            raw.commit()
            # what autovacuum would have done by the time a site has this many builds:
            # planner statistics, and the visibility map that index-only scans need
            raw.driver_connection.autocommit = True
            cursor.execute("VACUUM ANALYZE")
        cursor.close()
    finally:
        raw.close()
    engine.dispose()
    log(f"  seeded in {time.monotonic() - started:.1f}s")


# -- the server half ---------------------------------------------------------------------------------


def serve(db_url: str, port: int) -> None:
    """Serve the REST API at /api and the constant route at /const/ on 127.0.0.1:*port*; print READY."""
    from klein import Klein
    from twisted.internet import defer, reactor
    from twisted.logger import (
        FilteringLogObserver,
        LogLevel,
        LogLevelFilterPredicate,
        globalLogBeginner,
        textFileLogObserver,
    )

    from master.data.connector import DataAPI
    from master.data.resources import core_resource_types
    from master.db.backends import make_storage
    from master.memory import trim_heap
    from master.www.responses import json_body
    from master.www.rest import RestApi
    from master.www.site import build_root, build_site

    # warnings and errors to stderr (the parent keeps it in a file); access lines are dropped
    globalLogBeginner.beginLoggingTo([
        FilteringLogObserver(textFileLogObserver(sys.stderr), [LogLevelFilterPredicate(LogLevel.warn)])
    ], redirectStandardIO=False)

    class Constant:
        """A plain Klein route answering a fixed JSON body with the API's own JSON helper."""

        app = Klein()

        def __init__(self, body: Any) -> None:
            self.body = body

        @app.route("/", methods=["GET", "HEAD"])
        def constant(self, request: Any) -> bytes:
            return json_body(request, self.body)

    async def start() -> None:
        storage = make_storage(db_url)
        await storage.start()
        # SQLite's reader and writer threads would keep the process alive after the reactor stops
        reactor.addSystemEventTrigger("before", "shutdown", lambda: defer.ensureDeferred(storage.stop()))
        data = DataAPI(storage)
        for rtype in core_resource_types():
            data.add_resource_type(rtype)
        # the ceiling answers the body of a real single-build response
        body = {"builds": [await data.get("builds/1")], "meta": {}}
        root = build_root({"api": RestApi(data).resource(), "const": Constant(body).app.resource()})
        reactor.listenTCP(port, build_site(root), interface="127.0.0.1", backlog=256)
        gc.freeze()  # as the master does once it has started
        trim_heap()
        print("READY", flush=True)

    def failed(failure: Any) -> None:
        print(f"FAILED {failure.getErrorMessage()}", flush=True)
        sys.stderr.write(failure.getTraceback())
        reactor.stop()

    reactor.callWhenRunning(lambda: defer.ensureDeferred(start()).addErrback(failed))
    reactor.run()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def server_process(db_url: str, logfile: Path) -> Iterator[tuple[str, int]]:
    """Run ``serve`` in a subprocess; yield its base URL and pid; terminate it afterwards."""
    port = _free_port()
    with open(logfile, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "serve", "--db", db_url, "--port", str(port)],
            stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, text=True,
        )
    try:
        line = proc.stdout.readline().strip()
        if line != "READY":
            proc.wait(10)
            tail = logfile.read_text()[-3000:]
            raise SystemExit(f"the server did not start ({line or 'no output'}); its log:\n{tail}")
        yield f"http://127.0.0.1:{port}", proc.pid
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# -- load with wrk ---------------------------------------------------------------------------------


@dataclass
class Target:
    """One measured endpoint: a fixed path, or a path pattern with one random integer in [low, high]."""

    key: str
    label: str
    path: str
    low: int = 0
    high: int = 0

    def example(self) -> str:
        """One concrete path, for the sanity check."""
        return self.path % self.high if self.high else self.path

    def script(self, seed: int) -> str | None:
        """A wrk Lua script asking for a random id per request, or None for a fixed path."""
        if not self.high:
            return None
        return (
            f"math.randomseed({seed})\n"
            "request = function()\n"
            f"  return wrk.format('GET', string.format('{self.path}', math.random({self.low}, {self.high})))\n"
            "end\n"
        )


@dataclass
class Run:
    """The figures of one wrk run."""

    rps: float
    p50: float  # milliseconds
    p99: float
    requests: int
    errors: int  # non-2xx responses and socket errors
    error_text: str = ""  # wrk's own lines about them
    cpu: float = 0.0  # seconds of the server's CPU time (user + system) during the run


@dataclass
class Result:
    """Every run of one target, and their medians."""

    target: Target
    runs: list[Run] = field(default_factory=list)

    def median(self, name: str) -> float:
        """The median of one figure over the runs."""
        return statistics.median(getattr(run, name) for run in self.runs)

    @property
    def errors(self) -> int:
        """Non-2xx responses and socket errors over every run."""
        return sum(run.errors for run in self.runs)

    @property
    def cpu_ms(self) -> float:
        """The server's CPU milliseconds per request over every run."""
        return sum(run.cpu for run in self.runs) * 1000 / max(1, sum(run.requests for run in self.runs))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process *pid* so far (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    """The resident set size of process *pid* in MB (``/proc/<pid>/status``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        raise ValueError(f"cannot read wrk latency {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_wrk(output: str) -> Run:
    """Read requests/s, the 50% and 99% latencies and the error counts from ``wrk --latency`` output."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.M)
    total = re.search(r"(\d+) requests in", output)
    if not (rps and p50 and p99 and total):
        raise RuntimeError(f"unexpected wrk output:\n{output}")
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses:\s+(\d+)", output))
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
    text = "; ".join(line.strip() for line in output.splitlines() if "Non-2xx" in line or "Socket errors" in line)
    return Run(float(rps.group(1)), _ms(p50.group(1)), _ms(p99.group(1)), int(total.group(1)), errors, text)


def wrk(base: str, target: Target, seconds: float, connections: int, workdir: Path, seed: int, pid: int) -> Run:
    """Run wrk once against *target* and return its figures, with the CPU time server *pid* spent."""
    args = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", "--timeout", "10s"]
    script = target.script(seed)
    if script is not None:
        path = workdir / f"{target.key}.lua"
        path.write_text(script)
        args += ["-s", str(path)]
    args.append(base + (target.path if script is None else "/"))
    cpu_before = cpu_seconds(pid)
    proc = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 60)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr or proc.stdout}")
    # wrk hangs up with requests in flight; let the server finish (or drop) them before the next run
    time.sleep(SETTLE)
    run = parse_wrk(proc.stdout)
    run.cpu = cpu_seconds(pid) - cpu_before
    return run


def ensure_wrk() -> None:
    """Make sure wrk is on PATH: install Debian's package when running as root, else say how."""
    if shutil.which("wrk"):
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("wrk is missing: apt-get install -y wrk", flush=True)
        install = ["apt-get", "install", "-y", "wrk"]
        for command in (install, ["apt-get", "update"], install):
            subprocess.run(command, check=False, stdout=subprocess.DEVNULL)
            if shutil.which("wrk"):
                return
    raise SystemExit("wrk is needed as the load generator: sudo apt-get install wrk")


def targets(builds: int) -> list[Target]:
    """The constant route (the ceiling) and the four API queries of the requirement."""
    return [
        # with its slash: Klein answers the bare /const with a redirect to /const/ (werkzeug's strict slashes)
        Target("const", "constant JSON (ceiling)  /const/", "/const/"),
        Target("single", "single build  builds/<id>", "/api/v2/builds/%d", 1, builds),
        Target("page", "50-build page  builds?limit=50&order=-buildid", "/api/v2/builds?limit=50&order=-buildid"),
        Target(
            "builder", "builder page  builders/<id>/builds?complete=true&order=-number&limit=20",
            "/api/v2/builders/%d/builds?complete=true&order=-number&limit=20", 1, BUILDERS,
        ),
        Target(
            "filter", "filtered  builds?builderid=X&results=2&field=buildid,builderid,results",
            "/api/v2/builds?builderid=%d&results=2&field=buildid&field=builderid&field=results", 1, BUILDERS,
        ),
        Target("builders", "builders list  builders", "/api/v2/builders"),
    ]


CORE_FOUR = ("single", "page", "builders", "filter")
"""The reads whose CPU per request is bounded (issue 17, item 7)."""


def sanity_check(base: str, todo: list[Target], builds: int) -> dict[str, int]:
    """GET one example of each target, check status and shape; return the response sizes."""
    sizes = {}
    for target in todo:
        try:
            with urllib.request.urlopen(base + target.example(), timeout=30) as response:
                body = response.read()
                if response.geturl() != base + target.example():
                    # wrk does not follow redirects: it would measure the redirect, not this route
                    raise SystemExit(f"{target.example()}: redirected to {response.geturl()}")
        except urllib.error.HTTPError as e:
            raise SystemExit(f"{target.example()}: HTTP {e.code} {e.read()[:300]!r}") from None
        decoded = orjson.loads(body)
        sizes[target.key] = len(body)
        items = decoded["builders" if target.key == "builders" else "builds"]
        expected = {"const": 1, "single": 1, "page": min(50, builds), "builder": 20, "filter": None,
                    "builders": BUILDERS}[target.key]
        if expected is not None and len(items) != expected:
            raise SystemExit(f"{target.example()}: expected {expected} builds, got {len(items)}")
        if target.key == "page" and decoded["meta"]["total"] != builds:
            raise SystemExit(f"{target.example()}: total {decoded['meta']['total']} != {builds}")
        if target.key == "filter" and any(set(i) != {"buildid", "builderid", "results"} for i in items):
            raise SystemExit(f"{target.example()}: unexpected items {items[:2]}")
    return sizes


def measure(
    base: str, pid: int, todo: list[Target], args: argparse.Namespace, workdir: Path
) -> dict[str, Result]:
    """Warm every target up, then run interleaved rounds of wrk over all of them."""
    results = {t.key: Result(t) for t in todo}
    rng = random.Random(7)
    for target in todo:
        wrk(base, target, args.warmup, args.connections, workdir, rng.randrange(1 << 30), pid)
    for round_number in range(args.rounds):
        for target in todo:
            run = wrk(base, target, args.duration, args.connections, workdir, rng.randrange(1 << 30), pid)
            results[target.key].runs.append(run)
        print(f"  round {round_number + 1}/{args.rounds}: "
              + ", ".join(f"{k} {r.runs[-1].rps:.0f}/s" for k, r in results.items()), flush=True)
    return results


# -- the report ------------------------------------------------------------------------------------


@dataclass
class Check:
    """One target of the issue: a name, the figure, the bound, and whether it passes."""

    name: str
    value: str
    bound: str
    passed: bool

    def line(self) -> str:
        """The check as one PASS/FAIL line."""
        return f"  {'PASS' if self.passed else 'FAIL'}  {self.name}: {self.value} ({self.bound})"


@dataclass
class ScaleRun:
    """The figures of one backend at one size: wrk results, body sizes, load, and the server's RSS."""

    builds: int
    results: dict[str, Result]
    sizes: dict[str, int]
    load: tuple[float, float]
    rss_start: float  # MB, once serving, before any request
    rss_end: float  # MB, after every run


def relative(results: dict[str, Result], key: str, base: str, figure: str) -> float:
    """The median over rounds of ``figure(key) / figure(base)``, each ratio taken within one round.

    Rounds are interleaved, so a ratio within a round compares runs a few seconds apart:
    the medians of such ratios shrug off a neighbour's load that comes and goes.
    """
    pairs = zip(results[key].runs, results[base].runs, strict=True)
    return statistics.median(getattr(run, figure) / getattr(ref, figure) for run, ref in pairs)


def core_cpu_ms(results: dict[str, Result]) -> float:
    """The server's CPU milliseconds per request over every run of the core four reads."""
    runs = [run for key in CORE_FOUR for run in results[key].runs]
    return sum(run.cpu for run in runs) * 1000 / max(1, sum(run.requests for run in runs))


def checks(runs: list[ScaleRun]) -> list[Check]:
    """The acceptance of issue 17 for one backend: scaling, share of the ceiling, RSS and CPU."""
    found = []
    small, large = runs[0], runs[-1]
    if len(runs) > 1:
        for key, result in large.results.items():
            if key == "const":
                continue
            ratio = result.median("p50") / small.results[key].median("p50")
            found.append(Check(f"{key} p50 at {large.builds:,} within 2x of {small.builds:,}", f"{ratio:.2f}x",
                               "<= 2x", ratio <= 2))
    for key in large.results:
        if key == "const":
            continue
        share = relative(large.results, key, "const", "rps")
        bound = 0.5 if key == "single" else 0.25
        found.append(Check(f"{key} req/s at {large.builds:,} vs ceiling", f"{share:.1%}", f">= {bound:.0%}",
                           share >= bound))
    for run in runs:
        found.append(Check(f"server RSS before load at {run.builds:,}", f"{run.rss_start:.1f} MB", f"< {RSS_MB} MB",
                           run.rss_start < RSS_MB))
        growth = run.rss_end - run.rss_start
        found.append(Check(f"server RSS growth over the runs at {run.builds:,}", f"{growth:+.1f} MB",
                           f"< {RSS_GROWTH_MB} MB", growth < RSS_GROWTH_MB))
        cpu = core_cpu_ms(run.results)
        found.append(Check(f"CPU per request, core four reads, at {run.builds:,}", f"{cpu:.3f} ms",
                           f"<= {CPU_MS} ms", cpu <= CPU_MS))
    for run in runs:
        for result in run.results.values():
            for number, wrk_run in enumerate(result.runs, 1):
                if wrk_run.errors:
                    found.append(Check(f"{result.target.key} round {number} at {run.builds:,} had errors",
                                       wrk_run.error_text, "none", False))
    return found


def report_scale(backend: str, run: ScaleRun, args: argparse.Namespace) -> None:
    """Print the table of one backend at one size."""
    results = run.results
    print()
    print(f"== {backend}: {run.builds:,} builds over {BUILDERS} builders; wrk -t1 -c{args.connections}; "
          f"medians of {args.rounds} rounds x {args.duration}s; load average {run.load[0]:.1f} -> {run.load[1]:.1f} "
          f"on {os.cpu_count()} CPUs; server RSS {run.rss_start:.1f} -> {run.rss_end:.1f} MB ==")
    header = (f"{'endpoint':<77} {'bytes':>6} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'%ceil':>6} "
              f"{'p50/single':>10} {'cpu ms/req':>10}")
    print(header)
    print("-" * len(header))
    for key, result in results.items():
        rps, p50, p99 = result.median("rps"), result.median("p50"), result.median("p99")
        share = relative(results, key, "const", "rps")
        ratio = relative(results, key, "single", "p50")
        errors = f"  ({result.errors} errors)" if result.errors else ""
        print(f"{result.target.label:<77} {run.sizes[key]:>6} {rps:>7.0f} {p50:>7.2f} {p99:>7.2f} "
              f"{share:>6.0%} {ratio:>9.2f}x {result.cpu_ms:>10.3f}{errors}")
    print(f"  CPU per request over the core four reads ({', '.join(CORE_FOUR)}): {core_cpu_ms(results):.3f} ms")


def report(backend: str, runs: list[ScaleRun], args: argparse.Namespace) -> list[Check]:
    """Print every size's table, the p50 at each size and their ratio, and the checks; return the checks."""
    for run in runs:
        report_scale(backend, run, args)
    if len(runs) > 1:
        print()
        sizes = [f"{run.builds:>12,}" for run in runs]
        print(f"== {backend}: p50 ms by size ==")
        print(f"{'endpoint':<10} {''.join(sizes)} {'ratio':>8}")
        for key in runs[0].results:
            p50s = [run.results[key].median("p50") for run in runs]
            print(f"{key:<10} {''.join(f'{v:>12.2f}' for v in p50s)} {p50s[-1] / p50s[0]:>7.2f}x")
    found = checks(runs)
    print()
    for check in found:
        print(check.line())
    return found


# -- query plans ---------------------------------------------------------------------------------


def explain(url: str, todo: list[Target], repeat: int = 200) -> None:
    """Print the SQL the data API runs for each API target, the backend's plan for it and its time alone.

    The statements are built as the data API builds them (:func:`master.data.query.build_read`)
    and compiled as the storage compiles them; the time is the statement alone through the
    driver, without Python on top: what the database contributes to a request.
    """
    import sqlalchemy as sa
    from sqlalchemy.dialects import postgresql, sqlite

    from master.data.connector import DataAPI
    from master.data.query import build_read
    from master.data.resources import core_resource_types
    from master.db.compiler import StatementCompiler
    from master.db.migrate import sqlalchemy_url

    data = DataAPI(storage=None)
    for rtype in core_resource_types():
        data.add_resource_type(rtype)
    engine = sa.create_engine(sqlalchemy_url(url), poolclass=sa.pool.NullPool)
    is_sqlite = engine.dialect.name == "sqlite"
    compiler = StatementCompiler(sqlite.dialect() if is_sqlite else postgresql.psycopg2.dialect())
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        for target in todo:
            if target.key == "const":
                continue
            path, _, query = target.example().partition("?")
            args: dict[str, list[str]] = {}
            for pair in filter(None, query.split("&")):
                name, _, value = pair.partition("=")
                args.setdefault(name, []).append(value)
            endpoint, path_args = data.resolve(path.removeprefix("/api/v2/"))
            spec = data.parse_spec(endpoint, args)
            page, count, params, _ = build_read(endpoint, spec, path_args)
            print(f"\n  {target.example()}")
            for label, statement in (("page", page), ("count", count)):
                if statement is None:
                    continue
                sql, bound = compiler.render(statement, params)
                cursor.execute(("EXPLAIN QUERY PLAN " if is_sqlite else "EXPLAIN ") + sql, bound)
                plan = [row[-1] if is_sqlite else row[0] for row in cursor.fetchall()]
                started = time.perf_counter()
                for _ in range(repeat):
                    cursor.execute(sql, bound)
                    cursor.fetchall()
                took = (time.perf_counter() - started) / repeat * 1000
                print(f"    {label}: {took:.3f} ms  {' '.join(sql.split())[:150]}")
                for line in plan:
                    print(f"      {line}")
            raw.rollback()
        cursor.close()
    finally:
        raw.close()
        engine.dispose()


# -- main ------------------------------------------------------------------------------------------


@contextmanager
def database(backend: str, workdir: Path) -> Iterator[str]:
    """An empty database URL on *backend*, valid for the block (PostgreSQL: a throwaway server)."""
    if backend == "sqlite":
        path = workdir / "bench.sqlite"
        for stale in workdir.glob("bench.sqlite*"):
            stale.unlink()
        yield f"sqlite:///{path}"
        return
    from pgserver import PostgresServer

    server = PostgresServer()
    server.start()
    try:
        yield server.create_database("bench")
    finally:
        server.stop()


def bench_scale(backend: str, builds: int, args: argparse.Namespace, workdir: Path) -> ScaleRun:
    """Seed *builds* builds, serve, load and return the figures of one backend at one size."""
    print(f"\n[{backend}] seeding {builds:,} builds over {BUILDERS} builders", flush=True)
    with database(backend, workdir) as url:
        seed(url, builds, log=lambda line: print(line, flush=True))
        if args.explain:
            print(f"[{backend}] the data API's SQL, plans and time per statement alone:")
            explain(url, targets(builds))
        with server_process(url, workdir / f"server-{backend}.log") as (base, pid):
            rss_start = rss_mb(pid)
            todo = targets(builds)
            sizes = sanity_check(base, todo, builds)
            print(f"[{backend}] server up at {base} (RSS {rss_start:.1f} MB); warm-up {args.warmup:g}s per "
                  f"endpoint, then {args.rounds} rounds", flush=True)
            load_before = os.getloadavg()[0]
            results = measure(base, pid, todo, args, workdir)
            load = (load_before, os.getloadavg()[0])
            rss_end = rss_mb(pid)
    return ScaleRun(builds, results, sizes, load, rss_start, rss_end)


def bench_backend(backend: str, args: argparse.Namespace, workdir: Path) -> list[Check]:
    """Every size on one backend, then its report."""
    started = time.monotonic()
    runs = [bench_scale(backend, builds, args, workdir) for builds in args.scale]
    found = report(backend, runs, args)
    print(f"  ({backend} took {time.monotonic() - started:.0f}s)")
    return found


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Parse the command line of the benchmark run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--builds", type=int, default=100_000, help="builds to seed (default 100000)")
    parser.add_argument("--scale", help="comma-separated sizes, each seeded and measured in turn "
                        "(e.g. 10000,1000000); replaces --builds")
    parser.add_argument("--duration", type=int, default=3, help="seconds per wrk run (default 3)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; figures are medians (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="seconds of warm-up per endpoint (default 1)")
    parser.add_argument("--connections", type=int, default=8, help="concurrent wrk connections (default 8)")
    parser.add_argument("--explain", action="store_true", help="print each query's SQL, plan and time alone")
    args = parser.parse_args(argv)
    try:
        args.scale = sorted(int(n) for n in args.scale.split(",")) if args.scale else [args.builds]
    except ValueError:
        parser.error(f"--scale takes comma-separated integers, not {args.scale!r}")
    least = BUILDERS * (RUNNING_PER_BUILDER + 20)
    if args.scale[0] < least:
        parser.error(f"every size must be at least {least} builds")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or, with ``serve``, its server half); exit 1 when a check fails."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"]:
        parser = argparse.ArgumentParser(prog="bench_rest.py serve")
        parser.add_argument("--db", required=True)
        parser.add_argument("--port", type=int, required=True)
        options = parser.parse_args(argv[1:])
        serve(options.db, options.port)
        return 0
    args = parse_args(argv)
    ensure_wrk()
    started = time.monotonic()
    backends = ("sqlite", "postgresql") if args.backend == "both" else (args.backend,)
    verdicts = {}
    with tempfile.TemporaryDirectory(prefix="ci-master-bench-") as tmp:
        for backend in backends:
            verdicts[backend] = all(c.passed for c in bench_backend(backend, args, Path(tmp)))
    took = time.monotonic() - started
    print()
    for backend, passed in verdicts.items():
        print(f"{backend}: {'PASS' if passed else 'FAIL'}")
    timing = Check("whole run", f"{took:.0f}s", f"< {TOTAL_SECONDS}s", took < TOTAL_SECONDS)
    print(timing.line())
    overall = all(verdicts.values()) and timing.passed
    print(f"overall: {'PASS' if overall else 'FAIL'}")
    return 0 if overall else 1


if __name__ == "__main__":
    sys.exit(main())
