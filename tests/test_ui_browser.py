"""Buildbot's web UI, unmodified, in a real browser against a running master and worker.

A real master process (its service tree, with the UI mounted at ``/`` and the websocket at
``/ws``) and a real ``ci-worker`` from its CLI; Debian's chromium, headless, driven by
Playwright, on 127.0.0.1 only.  Every test fails on an error in the browser's console, an
uncaught exception in the page, a UI request answered 4xx/5xx, or an error frame on the
websocket; each saves a screenshot in its tmp dir.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import signal
import subprocess
import sys
import textwrap
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from cliutil import free_port
from cliutil import run as ci_master
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright
from waiting import wait_until

pytestmark = pytest.mark.slow  # a real master and Chromium

CHROMIUM = "/usr/bin/chromium"
TIMEOUT_MS = 20_000
"""The longest any expectation on a page waits."""
expect.set_options(timeout=TIMEOUT_MS)

# The master in the foreground with its log on stdout: the same service tree as `ci-master start`.
# Until the service mounts the UI itself (issue 10), this puts it on the root.
LAUNCHER = '''
import sys
from twisted.internet import reactor
from twisted.logger import globalLogBeginner, textFileLogObserver
from master.config import load_config
from master.service import MasterService
from master.www.ui import WebUi

globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])
basedir = sys.argv[1]
config = load_config(basedir)
master = MasterService(basedir, config)

def serving(url):
    if master.root.ui is None:
        master.root.ui = WebUi.if_installed(config.title, config.www.url, master.auth)
    print("UI-TEST-SERVING", url, flush=True)

def failed(failure):
    print("UI-TEST-FAILED", failure.getTraceback(), flush=True)
    reactor.stop()

master.started.addCallbacks(serving, failed)
reactor.callWhenRunning(master.startService)
reactor.addSystemEventTrigger("before", "shutdown", master.stopService)
reactor.run()
'''

CONFIG = """
from master.config import BuilderConfig, MasterConfig, WorkerConfig
from master.engine.schedulers import ForceScheduler
from master.engine.steps import ShellCommand

config = MasterConfig(
    title="ci-master UI test",
    db_url="sqlite:///state.sqlite",
    www={{"interface": "127.0.0.1", "port": {port}}},
    workers=[WorkerConfig("w1", "s3cret"), WorkerConfig("w2", "never-connects")],
    builders=[
        BuilderConfig(name="counting", workernames=["w1"], tags=["ui"], description="counts to six", steps=[
            ShellCommand(name="count", command="for i in 1 2 3 4 5 6; do echo line $i; sleep 1; done"),
            ShellCommand(name="done", command="echo done"),
        ]),
        BuilderConfig(name="failing", workernames=["w1"], steps=[
            ShellCommand(name="fail", command="echo about to fail >&2; exit 3"),
        ]),
        # its only worker never connects: its requests stay pending
        BuilderConfig(name="waiting", workernames=["w2"], steps=[ShellCommand(name="never", command="true")]),
    ],
    schedulers=[ForceScheduler(name="force", builderNames=["counting", "failing", "waiting"])],
)
"""


class Master:
    """The running master: its URL, REST reads and JSON-RPC calls."""

    def __init__(self, port: int, basedir: Path) -> None:
        self.port = port
        self.basedir = basedir
        self.url = f"http://127.0.0.1:{port}/"

    def get(self, path: str) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}api/v2/{path}", timeout=10) as response:
            return json.load(response)

    def call(self, path: str, method: str, **params: Any) -> Any:
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
        request = urllib.request.Request(f"{self.url}api/v2/{path}", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)["result"]

    def builderid(self, name: str) -> int:
        return self.get(f"builders/{name}")["builders"][0]["builderid"]

    def force(self, builder: str) -> int:
        """Force a build on *builder*; return its build request's id."""
        _, requests = self.call("forceschedulers/force", "force", builderid=self.builderid(builder))
        return next(iter(requests.values()))

    def finished_build(self, brid: int, timeout: float = 60.0) -> dict[str, Any]:
        return wait_until(
            lambda: (self.get(f"buildrequests/{brid}/builds?complete=true")["builds"] or [None])[0],
            f"build of request {brid} finished", timeout=timeout,
        )


def _worker_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-P", "-m", "worker.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60)


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL if the master has not stopped within 30 s."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@contextmanager
def running_master(root: Path, config: str) -> Iterator[Master]:
    """A master process on a free port of 127.0.0.1 with *config* (a template taking ``port``)."""
    port = free_port()
    basedir = root / "master"
    created = ci_master("create-master", str(basedir), cwd=root)
    assert created.returncode == 0, created.stderr
    (basedir / "master.cfg").write_text(textwrap.dedent(config.format(port=port)))
    (root / "launch.py").write_text(LAUNCHER)
    log_path = basedir / "ui-test.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen([sys.executable, str(root / "launch.py"), str(basedir)], cwd=basedir,
                                   stdout=log_file, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: process.poll() is not None or "UI-TEST-" in log_path.read_text(),
                   "the master serving", timeout=60)
        assert "UI-TEST-SERVING" in log_path.read_text(), log_path.read_text()[-3000:]
        yield Master(port, basedir)
    finally:
        _stop(process)


@contextmanager
def master_with_worker(root: Path, config: str) -> Iterator[Master]:
    """:func:`running_master` with worker w1 (password s3cret) connected from a real ``ci-worker``."""
    worker_dir = root / "worker"
    with running_master(root, config) as master:
        try:
            made = _worker_cli("create-worker", str(worker_dir), "--master", master.url.rstrip("/"),
                               "--name", "w1", "--password", "s3cret", cwd=root)
            assert made.returncode == 0, made.stderr
            started = _worker_cli("start", str(worker_dir), cwd=root)
            assert started.returncode == 0 and "connected" in started.stdout, (started.stdout, started.stderr)
            yield master
        finally:
            if (worker_dir / "twistd.pid").exists():
                _worker_cli("stop", str(worker_dir), cwd=root)


@pytest.fixture(scope="module")
def master(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Master]:
    """A master process with worker w1 connected (w2 never connects)."""
    with master_with_worker(tmp_path_factory.mktemp("ui-master"), CONFIG) as master:
        yield master


@pytest.fixture(scope="module")
def finished(master: Master) -> dict[str, dict[str, Any]]:
    """One finished build of ``counting`` (success) and of ``failing`` (failure)."""
    requests = {name: master.force(name) for name in ("counting", "failing")}
    return {name: master.finished_build(brid) for name, brid in requests.items()}


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
    try:
        yield browser
    finally:
        browser.close()


class Ui:
    """A browser page on the master's UI that records everything that went wrong."""

    def __init__(self, page: Page, master: Master, shots: Path) -> None:
        self.page = page
        self.master = master
        self.shots = shots
        self.problems: list[str] = []
        self.posts: list[tuple[str, Any]] = []
        self.ws_frames: list[dict[str, Any]] = []
        page.set_default_timeout(TIMEOUT_MS)
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.problems.append(f"uncaught in the page: {error}"))
        page.on("response", self._response)
        page.on("requestfailed", self._failed)
        page.on("request", self._request)
        page.on("websocket", self._websocket)

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self.problems.append(f"console error: {message.text}")

    def _response(self, response: Any) -> None:
        if response.status >= 400:
            self.problems.append(f"HTTP {response.status} for {response.request.method} {response.url}")

    def _failed(self, request: Any) -> None:
        # a request the page itself gave up (it moved on to another view) is not the server's fault
        if request.failure != "net::ERR_ABORTED":
            self.problems.append(f"request failed: {request.url}: {request.failure}")

    def _request(self, request: Any) -> None:
        if request.method == "POST":
            self.posts.append((request.url, json.loads(request.post_data or "null")))

    def _websocket(self, socket: Any) -> None:
        def received(payload: str | bytes) -> None:
            frame = json.loads(payload)
            self.ws_frames.append(frame)
            if "error" in frame or frame.get("code", 200) != 200:
                self.problems.append(f"websocket error frame: {frame}")

        socket.on("framereceived", received)
        socket.on("socketerror", lambda error: self.problems.append(f"websocket error: {error}"))

    def open(self, route: str) -> None:
        self.page.goto(f"{self.master.url}#{route}")

    def shot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 0
        return path

    def assert_clean(self) -> None:
        assert self.problems == [], "\n".join(self.problems)


@pytest.fixture
def ui(browser: Browser, master: Master, tmp_path: Path) -> Iterator[Ui]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    recorder = Ui(page, master, tmp_path)
    try:
        yield recorder
    finally:
        # whatever happened, leave a picture of where the page was
        page.screenshot(path=str(tmp_path / "last.png"), full_page=True)
        context.close()


# Records, as the page changes, the log lines shown for step 0 and the classes of the build's
# and the steps' result badges (each value once, in the order seen).
WATCH_BUILD_PAGE = """() => {
    const watched = window.__watched = {lines: new Set(), step0: [], step1: [], summary: []};
    const note = (list, element) => {
        const value = element ? element.className : "absent";
        if (list[list.length - 1] !== value) list.push(value);
    };
    const grab = () => {
        document.querySelectorAll("#bb-step-0 .logpreview").forEach(
            e => e.innerText.split("\\n").forEach(line => watched.lines.add(line.trim())));
        note(watched.step0, document.querySelector("#bb-step-0 .bb-badge-round"));
        note(watched.step1, document.querySelector("#bb-step-1 .bb-badge-round"));
        note(watched.summary, document.querySelector(".bb-build-summary"));
    };
    new MutationObserver(grab).observe(document.body, {subtree: true, childList: true, characterData: true,
                                                       attributes: true});
    grab();
}"""


def results_class(name: str) -> re.Pattern[str]:
    return re.compile(rf"\bresults_{name}\b")


# -- the pages -------------------------------------------------------------------------------------


def test_home_page_shows_the_recent_builds(ui: Ui, finished: dict[str, dict[str, Any]]) -> None:
    ui.open("/")
    page = ui.page
    expect(page.locator(".bb-home-view h2")).to_have_text("Welcome to buildbot")
    counting = page.locator(".bb-buildsticker", has=page.get_by_role("link", name="counting/1", exact=True))
    failing = page.locator(".bb-buildsticker", has=page.get_by_role("link", name="failing/1", exact=True))
    expect(counting).to_have_class(results_class("SUCCESS"))
    expect(failing).to_have_class(results_class("FAILURE"))
    expect(page.locator(".bb-home-view")).to_contain_text("recent builds")
    # the master's title from master.cfg, not Buildbot's
    expect(page).to_have_title("ci-master UI test")
    ui.shot("home")
    ui.assert_clean()


def test_builders_list_and_a_builders_page(ui: Ui, finished: dict[str, dict[str, Any]]) -> None:
    page = ui.page
    ui.open("/builders")
    rows = page.locator("table tbody tr")
    expect(rows.filter(has_text="counting")).to_contain_text("ui")  # its tag
    expect(rows.filter(has_text="counting")).to_contain_text("w1")  # its worker
    expect(rows.filter(has_text="failing")).to_have_count(1)
    expect(rows.filter(has_text="waiting")).to_contain_text("w2")
    ui.shot("builders")

    page.get_by_role("link", name="counting", exact=True).click()
    builderid = ui.master.builderid("counting")
    expect(page).to_have_url(re.compile(rf"#/builders/{builderid}$"))
    expect(page.get_by_text("counts to six")).to_be_visible()  # the description
    expect(page.get_by_role("button", name="force")).to_be_visible()
    builds = page.locator("table tbody tr", has_text="build successful")
    expect(builds.first).to_contain_text("w1")
    ui.shot("builder")
    ui.assert_clean()


def test_forcing_through_the_dialog_and_watching_the_build_finish_live(ui: Ui) -> None:
    page, master = ui.page, ui.master
    builderid = master.builderid("counting")
    ui.open(f"/builders/{builderid}")
    page.get_by_role("button", name="force").click()
    dialog = page.locator(".modal-dialog")
    expect(dialog).to_be_visible()
    dialog.locator("[data-bb-test-id=force-field-reason]").fill("from the browser")
    ui.shot("force-dialog")
    dialog.get_by_role("button", name="Start build").click()

    # the dialog posts {builderid, <field>: value} and the UI goes to the build it started
    url, rpc = next((url, body) for url, body in ui.posts if url.endswith("/api/v2/forceschedulers/force"))
    assert rpc["method"] == "force" and str(rpc["params"]["builderid"]) == str(builderid)
    assert rpc["params"]["reason"] == "from the browser"
    expect(page).to_have_url(re.compile(rf"#/builders/{builderid}/builds/\d+$"))
    number = int(page.url.rsplit("/", 1)[1])
    build = master.get(f"builders/{builderid}/builds/{number}")["builds"][0]
    buildset = master.get(f"buildrequests/{build['buildrequestid']}")["buildrequests"][0]["buildsetid"]
    assert master.get(f"buildsets/{buildset}")["buildsets"][0]["reason"].endswith(": from the browser")
    # What the page shows, recorded as it changes; a page that reloads would lose this record.
    page.evaluate(WATCH_BUILD_PAGE)

    summary = page.locator(".bb-build-summary").first
    count_step = page.locator("#bb-step-0")
    # running: the first lines of the step's log appear while the build is not finished
    expect(count_step.locator(".logpreview")).to_contain_text("line 2")
    assert not master.get(f"builds/{build['buildid']}")["builds"][0]["complete"]
    expect(summary).not_to_have_class(results_class("SUCCESS"))
    ui.shot("build-running")

    # then the steps turn green one after the other, and the build finishes
    expect(page.locator("#bb-step-1 .bb-badge-round")).to_have_class(results_class("SUCCESS"))
    expect(count_step.locator(".bb-badge-round")).to_have_class(results_class("SUCCESS"))
    expect(summary).to_have_class(results_class("SUCCESS"))
    expect(summary).to_contain_text("build successful")
    done = master.get(f"builds/{build['buildid']}")["builds"][0]
    assert done["complete"] and done["results"] == 0
    ui.shot("build-finished")

    seen = page.evaluate("window.__watched && {lines: [...window.__watched.lines], step0: window.__watched.step0,"
                         " step1: window.__watched.step1, summary: window.__watched.summary}")
    assert seen is not None, "the page was reloaded"
    # every line of the log came while watching, and each step was seen running, then green
    assert {f"line {n}" for n in range(1, 7)} <= set(seen["lines"]), seen["lines"]
    for name in ("step0", "summary"):
        classes = seen[name]
        green = next(i for i, value in enumerate(classes) if "results_SUCCESS" in value)
        assert any(value != "absent" for value in classes[:green]), (name, classes)  # shown before, not green
        assert "results_SUCCESS" in classes[-1], (name, classes)
    ui.assert_clean()


def test_a_failed_build_shows_as_failed(ui: Ui, finished: dict[str, dict[str, Any]]) -> None:
    page = ui.page
    build = finished["failing"]
    ui.open(f"/builders/{build['builderid']}/builds/{build['number']}")
    summary = page.locator(".bb-build-summary").first
    expect(summary).to_have_class(results_class("FAILURE"))
    expect(summary.locator(".bb-badge-status")).to_have_text("FAILURE")
    step = page.locator("#bb-step-0")
    expect(step).to_contain_text("fail")
    expect(step.locator(".bb-badge-round")).to_have_class(results_class("FAILURE"))
    expect(step.locator(".logpreview")).to_contain_text("about to fail")
    ui.shot("failed-build")

    # and on its builder's page
    ui.open(f"/builders/{build['builderid']}")
    expect(page.locator("table tbody tr", has_text="build failure")).to_have_count(1)
    ui.shot("failing-builder")
    ui.assert_clean()


def test_the_log_page_shows_the_whole_log(ui: Ui, finished: dict[str, dict[str, Any]]) -> None:
    build = finished["counting"]
    ui.open(f"/builders/{build['builderid']}/builds/{build['number']}/steps/0/logs/stdio")
    for n in range(1, 7):
        expect(ui.page.get_by_text(f"line {n}", exact=True)).to_be_visible()
    expect(ui.page.get_by_text("program finished with exit code 0")).to_be_visible()
    ui.shot("log")
    ui.assert_clean()


def test_workers_page_and_a_workers_page(ui: Ui, finished: dict[str, dict[str, Any]]) -> None:
    page = ui.page
    ui.open("/workers")
    w1 = page.locator("table tbody tr", has_text="w1")
    expect(w1).to_have_count(1)
    expect(page.locator("table tbody tr", has_text="w2")).to_have_count(1)
    # what the worker said of itself
    expect(w1).to_contain_text(sys.version.split()[0])
    ui.shot("workers")

    page.get_by_role("link", name="w1", exact=True).first.click()
    expect(page).to_have_url(re.compile(r"#/workers/\d+$"))
    expect(page.locator("body")).to_contain_text("counting")
    ui.shot("worker")
    ui.assert_clean()


def test_changes_page_and_a_changes_page(ui: Ui, master: Master) -> None:
    sent = ci_master(
        "sendchange", "--master", master.url, "--author", "Ada Lovelace <ada@example.org>",
        "--comments", "Teach the engine to count", "--branch", "main", "--revision", "abc123",
        "--repository", "https://git.example.org/engine.git", "src/engine.py", cwd=master.basedir,
    )
    assert sent.returncode == 0, sent.stderr
    page = ui.page
    ui.open("/changes")
    expect(page.get_by_text("Teach the engine to count").first).to_be_visible()
    ui.shot("changes")

    changeid = master.get("changes?order=-changeid&limit=1")["changes"][0]["changeid"]
    ui.open(f"/changes/{changeid}")
    body = page.locator("body")
    expect(body).to_contain_text("Ada Lovelace <ada@example.org>")
    expect(body).to_contain_text("abc123")
    expect(body).to_contain_text("https://git.example.org/engine.git")
    ui.shot("change")
    ui.assert_clean()


def test_pending_build_requests_page(ui: Ui, master: Master) -> None:
    brid = master.force("waiting")
    ui.open("/pendingbuildrequests")
    row = ui.page.locator("table tbody tr", has_text="waiting")
    expect(row.first).to_be_visible()
    expect(row.first).to_contain_text(str(brid))
    ui.shot("pending")
    ui.assert_clean()


@pytest.mark.parametrize("route, text", [
    ("/masters", "Last Active"),
    ("/schedulers", "force"),
    ("/about", f"buildbot-www version: {importlib.metadata.version('buildbot-www')}"),
    ("/settings", "Settings related to links between pages"),
    ("/projects", "Projects"),
])
def test_other_pages_load_cleanly(ui: Ui, route: str, text: str, finished: dict[str, dict[str, Any]]) -> None:
    ui.open(route)
    expect(ui.page.locator("body")).to_contain_text(text)
    ui.shot(route.strip("/"))
    ui.assert_clean()


# -- logging in ------------------------------------------------------------------------------------

AUTH_CONFIG = """
from master.config import BuilderConfig, MasterConfig, WorkerConfig
from master.engine.schedulers import ForceScheduler
from master.engine.steps import ShellCommand
from master.www.auth import Auth, ControlRule

config = MasterConfig(
    title="ci-master with logins",
    db_url="sqlite:///state.sqlite",
    www={{"interface": "127.0.0.1", "port": {port}}},
    workers=[WorkerConfig("w2", "never-connects")],
    builders=[BuilderConfig(name="waiting", workernames=["w2"], steps=[ShellCommand(name="never", command="true")])],
    schedulers=[ForceScheduler(name="force", builderNames=["waiting"])],
    auth=Auth(rules=[ControlRule(roles=["admin"], actions=["force"])]),
)
"""

# What a refused control or a password challenge shows in the page: expected, and nothing else is.
REFUSED = {
    401: [r"HTTP 401 for POST .*/api/v2/forceschedulers/force$", r"console error: .*status of 401"],
    403: [r"HTTP 403 for POST .*/api/v2/forceschedulers/force$", r"console error: .*status of 403"],
    "challenge": [r"HTTP 401 for GET .*/auth/login\?redirect=", r"console error: .*status of 401"],
}


@pytest.fixture(scope="module")
def auth_master(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Master]:
    """A master with auth on: ann (admin) may force, dev (developer) may not."""
    root = tmp_path_factory.mktemp("ui-auth-master")
    with running_master(root, AUTH_CONFIG) as master:
        for name, role, password in (("ann", "admin", "ann-pw"), ("dev", "developer", "dev-pw")):
            added = ci_master("user", "add", str(master.basedir), name, "--role", role, "--password-stdin",
                              cwd=root, stdin=password + "\n")
            assert added.returncode == 0, added.stderr
        yield master


def problems_besides(ui: Ui, *expected: list[str]) -> list[str]:
    """The page's problems that none of the *expected* patterns explain."""
    patterns = [re.compile(p) for group in expected for p in group]
    return [problem for problem in ui.problems if not any(p.search(problem) for p in patterns)]


def try_to_force(ui: Ui) -> Any:
    """Open the builder's force dialog, start a build, and return the dialog."""
    ui.open(f"/builders/{ui.master.builderid('waiting')}")
    ui.page.get_by_role("button", name="force").click()
    dialog = ui.page.locator(".modal-dialog")
    dialog.get_by_role("button", name="Start build").click()
    return dialog


def log_in(ui: Ui, name: str) -> None:
    """The UI's Login link: the browser is asked for a password (the context has it), then sent back."""
    ui.open("/")
    ui.page.locator("#bb-loginbar-dropdown").click()
    ui.page.get_by_role("link", name="Login", exact=True).click()
    expect(ui.page).to_have_url(re.compile(r"/#/$"))
    # the user's avatar (drawn by the master) stands for them in the login bar
    avatar = ui.page.locator("#bb-loginbar-dropdown img.avatar")
    expect(avatar).to_have_attribute("alt", name)
    assert avatar.evaluate("img => img.complete && img.naturalWidth > 0")


def test_logging_in_and_what_each_role_may_do(browser: Browser, auth_master: Master, tmp_path: Path) -> None:
    def page_as(who: str, password: str | None) -> Ui:
        credentials = {"username": who, "password": password} if password else None
        context = browser.new_context(viewport={"width": 1400, "height": 900}, http_credentials=credentials)
        contexts.append(context)
        return Ui(context.new_page(), auth_master, tmp_path)

    contexts: list[Any] = []
    try:
        # nobody logged in: the UI offers to log in, and a force is refused with the server's reason
        anonymous = page_as("anonymous", None)
        anonymous.open("/")
        expect(anonymous.page.locator("#bb-loginbar-dropdown")).to_contain_text("Anonymous")
        dialog = try_to_force(anonymous)
        expect(dialog).to_contain_text("authentication required to call 'force' on forceschedulers")
        anonymous.shot("anonymous-refused")
        assert problems_besides(anonymous, REFUSED[401]) == []

        # a developer logs in through the UI's link and sees their name; the force is theirs to be refused
        dev = page_as("dev", "dev-pw")
        log_in(dev, "dev")
        dialog = try_to_force(dev)
        expect(dialog).to_contain_text("user 'dev' may not call 'force' on forceschedulers")
        dev.shot("developer-refused")
        assert problems_besides(dev, REFUSED["challenge"], REFUSED[403]) == []

        # an admin may: the UI goes to the build request it made
        ann = page_as("ann", "ann-pw")
        log_in(ann, "ann")
        dialog = try_to_force(ann)
        expect(ann.page).to_have_url(re.compile(r"#/buildrequests/\d+"))
        brid = int(re.search(r"#/buildrequests/(\d+)", ann.page.url).group(1))
        buildset = auth_master.get(f"buildrequests/{brid}")["buildrequests"][0]["buildsetid"]
        assert "'ann'" in auth_master.get(f"buildsets/{buildset}")["buildsets"][0]["reason"]
        ann.shot("admin-forced")

        # and logs out: anonymous again
        ann.open("/")
        ann.page.locator("#bb-loginbar-dropdown").click()
        ann.page.get_by_text("Logout").click()
        expect(ann.page.locator("#bb-loginbar-dropdown")).to_contain_text("Anonymous")
        ann.shot("logged-out")
        assert problems_besides(ann, REFUSED["challenge"]) == []
    finally:
        for context in contexts:
            context.close()
