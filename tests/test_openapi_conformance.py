"""The OpenAPI document against the server, as a generated client sees it: schemathesis over
``/api/v2/openapi.json`` of a real master (the sample config: a builder, a local worker, the four
bundled plugins) on SQLite, 20 examples per operation, every check.  No 5xx, no status or body
outside the document, no request the document allows refused, none it forbids accepted.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from cliutil import free_port, run, use_port
from waiting import wait_until

pytestmark = pytest.mark.slow  # a real master and schemathesis

EXAMPLES = 20
"""Examples per operation and phase (bounded: the run takes about a minute and a half here)."""

SEED = 1
"""A fixed seed, so that a failure is reproduced by running the test again."""


def _post(port: int, path: str, body: dict) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def _get(port: int, path: str) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
        return json.load(response)


def test_schemathesis_finds_nothing_outside_the_document(tmp_path: Path) -> None:
    assert run("create-master", "m", cwd=tmp_path).returncode == 0
    master_dir = tmp_path / "m"
    port = free_port()
    use_port(master_dir, port)
    started = run("start", str(master_dir), cwd=tmp_path)
    assert started.returncode == 0, started.stderr
    try:
        # a finished build first, so that ids 1 (the document's examples) name a builder, a build, a step, a log
        force = {"jsonrpc": "2.0", "id": 1, "method": "force", "params": {"builderid": 1}}
        assert "result" in _post(port, "/api/v2/forceschedulers/force", force)
        wait_until(lambda: _get(port, "/api/v2/builds?complete=true")["builds"], "the demo build to finish",
                   timeout=60, interval=0.5)
        schema = f"http://127.0.0.1:{port}/api/v2/openapi.json"
        operations = sum(len(methods) for methods in _get(port, "/api/v2/openapi.json")["paths"].values())
        done = subprocess.run(
            [sys.executable, "-m", "schemathesis.cli", "run", schema, "--checks", "all",
             "--max-examples", str(EXAMPLES), "--seed", str(SEED), "--no-color", "--request-timeout", "20"],
            cwd=tmp_path, capture_output=True, text=True, timeout=600,
        )
    finally:
        assert run("stop", str(master_dir), cwd=tmp_path).returncode == 0
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-20000:]
    tested = re.search(r"Tested: (\d+)", output)
    assert tested and int(tested.group(1)) == operations > 100, output[-3000:]
    assert "failures" not in output.splitlines()[-1], output[-3000:]
