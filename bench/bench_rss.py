"""Memory benchmark: the RSS of the master made from ``master.cfg.sample`` a few seconds after start.

Usage::

    python bench/bench_rss.py [--wait S] [--importtime N]

It runs ``ci-master create-master`` in a temporary directory (the sample's four plugins and
its local worker, SQLite), moves the web port to a free one, starts the master as a daemon
(``ci-master start``, twistd, as users run it), waits ``--wait`` seconds (default 5), and
prints the daemon's RSS (``/proc/<pid>/status``, the master process alone: the local
worker is a process of its own) and the modules it has loaded.  ``--importtime N`` also
runs the master once in the foreground under ``python -X importtime`` and lists the N
costliest top-level imports (cumulative microseconds), to find what to import lazily.
Exits 1 when the RSS is not under 80 MB (issue 17, item 6).
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RSS_MB = 80


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _cli(*args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-P", "-m", "master.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, check=False)


def status_mb(pid: int, key: str = "VmRSS") -> float:
    """A memory figure of process *pid* in MB from ``/proc/<pid>/status`` (VmRSS, VmHWM...)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {key} for {pid}")


def make_master(basedir: Path) -> int:
    """Create a master from the sample in *basedir* on a free port; return the port."""
    created = _cli("create-master", str(basedir))
    if created.returncode:
        raise SystemExit(f"create-master failed: {created.stderr}")
    port = _free_port()
    cfg = basedir / "master.cfg"
    text, count = re.subn(r'"port":\s*\d+', f'"port": {port}', cfg.read_text())
    if count != 1:
        raise SystemExit("cannot find the www port in master.cfg")
    cfg.write_text(text)
    return port


def importtime(basedir: Path, top: int, seconds: float) -> None:
    """Run the master in the foreground under -X importtime for *seconds*; print the costliest imports."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-P", "-X", "importtime", "-m", "master.cli", "start", "--nodaemon",
                             str(basedir)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(seconds)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    costs = []
    for line in err.splitlines():
        match = re.match(r"import time:\s+\d+\s+\|\s+(\d+)\s+\|( *)(\S+)", line)
        if match and len(match.group(2)) <= 3:  # top-level and their direct imports
            costs.append((int(match.group(1)), match.group(3).strip()))
    print(f"costliest imports (cumulative us, foreground start, first {top}):")
    for cost, name in sorted(costs, reverse=True)[:top]:
        print(f"  {cost:>9}  {name}")


def main(argv: list[str] | None = None) -> int:
    """Create, start, measure and stop the sample master; exit 1 when its RSS is not under 80 MB."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wait", type=float, default=5.0, help="seconds after start before measuring (5)")
    parser.add_argument("--importtime", type=int, default=0, metavar="N", help="also list the N costliest imports")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ci-master-rss-") as tmp:
        basedir = Path(tmp) / "master"
        make_master(basedir)
        if args.importtime:
            importtime(basedir, args.importtime, args.wait)
        began = time.monotonic()
        started = _cli("start", str(basedir))
        if started.returncode:
            raise SystemExit(f"start failed: {started.stderr}{(basedir / 'twistd.log').read_text()[-2000:]}")
        try:
            pid = int((basedir / "twistd.pid").read_text())
            print(f"started in {time.monotonic() - began:.1f}s (pid {pid}); waiting {args.wait:g}s", flush=True)
            time.sleep(args.wait)
            rss, peak = status_mb(pid), status_mb(pid, "VmHWM")
            maps = Path(f"/proc/{pid}/maps").read_text()
            modules = len({line.split()[-1] for line in maps.splitlines() if ".so" in line.rsplit("/", 1)[-1]})
        finally:
            _cli("stop", str(basedir))
    passed = rss < RSS_MB
    print(f"sample master RSS {args.wait:g}s after start: {rss:.1f} MB (peak {peak:.1f} MB; "
          f"{modules} shared objects mapped)")
    print(f"  {'PASS' if passed else 'FAIL'}  RSS after start: {rss:.1f} MB (< {RSS_MB} MB)")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
