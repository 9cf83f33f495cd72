"""Web UI benchmark: time to first meaningful data of Buildbot's UI pages on a master holding 1,000,000 builds.

Usage::

    python bench/bench_ui.py [--builds N] [--backend postgresql|sqlite] [--runs R]

It seeds a fresh database (PostgreSQL by default, a throwaway server from
``tests/pgserver.py``) with ``--builds`` builds over 50 builders exactly as
``bench_rest.py`` does (steps, properties, requests, buildsets; seeding is setup), writes a
``master.cfg`` naming those builders, starts a real master (``ci-master start``: the same
service tree users run, Buildbot's UI at ``/``) and opens four pages in headless chromium
through Playwright:

=========  ==================================  ==========================================
page       route                               first meaningful data
=========  ==================================  ==========================================
home       ``#/``                              a build sticker among the recent builds
builders   ``#/builders``                      the row of ``builder-01`` in the table
builder    ``#/builders/<id>``                 a finished build's row in its builds table
build      ``#/builders/<id>/builds/<number>`` the build's summary and its first step
=========  ==================================  ==========================================

Each page is opened in a new tab (the browser keeps its cache of the app's bundles, as for
someone who has used the UI before) ``--runs`` times; the figure is the median time from
``goto`` to the element being visible, with the slowest API request the page made.  One
cold load (a fresh browser context) of the home page is shown apart.  The goal (issue 17,
item 5) is under 1 s per page; it prints PASS/FAIL lines and exits 1 on a FAIL.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_rest  # noqa: E402 (the seeding and the throwaway databases are shared)

CHROMIUM = "/usr/bin/chromium"
GOAL_S = 1.0
TIMEOUT_MS = 30_000

CONFIG = """
from master.config import BuilderConfig, MasterConfig
from master.engine.schedulers import ForceScheduler
from master.engine.steps import ShellCommand

NAMES = [f"builder-{{b:02d}}" for b in range(1, {builders} + 1)]
config = MasterConfig(
    title="ci-master UI benchmark",
    db_url={db_url!r},
    www={{"interface": "127.0.0.1", "port": {port}}},
    builders=[BuilderConfig(name=name, steps=[ShellCommand(command="true")]) for name in NAMES],
    schedulers=[ForceScheduler(name="force", builderNames=NAMES)],
)
"""


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-P", "-m", "master.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120, check=False, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


@contextmanager
def running_master(db_url: str, workdir: Path) -> Iterator[str]:
    """A master daemon on *db_url* on a free port; yield its URL."""
    basedir = workdir / "master"
    basedir.mkdir(mode=0o700)
    port = bench_rest._free_port()
    (basedir / "master.cfg").write_text(textwrap.dedent(CONFIG.format(builders=bench_rest.BUILDERS,
                                                                      db_url=db_url, port=port)))
    started = _cli("start", str(basedir), cwd=workdir)
    if started.returncode:
        log = basedir / "twistd.log"
        tail = log.read_text()[-3000:] if log.exists() else ""
        raise SystemExit(f"the master did not start: {started.stderr}\n{tail}")
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        _cli("stop", str(basedir), cwd=workdir)


def _api(url: str, path: str) -> Any:
    import urllib.request

    import orjson

    with urllib.request.urlopen(url + "api/v2/" + path, timeout=60) as response:
        return orjson.loads(response.read())


def open_page(context: Any, url: str, route: str, selector: str, text: str | None) -> tuple[float, str]:
    """Open *route* in a new tab; return the seconds until *selector* (with *text*) shows, and the slowest API call."""
    page = context.new_page()
    api: list[tuple[float, str]] = []

    def finished(request: Any) -> None:
        if "/api/v2/" in request.url:
            timing = request.timing
            api.append((timing["responseEnd"] - timing["requestStart"], request.url.split("/api/v2/", 1)[1]))

    page.on("requestfinished", finished)
    try:
        locator = page.locator(selector)
        if text is not None:
            locator = locator.filter(has_text=text)
        began = time.perf_counter()
        page.goto(f"{url}#{route}")
        locator.first.wait_for(state="visible", timeout=TIMEOUT_MS)
        took = time.perf_counter() - began
        page.wait_for_load_state("networkidle", timeout=TIMEOUT_MS)
    finally:
        page.close()
    slowest = max(api, default=(0.0, "none"))
    return took, f"{slowest[0]:.0f} ms {slowest[1][:70]}"


def main(argv: list[str] | None = None) -> int:
    """Seed, start the master, time the four pages; exit 1 when one is not under the goal."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--builds", type=int, default=1_000_000, help="builds to seed (default 1000000)")
    parser.add_argument("--backend", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--runs", type=int, default=5, help="loads of each page; figures are medians (5)")
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ci-master-ui-bench-") as tmp, \
            bench_rest.database(args.backend, Path(tmp)) as db_url:
        print(f"[{args.backend}] seeding {args.builds:,} builds over {bench_rest.BUILDERS} builders", flush=True)
        bench_rest.seed(db_url, args.builds, log=lambda line: print(line, flush=True))
        with running_master(db_url, Path(tmp)) as url:
            builder = _api(url, "builders?name=builder-07")["builders"][0]
            newest = f"builders/{builder['builderid']}/builds?complete=true&order=-number&limit=1"
            build = _api(url, newest)["builds"][0]
            pages = [
                ("home", "/", ".bb-buildsticker", None),
                ("builders", "/builders", "table tbody tr", "builder-01"),
                ("builder", f"/builders/{builder['builderid']}", "table tbody tr", build["state_string"]),
                ("build", f"/builders/{builder['builderid']}/builds/{build['number']}", "#bb-step-0", None),
            ]
            print(f"master at {url}: {args.runs} loads per page in headless chromium", flush=True)
            with sync_playwright() as driver:
                browser = driver.chromium.launch(executable_path=CHROMIUM, headless=True)
                try:
                    cold_context = browser.new_context()
                    cold, cold_api = open_page(cold_context, url, "/", ".bb-buildsticker", None)
                    cold_context.close()
                    context = browser.new_context()
                    results = {}
                    for name, route, selector, text in pages:
                        runs = [open_page(context, url, route, selector, text) for _ in range(args.runs)]
                        results[name] = (route, statistics.median(t for t, _ in runs), max(runs)[1])
                    context.close()
                finally:
                    browser.close()
    print()
    print(f"== Buildbot's UI on {args.backend} with {args.builds:,} builds: time to first meaningful data, "
          f"median of {args.runs} ==")
    print(f"{'page':<10} {'route':<28} {'seconds':>8}  slowest API request (of the slowest load)")
    print(f"{'home cold':<10} {'/ (fresh browser context)':<28} {cold:>8.3f}  {cold_api}")
    for name, (route, seconds, slowest) in results.items():
        print(f"{name:<10} {route:<28} {seconds:>8.3f}  {slowest}")
    print()
    passed = True
    for name, (_, seconds, _) in results.items():
        ok = seconds < GOAL_S
        passed &= ok
        print(f"  {'PASS' if ok else 'FAIL'}  {name} page at {args.builds:,} builds: {seconds:.3f} s (< {GOAL_S:g} s)")
    print(f"  (took {time.monotonic() - began:.0f}s)")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
