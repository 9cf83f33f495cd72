"""Secrets end to end: a real ci-master with its ci-worker process, on SQLite and PostgreSQL.

Steps print secrets read from a file and from the master's environment (whole, and one split
across two output chunks); the worker gets the values, and they appear nowhere the master
stores or shows: not in the logs, the state strings, the properties, any ``/ws`` frame, the
database (the SQLite file, or a ``pg_dump``) nor twistd.log, where ``<secret:name>`` stands
instead.  A build needing a secret nobody has fails at its start, naming it.  Providers are
also checked alone, Vault against a small stand-in speaking its KV version 2 read API.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from cliutil import http_get
from liveclient import LiveClient
from localsite import database_url, forced_build, running_master

pytestmark = pytest.mark.slow  # real master processes

TOKEN = "tok-9f3e1c77d2a84b56"
SPLIT = "spl-4b1d88e0c6f2a913"
HEAD = SPLIT[:9]

CONFIG = """
from master.config import BuilderConfig, MasterConfig
from master.engine.localworkers import LocalWorker
from master.engine.properties import Interpolate
from master.engine.schedulers import ForceScheduler
from master.engine.steps import SetPropertyFromCommand, ShellCommand
from master.secrets import Secret, SecretInAFile, SecretInEnvironment

config = MasterConfig(
    db_url={db_url!r},
    www={{"interface": "127.0.0.1", "port": {port}}},
    workers=[LocalWorker("w1")],
    secretsProviders=[SecretInAFile(dirname={secrets_dir!r}), SecretInEnvironment(prefix="CI_TEST_SECRET_")],
    builders=[
        BuilderConfig(name="uses", workernames=["w1"], steps=[
            ShellCommand(name="echo", command="echo $TOKEN", env={{"TOKEN": Secret("token")}}),
            ShellCommand(name="argv", command=["echo", Interpolate("token=%(secret:token)s")]),
            # the value reaches the master in two output chunks, half a second apart
            ShellCommand(name="split", command=Interpolate(
                "printf %%s %(secret:split)s | head -c {head}; sleep 0.5;"
                " printf '%%s\\\\n' %(secret:split)s | tail -c +{tail}")),
            SetPropertyFromCommand(name="prop", command="echo $TOKEN", env={{"TOKEN": Secret("token")}},
                                   property="printed"),
        ]),
        BuilderConfig(name="missing", workernames=["w1"], steps=[
            ShellCommand(name="never", command=["echo", Secret("nowhere")]),
        ]),
    ],
    schedulers=[ForceScheduler(name="force", builderNames=["uses", "missing"])],
)
"""


@pytest.fixture
def site(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    (secrets_dir / "token").write_text(TOKEN + "\n")
    (secrets_dir / "token").chmod(0o600)
    db_url = database_url(backend, request, "secrets")
    with running_master(tmp_path, CONFIG, env={"CI_TEST_SECRET_split": SPLIT}, db_url=db_url,
                        secrets_dir=str(secrets_dir), head=len(HEAD), tail=len(HEAD) + 1) as master:
        pg = request.getfixturevalue("pg_server") if backend == "postgresql" else None
        yield {"port": master["port"], "master": master["dir"], "db_url": db_url, "pg": pg}


def raw(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
        return response.read().decode()


def database_text(site: dict[str, Any]) -> bytes:
    """Every byte the database holds: the SQLite files, or a dump of the PostgreSQL database."""
    if site["pg"] is None:
        return b"".join(p.read_bytes() for p in site["master"].glob("state.sqlite*"))
    beside = os.path.join(os.path.dirname(site["pg"]._pg_ctl), "pg_dump")
    pg_dump = beside if os.access(beside, os.X_OK) else shutil.which("pg_dump")
    assert pg_dump, "pg_dump is needed (Debian: postgresql-client)"
    return subprocess.run([pg_dump, site["db_url"]], capture_output=True, check=True, timeout=60).stdout


@pytest_twisted.ensureDeferred
async def test_secrets_reach_the_command_and_nothing_stored_or_shown(site: dict[str, Any]) -> None:
    from twisted.internet import threads

    port = site["port"]
    watcher = await LiveClient(f"ws://127.0.0.1:{port}/ws").connect()
    for path in ("builds/*/*", "steps/*/*", "logs/*/*", "builds/*/properties", "buildsets/*/*",
                 "buildrequests/*/*", "builds/*/steps/*/*"):
        assert (await watcher.command("startConsuming", path=path))["code"] == 200
    build = await threads.deferToThread(forced_build, port, "uses")
    assert build["results"] == 0, build

    def read_back() -> dict[str, str]:
        steps = http_get(port, f"/api/v2/builds/{build['buildid']}/steps")["steps"]
        texts = {s["name"]: raw(port, f"/api/v2/steps/{s['stepid']}/logs/stdio/raw") for s in steps}
        texts["rest"] = json.dumps([steps, http_get(port, f"/api/v2/builds/{build['buildid']}?property=*")])
        return texts

    texts = await threads.deferToThread(read_back)
    # the worker had the values: what it printed is there, redacted
    assert "<secret:token>" in texts["echo"] and "<secret:token>" in texts["argv"]
    assert "\n<secret:split>\n" in texts["split"]  # joined from its two chunks, then redacted
    assert '"printed": ["<secret:token>"' in texts["rest"]
    frames = []
    while watcher.events.pending:
        frames.append(json.dumps(await watcher.next_event()))
    watcher.close()
    assert any("printed" in frame for frame in frames)  # the frames of this build were seen
    everything = {**texts, "frames": "\n".join(frames), "twistd.log": (site["master"] / "twistd.log").read_text()}
    for where, text in everything.items():
        for value in (TOKEN, SPLIT, HEAD):
            assert value not in text, f"{value} in {where}"
    stored = await threads.deferToThread(database_text, site)
    assert b"<secret:token>" in stored
    for value in (TOKEN, SPLIT, HEAD):
        assert value.encode() not in stored

    missing = await threads.deferToThread(forced_build, port, "missing")
    assert missing["results"] == 4  # exception
    assert "'nowhere' not found" in missing["state_string"]
    steps = http_get(port, f"/api/v2/builds/{missing['buildid']}/steps")["steps"]
    assert steps == []  # it failed before its first step


class VaultStandIn(BaseHTTPRequestHandler):
    """Answers Vault's KV v2 read (``GET /v1/MOUNT/data/PATH``) for one token and one secret."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.headers.get("X-Vault-Token") != "root-token":
            self.send_response(403)
            body = {"errors": ["permission denied"]}
        elif self.path.split("?")[0] == "/v1/kv/data/ci/deploy":
            self.send_response(200)
            body = {"data": {"data": {"value": "from-vault"}, "metadata": {"version": 1, "deletion_time": ""}}}
        else:
            self.send_response(404)
            body = {"errors": []}
        payload = json.dumps(body).encode()
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def vault() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), VaultStandIn)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest_twisted.ensureDeferred
async def test_providers_read_files_environment_and_vault(tmp_path: Path, vault: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from master.secrets import SecretError, SecretInAFile, SecretInEnvironment, SecretInVault, read_secrets

    (tmp_path / "a").write_text("file-value\n")
    (tmp_path / "a").chmod(0o600)
    (tmp_path / "open").write_text("x")
    (tmp_path / "open").chmod(0o644)
    monkeypatch.setenv("P_b", "env-value")
    providers = [SecretInAFile(str(tmp_path)), SecretInEnvironment("P_"), SecretInVault(vault, "root-token", "kv/ci")]
    assert await read_secrets(providers, ["a", "b", "deploy"]) == {"a": "file-value", "b": "env-value",
                                                                   "deploy": "from-vault"}
    with pytest.raises(SecretError, match="'nothing' not found"):
        await read_secrets(providers, ["nothing"])
    with pytest.raises(SecretError, match="too open"):
        await read_secrets(providers, ["open"])
    with pytest.raises(SecretError, match="bad secret name"):
        await read_secrets(providers, ["../a"])
    with pytest.raises(SecretError, match="Vault at .* failed") as refused:
        await read_secrets([SecretInVault(vault, "wrong-token", "kv/ci")], ["deploy"])
    assert "wrong-token" not in str(refused.value)


@pytest_twisted.ensureDeferred
async def test_redaction_of_values_and_lines_and_chunks() -> None:
    from master.engine.steps import StepLog
    from master.secrets import Redactor

    redact = Redactor({"a": "abcdef", "key": "line-one\nline-two", "empty": ""})
    assert redact("x abcdef y abcdef") == "x <secret:a> y <secret:a>"
    assert redact("line-one") == "<secret:key>"
    written: list[str] = []

    class Updates:
        async def append_log(self, logid: int, text: str) -> None:
            written.append(text)

    log = StepLog(type("Data", (), {"updates": Updates()})(), 1, redact)
    for chunk in ("x abc", "def y\nab", "cdef"):
        log.add("o", chunk)
    await log.flush()
    assert "".join(written) == "ox <secret:a> y\n"
