"""Reporter benchmark: builds/s force-to-finished with a GitHubStatusPush on every build, against the same without.

Usage::

    python bench/bench_reporters.py [--backend sqlite|postgresql|both] [--builds K] [--rounds R] ...

It reuses ``bench_engine.py``'s sites (a master and ``ci-worker`` processes started from their
CLIs) and builds/s scenario: K trivial builds forced (each with a revision and a repository URL,
as a change carries them), timed from the first force to K complete builds.  Rounds alternate a
master without reporters and one whose ``reporters`` hold a ``GitHubStatusPush`` for every
builder, pointed at the stand-in forge of ``tests/forge.py`` running as a process of its own (a
forge is another machine: it must not take this process's CPU, which forces and polls).  After each
run with the reporter, it waits for the forge to hold ``pending`` then ``success`` for every
build, exactly once each (the time that takes after the last build is printed as the delivery
lag), so a reporter that falls behind or loses reports fails the run.  Target: the median
builds/s with the reporter within 20% of the median without it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import bench_engine as engine  # sys.path: this directory

TARGET_RATIO = 0.8  # builds/s with the reporter / without
TOKEN = "ghp_" + "A" * 36
REPOSITORY = "https://github.com/acme/widget.git"


@dataclass
class Status:
    """One status the forge accepted."""

    sha: str
    state: str


class Forge:
    """tests/forge.py run as a process of its own; ``statuses`` and ``refused`` are read from it."""

    def __init__(self) -> None:
        self.process = subprocess.Popen([sys.executable, str(engine.ROOT / "tests" / "forge.py")],
                                        stdout=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
        self.url = self.process.stdout.readline().strip()
        if not self.url.startswith("http://"):
            self.stop()
            raise RuntimeError("the stand-in forge did not start")

    def _state(self) -> dict:
        with urllib.request.urlopen(self.url + "/_forge/statuses", timeout=30) as response:
            return json.load(response)

    @property
    def statuses(self) -> list[Status]:
        """The statuses accepted so far."""
        return [Status(s["sha"], s["state"]) for s in self._state()["statuses"]]

    @property
    def refused(self) -> list:
        """The requests refused so far (status, why)."""
        return self._state()["refused"]

    def stop(self) -> None:
        """End the process."""
        self.process.kill()
        self.process.wait(30)


def sha_of(n: int) -> str:
    """A distinct 40-hex revision per forced build."""
    return f"{n:040x}"


def force_with_revisions(site: engine.Site, count: int, threads: int) -> tuple[list[int], float, float]:
    """bench_engine.force_builds, each build with its own revision and the repository URL."""
    from concurrent.futures import ThreadPoolExecutor

    builders = sorted(v for k, v in site.builders.items() if k.startswith("trivial-"))
    numbers = iter(range(1, count + 1))

    def one(builderid: int) -> int:
        _, requests = site.client.rpc("forceschedulers/force", "force", builderid=builderid,
                                      revision=sha_of(next(numbers)), repository=REPOSITORY)
        return requests[str(builderid)]

    started = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        brids = list(pool.map(one, [builders[n % len(builders)] for n in range(count)]))
    return brids, started, time.monotonic()


def with_reporter(forge: Forge):  # noqa: ANN201 (a master_config of bench_engine's signature)
    """bench_engine.master_config plus a GitHubStatusPush on every builder, aimed at *forge*."""
    plain = engine.master_config

    def config(*args: object) -> str:
        return plain(*args) + (
            "\nfrom master.reporters import GitHubStatusPush\n"
            f"config.reporters = [GitHubStatusPush({TOKEN!r}, base_url={forge.url!r}, retry_delay=0.2)]\n"
        )

    return config


def one_run(backend: str, make_db, args: argparse.Namespace, workdir: Path, name: str,
            forge: Forge | None) -> tuple[float, list[str], float | None]:
    """One builds/s run; return (builds/s, problems, delivery lag in s or None)."""
    plain = engine.master_config
    if forge is not None:
        engine.master_config = with_reporter(forge)
    try:
        with engine.running_site(workdir, name, make_db(name.replace("-", "_")), args.workers, args) as site:
            label = "with GitHubStatusPush" if forge is not None else "without reporter"
            forge_before = engine.cpu_seconds(forge.process.pid) if forge is not None else 0.0
            result = engine.bench_builds(site, label, args)
            done = time.monotonic()
            if result.complete:
                forge_cpu = engine.cpu_seconds(forge.process.pid) - forge_before if forge is not None else 0.0
                engine.say(f"    master CPU {result.master_cpu / result.complete * 1000:.1f} ms/build, workers "
                           f"{result.workers_cpu / result.complete * 1000:.1f} ms/build"
                           + (f", stand-in forge {forge_cpu / result.complete * 1000:.1f} ms/build" if forge else ""))
            problems = list(result.problems)
            lag = None
            if forge is not None:
                deadline = done + args.timeout
                while len(forge.statuses) < 2 * args.builds and time.monotonic() < deadline:
                    time.sleep(0.1)
                lag = time.monotonic() - done
                time.sleep(1.0)  # anything sent twice would arrive now
                statuses, refused = forge.statuses, forge.refused
                per_sha: dict[str, list[str]] = {}
                for status in statuses:
                    per_sha.setdefault(status.sha, []).append(status.state)
                wrong = [sha for n in range(1, args.builds + 1)
                         if per_sha.get(sha := sha_of(n)) != ["pending", "success"]]
                if wrong or len(statuses) != 2 * args.builds:
                    problems.append(f"{len(statuses)} statuses for {args.builds} builds; {len(wrong)} build(s)"
                                    f" without exactly pending then success ({wrong[:1]})")
                if refused:
                    problems.append(f"the forge refused {len(refused)}: {refused[0]}")
        if args.profile:
            engine.print_profile(site.profile, args.profile_top)
        return result.rate, problems, lag
    finally:
        engine.master_config = plain


def bench_backend(backend: str, args: argparse.Namespace, workdir: Path) -> bool:
    """Alternate runs without and with the reporter on *backend*; print the figures; return the verdict."""
    rates: dict[bool, list[float]] = {False: [], True: []}
    lags: list[float] = []
    problems: list[str] = []
    with engine.database(backend) as make_db:
        for round_number in range(1, args.rounds + 1):
            for reporting in (False, True):
                name = f"{backend}-{'gh' if reporting else 'plain'}-{round_number}"
                engine.say(f"\n[{backend}] round {round_number}, {'with' if reporting else 'without'} the reporter")
                forge = Forge() if reporting else None
                try:
                    rate, found, lag = one_run(backend, make_db, args, workdir, name, forge)
                finally:
                    if forge is not None:
                        forge.stop()
                rates[reporting].append(rate)
                problems += found
                if lag is not None:
                    lags.append(lag)
    without, with_ = statistics.median(rates[False]), statistics.median(rates[True])
    ratio = with_ / without if without else 0.0
    print(f"\n[{backend}] {args.builds} builds x {args.rounds} rounds, {args.workers} worker(s)")
    print(f"  builds/s without reporter:      {' '.join(f'{r:.1f}' for r in rates[False])}  median {without:.1f}")
    print(f"  builds/s with GitHubStatusPush: {' '.join(f'{r:.1f}' for r in rates[True])}  median {with_:.1f}")
    print(f"  ratio {ratio:.2f} (target >= {TARGET_RATIO:.2f}); statuses all delivered "
          f"{max(lags) if lags else 0:.2f}s after the last build at most")
    passed = ratio >= TARGET_RATIO and not problems
    for problem in problems:
        print(f"  problem: {problem}")
    print(f"  {'PASS' if passed else 'FAIL'}")
    return passed


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line; bench_engine's options the sites need are set here."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="sqlite")
    # runs of a few seconds: shorter ones measure the start more than the steady state
    parser.add_argument("--builds", type=int, default=300, help="builds forced per run (default 300)")
    parser.add_argument("--rounds", type=int, default=5, help="runs without and with the reporter each (default 5)")
    parser.add_argument("--workers", type=int, default=2, help="ci-worker processes (default 2)")
    parser.add_argument("--builders", type=int, default=4)
    parser.add_argument("--max-builds", type=int, default=8)
    parser.add_argument("--force-threads", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds each run may take (default 120)")
    parser.add_argument("--profile", action="store_true",
                        help="run the masters under cProfile and print their top functions")
    args = parser.parse_args(argv)
    if min(args.builds, args.rounds, args.workers) < 1:
        parser.error("--builds, --rounds and --workers must be at least 1")
    args.log_lines, args.profile_top = 10, 30  # bench_engine's site wants them
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit 1 when the target or a check fails."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    engine.force_builds = force_with_revisions  # every run, with or without reporter, forces the same way
    backends = ("sqlite", "postgresql") if args.backend == "both" else (args.backend,)
    with tempfile.TemporaryDirectory(prefix="ci-master-bench-reporters-") as tmp:
        verdicts = [bench_backend(backend, args, Path(tmp)) for backend in backends]
    return 0 if all(verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
