"""Reporters with real processes, on SQLite and PostgreSQL: ci-master and ci-worker from their CLIs, the
stand-in forge (tests/forge.py) and a real SMTP server (aiosmtpd) in this process.

Builds are forced with a revision and a repository URL, as a change would carry them.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import signal
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from cliutil import free_port, http_get, run
from forge import Forge
from test_end_to_end import rpc
from test_faults import kill_if_alive, pid_of, worker
from waiting import wait_until

pytestmark = pytest.mark.slow  # real master and worker processes

GH_TOKEN = "ghp_" + "A" * 36
GL_TOKEN = "glpat-" + "B" * 20
REPOSITORY = "git@github.com:acme/widget.git"
SHA_PASS = "1111111111111111111111111111111111111111"
SHA_FAIL = "2222222222222222222222222222222222222222"

CONFIG = """
from master.config import BuilderConfig, MasterConfig, WorkerConfig
from master.engine.properties import Interpolate
from master.engine.schedulers import ForceScheduler
from master.engine.steps import ShellCommand
from master.reporters import GitHubStatusPush, GitLabStatusPush, HttpStatusPush, MailNotifier

FAST_RETRIES = dict(retry_delay=0.2, max_delay=1.0, max_attempts=10000)
config = MasterConfig(
    db_url={db_url!r},
    www={{"interface": "127.0.0.1", "port": {port}}},
    workers=[WorkerConfig("w1", "s3cret")],
    builders=[
        BuilderConfig(name="pass", tags=["ci"], workernames=["w1"],
                      steps=[ShellCommand(name="ok", command=["true"])]),
        BuilderConfig(name="fail", tags=["ci"], workernames=["w1"], steps=[
            ShellCommand(name="compile", command=["true"]),
            ShellCommand(name="unit-tests", command="echo 1 test failed; exit 1"),
        ]),
        BuilderConfig(name="unwatched", workernames=["w1"], steps=[ShellCommand(name="ok", command=["true"])]),
    ],
    schedulers=[ForceScheduler(name="force", builderNames=["pass", "fail", "unwatched"])],
    reporters=[{reporters}],
)
"""


@dataclass
class Site:
    """A master and a worker started from their CLIs."""

    tmp: Path
    port: int
    master: Path
    worker: Path
    builders: dict[str, int] = field(default_factory=dict)

    def start_master(self) -> None:
        started = run("start", str(self.master), cwd=self.tmp)
        assert started.returncode == 0, started.stderr + started.stdout

    def force(self, builder: str, revision: str) -> int:
        """Force a build of *builder* on *revision* of REPOSITORY; return its request's id."""
        reply = rpc(self.port, "forceschedulers/force", "force", builderid=self.builders[builder],
                    revision=revision, repository=REPOSITORY, branch="main")
        return reply["result"][1][str(self.builders[builder])]

    def build_of(self, brid: int, timeout: float = 60.0) -> dict:
        """The request's build, once complete."""
        return wait_until(lambda: http_get(self.port, f"/api/v2/buildrequests/{brid}/builds?complete=true")
                          ["builds"], timeout=timeout)[0]

    def url_of(self, build: dict) -> str:
        """The build's page, as the reporters give it."""
        return f"http://127.0.0.1:{self.port}/#/builders/{build['builderid']}/builds/{build['number']}"


@pytest.fixture
def forge() -> Iterator[Forge]:
    started = Forge(projects={"acme/widget": 42}).start()
    yield started
    started.stop()


@pytest.fixture
def make_site(tmp_path: Path, db_url: str) -> Iterator[Any]:
    """make_site(reporters_source) -> a running Site; everything is stopped at the end."""
    made: list[Site] = []

    def make(reporters: str) -> Site:
        port = free_port()
        url = "sqlite:///state.sqlite" if db_url.startswith("sqlite") else db_url  # create-master made that file
        site = Site(tmp_path, port, tmp_path / "master", tmp_path / "worker")
        assert run("create-master", str(site.master), cwd=tmp_path).returncode == 0
        (site.master / "master.cfg").write_text(
            textwrap.dedent(CONFIG.format(db_url=url, port=port, reporters=reporters))
        )
        if not db_url.startswith("sqlite"):
            upgraded = run("upgrade-master", str(site.master), cwd=tmp_path)
            assert upgraded.returncode == 0, upgraded.stderr
        made.append(site)
        site.start_master()
        created = worker("create-worker", str(site.worker), "--master", f"http://127.0.0.1:{port}", "--name", "w1",
                         "--password", "s3cret", cwd=tmp_path)
        assert created.returncode == 0, created.stderr
        up = worker("start", str(site.worker), cwd=tmp_path)
        assert up.returncode == 0 and "connected" in up.stdout, (up.stdout, up.stderr)
        site.builders = {b["name"]: b["builderid"] for b in http_get(port, "/api/v2/builders")["builders"]}
        return site

    yield make
    for site in made:
        worker("stop", str(site.worker), cwd=tmp_path)
        run("stop", str(site.master), cwd=tmp_path)
        for directory in (site.worker, site.master):
            if (directory / "twistd.pid").exists():
                kill_if_alive(pid_of(directory))


def github(forge: Forge, **extra: str) -> str:
    options = "".join(f", {k}={v}" for k, v in extra.items())
    return (f"GitHubStatusPush({GH_TOKEN!r}, context=Interpolate('ci/%(prop:buildername)s'), "
            f"base_url={forge.url!r}, tags=['ci'], **FAST_RETRIES{options})")


def settle(check: Any, seconds: float = 1.5) -> None:
    """Let deliveries that should not happen have their chance, then check again."""
    time.sleep(seconds)
    assert check()


def test_statuses_pending_then_result_on_github_gitlab_and_http(make_site: Any, forge: Forge) -> None:
    site = make_site(", ".join([
        github(forge),
        f"GitLabStatusPush({GL_TOKEN!r}, context='ci-master', base_url={forge.url!r}, builders=['pass', 'fail'],"
        " **FAST_RETRIES)",
        f"HttpStatusPush({forge.url + '/hook'!r}, headers={{'X-Key': 'k'}}, builders=['pass'], **FAST_RETRIES)",
    ]))
    passing = site.build_of(site.force("pass", SHA_PASS))
    failing = site.build_of(site.force("fail", SHA_FAIL))
    site.build_of(site.force("unwatched", SHA_PASS))
    assert passing["results"] == 0 and failing["results"] == 2

    wait_until(lambda: forge.states(SHA_PASS, "github") == ["pending", "success"]
               and forge.states(SHA_FAIL, "github") == ["pending", "failure"]
               and forge.states(SHA_PASS, "gitlab") == ["running", "success"]
               and forge.states(SHA_FAIL, "gitlab") == ["running", "failed"] and len(forge.hooks) == 2)
    for sha, build, name in ((SHA_PASS, passing, "pass"), (SHA_FAIL, failing, "fail")):
        statuses = [s for s in forge.statuses if s.sha == sha]
        assert {(s.forge, s.context) for s in statuses} == {("github", f"ci/{name}"), ("gitlab", "ci-master")}
        assert {s.target_url for s in statuses} == {site.url_of(build)}
        assert {s.repo for s in statuses} == {"acme/widget"}
    started, finished = forge.hooks
    assert started["buildid"] == finished["buildid"] == passing["buildid"]
    assert started["complete"] is False and finished["complete"] is True and finished["results"] == 0
    assert finished["builder"]["name"] == "pass" and finished["sourcestamps"][0]["revision"] == SHA_PASS
    assert finished["properties"]["buildername"][0] == "pass" and finished["url"] == site.url_of(passing)
    # the unwatched builder's build is reported nowhere, nothing is reported twice
    settle(lambda: len(forge.statuses) == 8 and len(forge.hooks) == 2 and not forge.refused)


def test_a_forge_failing_for_a_while_gets_each_status_once_it_recovers(make_site: Any, forge: Forge) -> None:
    site = make_site(github(forge))
    forge.fail(500)
    build = site.build_of(site.force("pass", SHA_PASS))
    assert build["results"] == 0
    wait_until(lambda: forge.attempts >= 6)  # the start's report, tried again and again
    forge.recover()
    forge.drop()  # then connections dropped without an answer
    seen = forge.attempts
    wait_until(lambda: forge.attempts >= seen + 3)
    assert forge.statuses == []
    forge.recover()
    wait_until(lambda: forge.states(SHA_PASS) == ["pending", "success"])
    settle(lambda: forge.states(SHA_PASS) == ["pending", "success"])
    assert forge.statuses[1].target_url == site.url_of(build)


def test_a_forge_down_for_30_seconds_gets_each_status_once_with_the_default_back_off(
    make_site: Any, forge: Forge,
) -> None:
    # the defaults: retried after 1, 2, 4, 8, 16 s... (at most 12 times), so a 30 s outage is ridden out
    site = make_site(f"GitHubStatusPush({GH_TOKEN!r}, context=Interpolate('ci/%(prop:buildername)s'), "
                     f"base_url={forge.url!r}, tags=['ci'])")
    outage = 30.0
    forge.fail(500, seconds=outage)
    began = time.monotonic()
    build = site.build_of(site.force("pass", SHA_PASS))
    assert build["results"] == 0
    wait_until(lambda: forge.states(SHA_PASS) == ["pending", "success"], timeout=outage + 60)
    # refused until the outage ended: at least five tries, then the two statuses
    assert time.monotonic() - began >= outage and forge.attempts >= 7
    settle(lambda: forge.states(SHA_PASS) == ["pending", "success"])
    assert forge.statuses[1].target_url == site.url_of(build)


def test_a_master_killed_with_reports_undelivered_delivers_them_after_restart(make_site: Any, forge: Forge) -> None:
    site = make_site(github(forge))
    forge.fail(500)
    passing = site.build_of(site.force("pass", SHA_PASS))
    failing = site.build_of(site.force("fail", SHA_FAIL))
    assert (passing["results"], failing["results"]) == (0, 2)
    time.sleep(1.0)  # the reports are recorded (the forge is asked for them, in vain)
    os.kill(pid_of(site.master), signal.SIGKILL)
    wait_until(lambda: _dead(pid_of(site.master)), timeout=10)
    assert forge.statuses == []
    forge.recover()
    site.start_master()
    wait_until(lambda: forge.states(SHA_PASS) == ["pending", "success"]
               and forge.states(SHA_FAIL) == ["pending", "failure"])
    settle(lambda: len(forge.statuses) == 4)
    assert {s.target_url for s in forge.statuses if s.sha == SHA_FAIL} == {site.url_of(failing)}


def _dead(pid: int) -> bool:
    """Whether process *pid* is gone or a zombie (nothing reaps a daemon's zombie in a container)."""
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().rpartition(")")[2].split()[0] == "Z"


# -- mail -------------------------------------------------------------------------------------------


class Mailbox:
    """What the SMTP server received."""

    def __init__(self) -> None:
        self.mails: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd's name)
        self.mails.append((envelope.mail_from, list(envelope.rcpt_tos), message_from_bytes(envelope.content),
                           session.authenticated, getattr(session, "ssl", None) is not None))
        return "250 OK"


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made for the test."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


@pytest.mark.parametrize("security", ["plain", "starttls", "starttls+auth"])
def test_mail_in_failing_mode_is_sent_once_for_a_failing_build_and_not_for_a_passing_one(
    make_site: Any, tmp_path: Path, security: str
) -> None:
    import ssl

    mailbox = Mailbox()
    port = free_port()
    options: dict[str, Any] = {}
    settings = f"smtp_host='127.0.0.1', smtp_port={port}"
    if security != "plain":
        cert, key = self_signed(tmp_path)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        options.update(tls_context=context, require_starttls=True)
        settings += f", use_tls=True, tls_ca_file={str(cert)!r}"
    if security == "starttls+auth":
        def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
            return AuthResult(success=(data.login, data.password) == (b"ci", b"mail-secret"))

        options.update(authenticator=authenticate, auth_require_tls=True)
        settings += ", smtp_user='ci', smtp_password='mail-secret'"
    smtp = Controller(mailbox, hostname="127.0.0.1", port=port, **options)
    smtp.start()
    try:
        site = make_site(f"MailNotifier('ci@example.org', mode='failing', extraRecipients=['dev@example.org'], "
                         f"{settings}, retry_delay=0.2, max_delay=1.0)")
        passing = site.build_of(site.force("pass", SHA_PASS))
        failing = site.build_of(site.force("fail", SHA_FAIL))
        wait_until(lambda: mailbox.mails)
        settle(lambda: len(mailbox.mails) == 1)
    finally:
        smtp.stop()
    assert passing["results"] == 0
    sender, recipients, mail, authenticated, encrypted = mailbox.mails[0]
    assert (sender, recipients) == ("ci@example.org", ["dev@example.org"])
    assert bool(authenticated) is (security == "starttls+auth")
    assert encrypted is (security != "plain")
    subject, body = mail["Subject"], mail.get_payload(decode=True).decode()
    assert "fail" in subject and "failure" in subject and SHA_FAIL[:12] in subject
    for text in ("Builder:  fail", "Result:   failure", f"Revision: {SHA_FAIL}", "Failing step: unit-tests",
                 site.url_of(failing)):
        assert text in body
