"""Running the real ``ci-master`` command in tests, and talking to the master it starts."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

CLI = [sys.executable, "-P", "-m", "master.cli"]  # -P: a directory named "master" in cwd is not the package


def free_port() -> int:
    """A TCP port of 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(
    *args: str, cwd: Path, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess:
    """Run ``ci-master *args`` to completion; *env* adds to the environment."""
    return subprocess.run(
        [*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=60, input=stdin,
        env={**os.environ, **(env or {})},
    )


def use_port(master_dir: Path, port: int) -> None:
    """Make the master of *master_dir* listen on *port* instead of the sample's 8010."""
    cfg = master_dir / "master.cfg"
    cfg.write_text(cfg.read_text().replace('"port": 8010', f'"port": {port}'))


def http_get(port: int, path: str) -> dict:
    """GET a JSON document from the master on *port*."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
        return json.load(response)
