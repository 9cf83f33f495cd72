"""Docker for the latent-worker tests and benchmark: the worker image (built once, cached) and a master.

The image comes from ``contrib/docker/build-image``, which builds it only when the worker's
code changed (its tag is a hash of its inputs), so a test session pays for it at most once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

from cliutil import free_port, http_get, run
from waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent
BUILD_IMAGE = ROOT / "contrib" / "docker" / "build-image"
LABEL = "org.ci-master.master"
MARKER = "/etc/ci-worker-image"  # exists only inside the image

_image: list[str] = []


def worker_image() -> str:
    """The tag of the ci-worker image of this checkout, built if missing (once per process)."""
    if not _image:
        done = subprocess.run([sys.executable, str(BUILD_IMAGE)], capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            raise RuntimeError(f"contrib/docker/build-image failed:\n{done.stderr[-3000:]}")
        _image.append(done.stdout.strip().splitlines()[-1])
    return _image[0]


def containers(master_name: str) -> list[str]:
    """Ids of the containers (running or not) labelled as the master's: ``docker ps -a --filter label=...``."""
    done = subprocess.run(["docker", "ps", "-a", "-q", "--no-trunc", "--filter", f"label={LABEL}={master_name}"],
                          capture_output=True, text=True, timeout=60, check=True)
    return done.stdout.split()


HEADER = """
from master.config import BuilderConfig, MasterConfig
from master.engine.docker import DockerLatentWorker
from master.engine.schedulers import ForceScheduler
from master.engine.steps import ShellCommand

# the marker exists only in the image; the container's id shows in its mounts (resolv.conf, hostname)
SHOW = ShellCommand(name="show",
                   command="cat {marker} && grep -o 'containers/[0-9a-f]*' /proc/self/mountinfo | head -1")
"""


def master_cfg(body: str, port: int) -> str:
    """A master.cfg: the imports and the SHOW step, then *body* (which may use {port} and {image})."""
    return textwrap.dedent(HEADER.format(marker=MARKER)) + textwrap.dedent(body).format(
        port=port, image=worker_image())


class Master:
    """A ``ci-master`` daemon in *directory* (created), started and stopped through the real CLI."""

    def __init__(self, tmp_path: Path, body: str) -> None:
        self.port = free_port()
        self.dir = tmp_path / "master"
        self.cwd = tmp_path
        assert run("create-master", str(self.dir), cwd=tmp_path).returncode == 0
        (self.dir / "master.cfg").write_text(master_cfg(body, self.port))

    def start(self) -> None:
        """Start the daemon (it has recovered and removed leftovers once this returns)."""
        started = run("start", str(self.dir), cwd=self.cwd)
        assert started.returncode == 0, started.stderr + started.stdout

    def stop(self) -> None:
        """Stop the daemon if it runs."""
        run("stop", str(self.dir), cwd=self.cwd)

    def kill(self) -> None:
        """kill -9 the daemon."""
        pid = int((self.dir / "twistd.pid").read_text())
        os.kill(pid, signal.SIGKILL)
        def gone() -> bool:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            return False

        wait_until(gone, f"master pid {pid} to go after SIGKILL", interval=0.1)

    def get(self, path: str) -> dict:
        """GET a JSON document."""
        return http_get(self.port, path)

    @property
    def name(self) -> str:
        """The master's name (its containers' label)."""
        return self.get("/api/v2/masters?field=name")["masters"][0]["name"]

    def call(self, path: str, method: str, params: dict) -> object:
        """Call JSON-RPC *method* on *path*; its result."""
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/api/v2/{path}", body,
                                         {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            answer = json.load(response)
        assert "result" in answer, answer
        return answer["result"]

    def force(self, builderid: int) -> int:
        """Force a build of *builderid*; the id of its build request."""
        return int(next(iter(self.call("forceschedulers/force", "force", {"builderid": builderid})[1].values())))

    def builder_id(self, name: str) -> int:
        """The id of builder *name*."""
        return self.get(f"/api/v2/builders?name={name}&field=builderid")["builders"][0]["builderid"]

    def log_text(self, buildid: int, step: str) -> str:
        """The stdio log of step *step* of build *buildid*, as text."""
        steps = self.get(f"/api/v2/builds/{buildid}/steps?field=stepid&field=name")["steps"]
        stepid = next(s["stepid"] for s in steps if s["name"] == step)
        chunks = self.get(f"/api/v2/steps/{stepid}/logs/stdio/contents")["logchunks"]
        return "".join(c["content"] for c in chunks)
