"""A plugin shipped in a separate package, loaded by entry point and by dotted name, served by the daemon;
users and tokens managed with ``ci-master user`` and enforced by the running master."""

from __future__ import annotations

import json
import textwrap
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from cliutil import free_port, http_get, run, use_port

pytestmark = pytest.mark.slow  # real ci-master processes

PACKAGE = '''
"""A ci-master plugin package made by the test suite."""

import sqlalchemy as sa
from klein import Klein

from master.data.base import Endpoint, Field, Kind, ResourceType
from master.data.types import Integer, String
from master.plugin import Plugin

metadata = sa.MetaData()
widgets = sa.Table(
    "ext_widgets", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
)


class Widgets(ResourceType):
    name = "widget"
    plural = "widgets"
    id_field = "widgetid"
    event_paths = ("widgets/:widgetid",)

    def declare(self):
        fields = {"widgetid": Field(Integer(), widgets.c.id), "name": Field(String(), widgets.c.name)}
        return widgets, fields, [Endpoint("/widgets", Kind.COLLECTION), Endpoint("/widgets/n:widgetid")], {}


class ExtPlugin(Plugin):
    name = "ext"
    app = Klein()

    def __init__(self, greeting="hello"):
        self.greeting = greeting

    def resource_types(self):
        return [Widgets()]

    def metadata(self):
        return metadata

    def web_resources(self, data):
        return {"ext": self.app.resource()}

    @app.route("/greeting")
    def greet(self, request):
        request.setHeader("Content-Type", "application/json")
        return b'{"greeting": "' + self.greeting.encode() + b'"}'
'''


@pytest.fixture
def package(tmp_path: Path) -> dict[str, str]:
    """An installed package 'extplug' offering the plugin 'ext' through the ci_master.plugins entry point."""
    site = tmp_path / "site"
    (site / "extplug").mkdir(parents=True)
    (site / "extplug" / "__init__.py").write_text(PACKAGE)
    info = site / "extplug-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: extplug\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[ci_master.plugins]\next = extplug:ExtPlugin\n")
    return {"PYTHONPATH": str(site)}


@pytest.fixture
def master_dir(tmp_path: Path, package: dict[str, str]) -> Iterator[Path]:
    done = run("create-master", "m", cwd=tmp_path, env=package)
    assert done.returncode == 0, done.stderr
    directory = tmp_path / "m"
    yield directory
    run("stop", str(directory), cwd=tmp_path, env=package)


def set_config(master_dir: Path, plugins: str, extra: str = "") -> None:
    """Rewrite master.cfg from its first version with *plugins* and *extra* lines."""
    cfg, original = master_dir / "master.cfg", master_dir / "master.cfg.orig"
    if not original.exists():
        original.write_text(cfg.read_text())
    text = original.read_text()
    start = text.index("    plugins=")
    end = text.index("\n", start)
    cfg.write_text(text[:start] + f"    plugins={plugins}," + text[end:] + textwrap.dedent(extra))


def test_plugin_by_entry_point_then_by_dotted_name(master_dir: Path, package: dict[str, str]) -> None:
    port = free_port()
    use_port(master_dir, port)
    set_config(master_dir, '["ext"]')
    listed = run("plugins", str(master_dir), cwd=master_dir, env=package)
    assert listed.returncode == 0, listed.stderr
    assert "ext  (extplug:ExtPlugin)  resource types: widgets; tables: ext_widgets" in listed.stdout
    assert "ext  (extplug:ExtPlugin)  enabled" in listed.stdout

    started = run("start", str(master_dir), cwd=master_dir, env=package)
    assert started.returncode == 0, started.stderr
    assert http_get(port, "/api/v2/widgets") == {"widgets": [], "meta": {"total": 0}}
    assert http_get(port, "/ext/greeting") == {"greeting": "hello"}
    assert "widgets" in [link["name"] for link in http_get(port, "/api/v2")["rootlinks"]]

    # the same plugin by dotted name with other settings: reconfig replaces it in place
    bonjour = "\nconfig.plugins[0] = __import__('extplug').ExtPlugin('bonjour')\n"
    set_config(master_dir, '["extplug:ExtPlugin"]', bonjour)
    done = run("reconfig", str(master_dir), cwd=master_dir, env=package)
    assert done.returncode == 0, done.stderr
    assert "plugins -1 +1" in done.stdout
    assert http_get(port, "/ext/greeting") == {"greeting": "bonjour"}

    set_config(master_dir, '["extplug.ExtPlugin"]')
    assert run("reconfig", str(master_dir), cwd=master_dir, env=package).returncode == 0
    assert http_get(port, "/ext/greeting") == {"greeting": "hello"}

    set_config(master_dir, "[]")
    assert run("reconfig", str(master_dir), cwd=master_dir, env=package).returncode == 0
    with pytest.raises(urllib.error.HTTPError) as gone:
        http_get(port, "/ext/greeting")
    assert gone.value.code == 404


def test_unknown_plugins_are_named(master_dir: Path, package: dict[str, str]) -> None:
    set_config(master_dir, '["nope"]')
    done = run("checkconfig", str(master_dir), cwd=master_dir, env=package)
    assert done.returncode == 1
    assert "plugins[0]: no plugin named 'nope' (entry points: bileto, dci, evergreen, ext, selfserve;" in done.stderr
    set_config(master_dir, '["extplug:Missing"]')
    done = run("checkconfig", str(master_dir), cwd=master_dir, env=package)
    assert done.returncode == 1 and "extplug has no 'Missing'" in done.stderr


def post_json(port: int, path: str, body: dict, token: str | None = None) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", json.dumps(body).encode(), headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def test_users_and_tokens_from_the_cli(master_dir: Path, package: dict[str, str]) -> None:
    port = free_port()
    use_port(master_dir, port)
    cfg = master_dir / "master.cfg"
    cfg.write_text(cfg.read_text() + textwrap.dedent("""
        from master.www.auth import Auth, ControlRule
        config.auth = Auth(rules=[ControlRule(roles=["operator"], actions=["pause", "unpause"])])
    """))
    added = run("user", "add", str(master_dir), "ops", "--role", "operator", "--password-stdin", cwd=master_dir,
                stdin="pw\n")
    assert added.returncode == 0, added.stderr
    assert run("user", "add", str(master_dir), "guest", "--no-password", cwd=master_dir).returncode == 0
    ops_token = run("user", "token", str(master_dir), "ops", cwd=master_dir).stdout.splitlines()[-1]
    guest_token = run("user", "token", str(master_dir), "guest", cwd=master_dir).stdout.splitlines()[-1]
    listed = run("user", "list", str(master_dir), cwd=master_dir).stdout
    assert "ops  roles: operator  tokens:" in listed and "guest  roles: none" in listed
    assert ops_token not in (master_dir / "users.json").read_text()

    assert run("start", str(master_dir), cwd=master_dir).returncode == 0
    body = {"jsonrpc": "2.0", "id": 1, "method": "pause", "params": {}}
    code, reply = post_json(port, "/api/v2/workers/1", body)
    assert code == 401 and reply["error"]["code"] == -32001
    code, reply = post_json(port, "/api/v2/workers/1", body, guest_token)
    assert code == 403 and reply["error"]["code"] == -32003
    assert http_get(port, "/api/v2/workers/1")["workers"][0]["paused"] is False
    code, reply = post_json(port, "/api/v2/workers/1", body, ops_token)
    assert code == 200 and reply["result"] is None, reply
    assert http_get(port, "/api/v2/workers/1")["workers"][0]["paused"] is True

    # a token revoked from the CLI stops working at once, without a reconfig
    token_id = run("user", "list", str(master_dir), cwd=master_dir).stdout.split("ops  roles: operator  tokens: ")[1]
    revoked = run("user", "revoke", str(master_dir), token_id.split()[0], cwd=master_dir)
    assert revoked.returncode == 0 and "revoked" in revoked.stdout
    code, reply = post_json(port, "/api/v2/workers/1", body, ops_token)
    assert code == 401 and "revoked" in reply["error"]["message"]
