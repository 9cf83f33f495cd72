"""DCI on a real ci-master daemon started from the sample master.cfg: credentials made by the
plugin's command line, then ``dcictl`` against the running master."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cliutil import free_port, run, use_port

pytestmark = pytest.mark.slow  # a real master and dcictl

DCICTL = str(Path(sys.executable).parent / "dcictl")


def dcictl(env: dict[str, str], *args: str) -> object:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DCI_", "SSO_"))}
    done = subprocess.run([DCICTL, "--format", "json", *args], env={**clean, **env},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_dcictl_against_a_running_master_of_the_sample_config(tmp_path: Path) -> None:
    master_dir = tmp_path / "m"
    assert run("create-master", str(master_dir), cwd=tmp_path).returncode == 0
    port = free_port()
    use_port(master_dir, port)
    started = run("start", str(master_dir), cwd=tmp_path)
    assert started.returncode == 0, started.stderr
    try:
        made = subprocess.run([sys.executable, "-m", "plugins.dci", "remoteci-create", "lab1", "--team", "Lab",
                               "--master", str(master_dir)], capture_output=True, text=True, timeout=60)
        assert made.returncode == 0, made.stderr
        env = dict(line.split("=", 1) for line in made.stdout.split() if line.startswith("DCI_"))
        assert env["DCI_CLIENT_ID"].startswith("remoteci/")
        lab = {**env, "DCI_CS_URL": f"http://127.0.0.1:{port}"}
        from dciclient.v1.api import context as dci_context
        from dciclient.v1.api import identity

        ctx = dci_context.build_signature_context(lab["DCI_CS_URL"], env["DCI_CLIENT_ID"], env["DCI_API_SECRET"],
                                                  max_retries=0)
        who = identity.get(ctx).json()["identity"]
        assert who["id"] == env["DCI_CLIENT_ID"].split("/", 1)[1]
        assert [team["team_name"] for team in who["teams"].values()] == ["Lab"]
        assert dcictl(lab, "topic-list") == {"topics": [], "_meta": {"count": 0}}
        wrong = dcictl({**lab, "DCI_API_SECRET": "x" * 64}, "topic-list")
        assert wrong["status_code"] == 400 and "signature" in wrong["message"]  # dcictl prints the server's error
    finally:
        assert run("stop", str(master_dir), cwd=tmp_path).returncode == 0
