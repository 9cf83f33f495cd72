"""Operations: Prometheus metrics at /metrics, the access log, and --version, on real master processes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from cliutil import free_port, http_get, run
from prometheus_client.parser import text_string_to_metric_families
from test_end_to_end import rpc
from test_multimaster import kill_processes_under
from waiting import wait_until

from master.config import ConfigError, load_config
from master.metrics import MasterMetrics

README = Path(__file__).resolve().parent.parent / "README.md"

CONFIG = """
from master.config import BuilderConfig, MasterConfig
from master.engine.localworkers import LocalWorker
from master.engine.properties import Interpolate
from master.engine.schedulers import ForceScheduler
from master.engine.steps import ShellCommand
from master.www.auth import Auth, ControlRule, ReadRule

config = MasterConfig(
    db_url={db_url!r},
    www={www!r},
    workers=[LocalWorker("local")],
    builders=[BuilderConfig(name="demo", workernames=["local"], steps=[
        ShellCommand(name="hello", command=["echo", Interpolate("hello, %(prop:greeting:-world)s")]),
    ])],
    schedulers=[ForceScheduler(name="force", builderNames=["demo"])],
    {extra}
)
"""


def make_master(root: Path, name: str, db_url: str, extra: str = "", **www: Any) -> dict[str, Any]:
    port = free_port()
    master_dir = root / name
    assert run("create-master", str(master_dir), cwd=root).returncode == 0
    settings = {"interface": "127.0.0.1", "port": port, **www}
    (master_dir / "master.cfg").write_text(textwrap.dedent(CONFIG.format(db_url=db_url, www=settings, extra=extra)))
    upgraded = run("upgrade-master", str(master_dir), cwd=root)
    assert upgraded.returncode == 0, upgraded.stderr
    started = run("start", str(master_dir), cwd=root)
    assert started.returncode == 0, started.stderr
    return {"dir": master_dir, "port": port}


@pytest.fixture
def masters(tmp_path: Path) -> Iterator[list[dict[str, Any]]]:
    """The masters a test starts (stopped, with their local workers, at its end)."""
    started: list[dict[str, Any]] = []
    try:
        yield started
    finally:
        for master in started:
            run("stop", str(master["dir"]), cwd=tmp_path)
        kill_processes_under(tmp_path)


def scrape(port: int, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """``/metrics`` parsed: {sample name with sorted labels: value} plus the families under "__families__"."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers=headers or {})
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.headers["Content-Type"].startswith("text/plain")
        text = answer.read().decode()
    families = list(text_string_to_metric_families(text))
    samples: dict[str, Any] = {"__families__": families}
    for family in families:
        for sample in family.samples:
            samples[sample.name + repr(sorted(sample.labels.items()))] = sample.value
    return samples


def value(samples: dict[str, Any], name: str, **labels: str) -> float:
    return samples.get(name + repr(sorted(labels.items())), 0.0)


def exposed_names(samples: dict[str, Any]) -> set[str]:
    # the parser gives the _created series of a metric without labels a family of its own
    families = [f for f in samples["__families__"] if not f.name.endswith("_created")]
    return {f.name + "_total" if f.type == "counter" else f.name for f in families}


def documented_metrics() -> set[str]:
    """The metric names the README's "Metrics" table lists."""
    text = README.read_text()
    table = text[text.index("### Metrics"):]
    table = table[:table.index("\n#")]
    return set(re.findall(r"^\| `(ci_master_[a-z_]+)`", table, re.M))


def force_and_wait(port: int) -> dict[str, Any]:
    result = rpc(port, "forceschedulers/force", "force", builderid=1)
    assert "result" in result, result

    def finished() -> dict[str, Any] | None:
        builds = http_get(port, "/api/v2/builds?complete=true&order=-buildid&limit=1")["builds"]
        return builds[0] if builds else None

    return wait_until(finished, timeout=60)


@pytest.mark.slow  # runs ci-master
def test_metrics_after_a_forced_build_on_each_backend(tmp_path: Path, db_url: str, backend: str, masters) -> None:
    master = make_master(tmp_path, "m", db_url)
    masters.append(master)
    port = master["port"]
    before = scrape(port)
    # every builder's series exist before its first build, at zero
    zero = "ci_master_builds_finished_total" + repr(sorted({"builder": "demo", "result": "success"}.items()))
    assert before[zero] == 0
    # every metric is exposed from the start, and every one is documented
    assert documented_metrics() == exposed_names(before)
    wait_until(lambda: value(scrape(port), "ci_master_workers_connected") == 1, timeout=60)

    build = force_and_wait(port)
    assert build["results"] == 0
    after = scrape(port)
    finished = {"builder": "demo", "result": "success"}
    assert value(after, "ci_master_builds_finished_total", **finished) == \
        value(before, "ci_master_builds_finished_total", **finished) + 1
    assert value(after, "ci_master_build_duration_seconds_count", builder="demo") == \
        value(before, "ci_master_build_duration_seconds_count", builder="demo") + 1
    assert value(after, "ci_master_build_duration_seconds_sum", builder="demo") > 0
    assert value(after, "ci_master_builds_running") == 0
    assert value(after, "ci_master_buildrequests_pending") == 0
    assert value(after, "ci_master_log_lines_stored_total") > 0
    assert value(after, "ci_master_events_published_total", type="builds") >= 2  # new, finished
    dialect = "sqlite" if backend == "sqlite" else "postgresql"
    assert value(after, "ci_master_db_statement_duration_seconds_count", backend=dialect, operation="transaction") > 0
    assert value(after, "ci_master_jsonrpc_actions_total", action="force", outcome="ok") == 1
    route = "/api/v2/forceschedulers/i:schedulername"
    assert value(after, "ci_master_http_requests_total", route=route, method="POST", status="200") == 1
    assert value(after, "ci_master_http_request_duration_seconds_count", route=route, method="POST") == 1
    # REST reads are labelled by their pattern, not their path
    assert value(after, "ci_master_http_requests_total", route="/api/v2/builds", method="GET", status="200") >= 1


@pytest.mark.slow  # runs ci-master
def test_unknown_actions_and_paths_keep_labels_bounded(tmp_path: Path, masters) -> None:
    master = make_master(tmp_path, "m", f"sqlite:///{tmp_path}/state.sqlite")
    masters.append(master)
    port = master["port"]
    for method in ("no-such-action-1", "no-such-action-2"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            rpc(port, "forceschedulers/force", method)
        assert refused.value.code == 400
    for path in ("/no/such/thing/1", "/no/such/thing/2", "/api/v2/nosuch/7"):
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10)
        assert missing.value.code == 404
    post = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", b"{}", {"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as not_allowed:
        urllib.request.urlopen(post, timeout=10)
    assert not_allowed.value.code == 405
    assert "not allowed" in not_allowed.value.read().decode()
    http_get(port, "/api/v2/openapi.json")
    samples = scrape(port)
    assert value(samples, "ci_master_jsonrpc_actions_total", action="(unknown)", outcome="unknown_action") == 2
    # what is not a REST endpoint is labelled by where it is mounted
    assert value(samples, "ci_master_http_requests_total", route="/api/v2", method="GET", status="200") == 1
    assert value(samples, "ci_master_http_requests_total", route="/metrics", method="POST", status="405") == 1
    assert value(samples, "ci_master_http_requests_total", route="unmatched", method="GET", status="404") == 3
    labels = {str(s.labels) for f in samples["__families__"] for s in f.samples}
    assert not any("no-such" in text or "thing" in text for text in labels)


@pytest.mark.postgresql
def test_journal_lag_between_two_masters_on_postgresql(tmp_path: Path, pg_server, masters) -> None:
    db_url = pg_server.create_database(f"metrics_{os.getpid()}_{time.monotonic_ns()}")
    a = make_master(tmp_path, "a", db_url)
    masters.append(a)
    b = make_master(tmp_path, "b", db_url)
    masters.append(b)
    before = value(scrape(b["port"]), "ci_master_event_journal_lag_seconds_count")
    rpc(a["port"], "forceschedulers/force", "force", builderid=1)
    # b delivers a's events from the journal (their NOTIFY wakes it) and measures how late they came
    wait_until(lambda: value(scrape(b["port"]), "ci_master_event_journal_lag_seconds_count") > before, timeout=60)
    lag = scrape(b["port"])
    assert value(lag, "ci_master_event_journal_lag_seconds_sum") >= 0
    # a's own events are not lag
    assert value(scrape(a["port"]), "ci_master_events_published_total", type="buildsets") >= 1


@pytest.mark.slow  # runs ci-master
def test_metrics_follow_read_rules_unless_public(tmp_path: Path, masters) -> None:
    extra = 'auth=Auth(rules=[ControlRule(roles=["admin"])], read_rules=[ReadRule(roles=["admin"])]),'
    master = make_master(tmp_path, "m", f"sqlite:///{tmp_path}/state.sqlite", extra=extra)
    masters.append(master)
    with pytest.raises(urllib.error.HTTPError) as refused:
        scrape(master["port"])
    assert refused.value.code == 401
    assert refused.value.headers["WWW-Authenticate"].startswith("Bearer")
    # a user whose roles the read rules name may scrape
    assert run("user", "add", str(master["dir"]), "prom", "--role", "admin", "--no-password",
               cwd=tmp_path).returncode == 0
    made = run("user", "token", str(master["dir"]), "prom", cwd=tmp_path)
    token = re.search(r"cim_\S+", made.stdout).group(0)
    assert "ci_master_builds_running" in exposed_names(scrape(master["port"], {"Authorization": f"Bearer {token}"}))

    cfg = master["dir"] / "master.cfg"
    cfg.write_text(cfg.read_text().replace(extra, extra + "\n    metrics_public=True,"))
    reconfigured = run("reconfig", str(master["dir"]), cwd=tmp_path)
    assert reconfigured.returncode == 0, reconfigured.stderr
    assert "ci_master_builds_running" in exposed_names(scrape(master["port"]))
    # the API itself stays closed
    with pytest.raises(urllib.error.HTTPError) as still:
        http_get(master["port"], "/api/v2/builders")
    assert still.value.code == 401


COMBINED = re.compile(
    r'^127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "GET /api/v2/builders\?limit=1 HTTP/1\.1" '
    r'200 \d+ "http://example\.org/page" "smoke-agent/1\.0"$', re.M
)


@pytest.mark.slow  # runs ci-master
def test_access_log_in_combined_format_and_none_in_the_masters_log(tmp_path: Path, masters) -> None:
    quiet = make_master(tmp_path, "quiet", f"sqlite:///{tmp_path}/quiet.sqlite")
    masters.append(quiet)
    logged = make_master(tmp_path, "logged", f"sqlite:///{tmp_path}/logged.sqlite", access_log="logs/access.log")
    masters.append(logged)
    for master in (quiet, logged):
        request = urllib.request.Request(
            f"http://127.0.0.1:{master['port']}/api/v2/builders?limit=1",
            headers={"User-Agent": "smoke-agent/1.0", "Referer": "http://example.org/page"},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 200
    access = wait_until(lambda: (logged["dir"] / "logs" / "access.log").read_text()
                        if (logged["dir"] / "logs" / "access.log").exists() else None, timeout=10)
    assert COMBINED.search(access), access
    for master in (quiet, logged):
        assert "/api/v2/builders" not in (master["dir"] / "twistd.log").read_text()
    assert not (quiet["dir"] / "logs").exists()


@pytest.mark.slow  # runs ci-master
def test_an_access_log_that_cannot_be_written_stops_the_start_saying_why(tmp_path: Path) -> None:
    master_dir = tmp_path / "m"
    assert run("create-master", str(master_dir), cwd=tmp_path).returncode == 0
    www = {"interface": "127.0.0.1", "port": free_port(), "access_log": "master.cfg/access.log"}
    (master_dir / "master.cfg").write_text(textwrap.dedent(CONFIG.format(
        db_url=f"sqlite:///{tmp_path}/state.sqlite", www=www, extra="")))
    assert run("upgrade-master", str(master_dir), cwd=tmp_path).returncode == 0
    started = run("start", str(master_dir), cwd=tmp_path)
    try:
        assert started.returncode != 0
        assert "www.access_log: cannot write" in started.stderr and "master.cfg/access.log" in started.stderr
    finally:
        run("stop", str(master_dir), cwd=tmp_path)
        kill_processes_under(tmp_path)


def test_access_log_config_errors_name_the_key(tmp_path: Path) -> None:
    for line, key in (('www={"access_log": 5}', "www.access_log"), ('metrics_public="yes"', "metrics_public")):
        (tmp_path / "master.cfg").write_text(
            f"from master.config import MasterConfig\nconfig = MasterConfig({line})\n"
        )
        with pytest.raises(ConfigError, match=key):
            load_config(tmp_path)


@pytest.mark.slow  # runs ci-master
def test_version_from_package_metadata() -> None:
    expected = version("ci-master")
    for module, name in (("master.cli", "ci-master"), ("worker.cli", "ci-worker")):
        shown = subprocess.run([sys.executable, "-m", module, "--version"], capture_output=True, text=True,
                               timeout=60)
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout.strip() == f"{name} {expected}"
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", expected)


def test_each_master_has_its_own_registry() -> None:
    one, two = MasterMetrics(), MasterMetrics()
    one.log_lines.inc(3)
    assert one.registry.get_sample_value("ci_master_log_lines_stored_total") == 3
    assert two.registry.get_sample_value("ci_master_log_lines_stored_total") == 0


@pytest_twisted.ensureDeferred
async def test_access_log_rotates_and_server_errors_reach_the_masters_log(tmp_path: Path, monkeypatch) -> None:
    import treq
    from twisted.internet import reactor
    from twisted.logger import globalLogPublisher
    from twisted.web import resource

    from master.www import accesslog
    from master.www.site import build_site

    class Broken(resource.Resource):
        isLeaf = True

        def render_GET(self, request):  # noqa: N802
            request.setResponseCode(500)
            return b"broken"

    class Fine(Broken):
        def render_GET(self, request):  # noqa: N802
            return b"x" * 100

    monkeypatch.setattr(accesslog, "ROTATE_BYTES", 400)
    site = build_site({"broken": Broken(), "fine": Fine()})
    site.set_access_log("access.log", tmp_path)
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    try:
        base = f"http://127.0.0.1:{port.getHost().port}"
        for _ in range(8):
            answer = await treq.get(f"{base}/fine")
            await answer.content()
        answer = await treq.get(f"{base}/broken")
        await answer.content()
        assert answer.code == 500
    finally:
        globalLogPublisher.removeObserver(events.append)
        await port.stopListening()
        site.set_access_log(None, tmp_path)
    assert (tmp_path / "access.log.1").exists()  # rotated past 400 bytes
    lines = "".join(p.read_text() for p in tmp_path.glob("access.log*"))
    assert lines.count('"GET /fine HTTP/1.1" 200 100') == 8
    assert '"GET /broken HTTP/1.1" 500' in lines
    said = [e.get("line", "") for e in events if e.get("log_format", "").startswith("request failed")]
    assert len(said) == 1 and '"GET /broken HTTP/1.1" 500' in said[0]
