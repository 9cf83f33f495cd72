"""Latent Docker workers: how long a forced build waits for its container, and builds/s with 3 containers.

Usage::

    python bench/bench_latent.py [--samples N] [--builds K]

Needs a running Docker daemon (``.ci/docker-up start``); the worker image is built first if
missing (``contrib/docker/build-image``, cached).  Each scenario runs a real ``ci-master``
daemon on 127.0.0.1 whose ``DockerLatentWorker`` containers run on the host network.

* cold: ``build_wait_timeout=0``, so every build starts a new container; N builds forced one
  after the other.  *force -> started* is the time from the force (JSON-RPC) until REST shows
  the build's first step after ``worker_preparation`` started, i.e. the build running in its
  container; *force -> done* until the build is complete.
* warm: ``build_wait_timeout=60``; a first build starts the container, then N builds forced
  one after the other each find it up.
* throughput: K builds forced at once over 3 workers (``max_latent_workers=3``), from the first
  force until REST counts K complete; with ``build_wait_timeout=0`` (a container per build) and
  with 60 (3 containers kept up).  Every build must succeed.

Prints p50 and p95 of each latency and the builds/s; asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for _path in (str(ROOT / "tests"), str(ROOT)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from dockerutil import Master, containers, worker_image  # noqa: E402

POLL = 0.02
TIMEOUT = 300.0

CONFIG = """
names = [f"b{{n}}" for n in range(3)]
config = MasterConfig(
    www={{"interface": "127.0.0.1", "port": {port}}},
    workers=[DockerLatentWorker(f"d{{n}}", "pw", image="{image}", build_wait_timeout=WAIT, missing_timeout=60)
             for n in range(WORKERS)],
    max_latent_workers=3,
    builders=[BuilderConfig(name=name, workernames=[f"d{{n}}" for n in range(WORKERS)],
                            steps=[ShellCommand(name="run", command=["true"])]) for name in names],
    schedulers=[ForceScheduler(name="force", builderNames=names)],
)
"""


def _until(check, timeout: float = TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(POLL)
    raise RuntimeError(f"not done within {timeout}s")


def _percentiles(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"p50 {statistics.median(ordered) * 1000:7.0f} ms   p95 {p95 * 1000:7.0f} ms   (n={len(values)})"


def _one(master: Master, builderid: int) -> tuple[float, float]:
    """Force one build; (force -> its 'run' step started, force -> complete) in seconds."""
    t0 = time.monotonic()
    brid = master.force(builderid)

    def build() -> dict | None:
        found = master.get(f"/api/v2/buildrequests/{brid}/builds?field=buildid&field=complete")["builds"]
        return found[0] if found else None

    buildid = _until(build)["buildid"]
    query = f"/api/v2/builds/{buildid}/steps?name=run&field=started_at"
    _until(lambda: any(s["started_at"] for s in master.get(query)["steps"]))
    started = time.monotonic() - t0
    _until(lambda: master.get(f"/api/v2/builds/{buildid}?field=complete")["builds"][0]["complete"])
    done = time.monotonic() - t0
    results = master.get(f"/api/v2/builds/{buildid}?field=results")["builds"][0]["results"]
    if results != 0:
        raise RuntimeError(f"build {buildid} ended with results {results}")
    return started, done


@contextmanager
def _master(wait: float, workers: int) -> Iterator[Master]:
    """A master with *workers* latent workers, stopped at the end (it must leave no container)."""
    with tempfile.TemporaryDirectory(prefix="bench-latent-") as tmp:
        master = Master(Path(tmp), CONFIG.replace("WAIT", repr(wait)).replace("WORKERS", str(workers)))
        master.start()
        try:
            yield master
        finally:
            name = master.name
            master.stop()
            if containers(name):
                raise RuntimeError(f"containers left after the master stopped: {containers(name)}")


def latency(label: str, wait: float, samples: int) -> None:
    """Sequential builds on one worker."""
    with _master(wait, 1) as master:
        builderid = master.builder_id("b0")
        if wait > 0:
            _one(master, builderid)  # starts the container that the measured builds find up
        runs = [_one(master, builderid) for _ in range(samples)]
        print(f"{label:6} force -> started  {_percentiles([r[0] for r in runs])}")
        print(f"{label:6} force -> done     {_percentiles([r[1] for r in runs])}")


def throughput(label: str, wait: float, builds: int) -> None:
    """*builds* forced at once over 3 workers."""
    with _master(wait, 3) as master:
        ids = [master.builder_id(f"b{n}") for n in range(3)]
        t0 = time.monotonic()
        for n in range(builds):
            master.force(ids[n % 3])
        done = "/api/v2/buildrequests?complete=true&field=buildrequestid&limit=1"
        _until(lambda: master.get(done)["meta"]["total"] == builds)
        elapsed = time.monotonic() - t0
        results = master.get(f"/api/v2/builds?field=results&limit={builds}")["builds"]
        if len(results) != builds or {b["results"] for b in results} != {0}:
            raise RuntimeError(f"expected {builds} successful builds, got {results}")
        print(f"{label:6} {builds} builds over 3 containers: {elapsed:6.1f} s, {builds / elapsed:5.2f} builds/s")


def main() -> int:
    """Run the scenarios and print their figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=20, help="sequential builds per latency scenario")
    parser.add_argument("--builds", type=int, default=50, help="builds of the throughput scenarios")
    args = parser.parse_args()
    print(f"image {worker_image()}")
    latency("cold", 0, args.samples)
    latency("warm", 60, args.samples)
    throughput("cold", 0, args.builds)
    throughput("warm", 60, args.builds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
