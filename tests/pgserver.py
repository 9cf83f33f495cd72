"""A throwaway PostgreSQL server for the test run.

PostgreSQL refuses to run as root, so when the tests run as root the data directory is
handed to the unprivileged ``postgres`` user and the server binaries run as that user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg2
from psycopg2 import sql

SEARCH_GLOB = "/usr/lib/postgresql/*/bin"


class PostgresServerError(RuntimeError):
    """The test PostgreSQL server could not be set up; the message says which step failed."""


def _version_key(path: str) -> tuple[int, ...]:
    version = Path(path).parent.name
    return tuple(int(part) for part in version.split(".") if part.isdigit())


def find_binaries() -> tuple[str, str]:
    """Return the paths of ``initdb`` and ``pg_ctl``: PATH first, then the newest Debian install."""
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl:
        return initdb, pg_ctl
    for bindir in sorted(glob.glob(SEARCH_GLOB), key=_version_key, reverse=True):
        initdb, pg_ctl = os.path.join(bindir, "initdb"), os.path.join(bindir, "pg_ctl")
        if os.access(initdb, os.X_OK) and os.access(pg_ctl, os.X_OK):
            return initdb, pg_ctl
    raise PostgresServerError(
        f"PostgreSQL server binaries (initdb, pg_ctl) not found on PATH nor in {SEARCH_GLOB}; "
        "install them (Debian: apt-get install postgresql)"
    )


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _reachable_tempdir() -> str:
    """A temporary directory the ``postgres`` user can reach (root's TMPDIR may be private)."""
    base = Path(tempfile.gettempdir()).resolve()
    for directory in (base, *base.parents):
        if not directory.stat().st_mode & stat.S_IXOTH:
            return "/tmp"
    return str(base)


class PostgresServer:
    """One PostgreSQL cluster in a temporary directory, listening on 127.0.0.1 only.

    Call :meth:`start`, then :meth:`create_database` for each test database, and
    :meth:`stop` at the end; the directory is removed on stop.
    """

    user = "postgres"

    def __init__(self, start_timeout: float = 60.0) -> None:
        self.start_timeout = start_timeout
        self.port = 0
        self.tmpdir: str | None = None
        self.datadir = ""
        self.logfile = ""
        self._run_as: pwd.struct_passwd | None = None
        self._started = False
        self._pg_ctl = ""

    def _run(self, what: str, args: list[str], timeout: float) -> str:
        env = dict(os.environ, LC_ALL="C", LANG="C")
        ids: dict = {}
        if self._run_as is not None:
            env.update(HOME=self.tmpdir or "/", USER=self._run_as.pw_name, LOGNAME=self._run_as.pw_name)
            ids = {"user": self._run_as.pw_uid, "group": self._run_as.pw_gid, "extra_groups": []}
        try:
            proc = subprocess.run(
                args,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                text=True,
                env=env,
                cwd=self.tmpdir,
                timeout=timeout,
                **ids,
            )
        except subprocess.TimeoutExpired as e:
            raise PostgresServerError(
                f"{what} timed out after {timeout:.0f}s: {' '.join(args)}\n{e.output or ''}{self._log_tail()}"
            ) from None
        except OSError as e:
            raise PostgresServerError(f"{what} could not run {args[0]}: {e}") from None
        if proc.returncode != 0:
            raise PostgresServerError(
                f"{what} failed (exit {proc.returncode}): {' '.join(args)}\n{proc.stdout}{self._log_tail()}"
            )
        return proc.stdout

    def _log_tail(self) -> str:
        try:
            text = Path(self.logfile).read_text(errors="replace")
        except OSError:
            return ""
        return f"\n--- server log {self.logfile} ---\n{text[-4000:]}"

    def start(self) -> None:
        """Create the cluster, start the server and wait until it accepts connections."""
        initdb, pg_ctl = find_binaries()
        root = os.geteuid() == 0
        self.tmpdir = tempfile.mkdtemp(prefix="ci-master-pg-", dir=_reachable_tempdir() if root else None)
        self.datadir = os.path.join(self.tmpdir, "data")
        self.logfile = os.path.join(self.tmpdir, "server.log")
        if root:
            try:
                self._run_as = pwd.getpwnam(self.user)
            except KeyError:
                raise PostgresServerError(
                    f"running as root, but there is no {self.user!r} user to run PostgreSQL as "
                    "(PostgreSQL refuses to run as root)"
                ) from None
            os.chown(self.tmpdir, self._run_as.pw_uid, self._run_as.pw_gid)
        try:
            self._run(
                "initdb",
                [
                    initdb,
                    "-D",
                    self.datadir,
                    "-A",
                    "trust",
                    "-U",
                    "postgres",
                    "-E",
                    "UTF8",
                    "--no-sync",
                    "--locale=C",
                ],
                timeout=120,
            )
            self._pg_ctl = pg_ctl
            self.port = free_port()
            options = (
                f"-F -c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                f"-k {self.tmpdir} -p {self.port} -h 127.0.0.1"
            )
            self._options = options
            # pg_ctl -w waits for the server itself; the loop below double-checks over TCP.
            self._started = True
            self._run(
                "pg_ctl start",
                [
                    pg_ctl,
                    "start",
                    "-w",
                    "-t",
                    str(int(self.start_timeout)),
                    "-D",
                    self.datadir,
                    "-l",
                    self.logfile,
                    "-o",
                    options,
                ],
                timeout=self.start_timeout + 10,
            )
            self._wait_ready()
        except BaseException:
            # keep the original error: a failing stop of a half-started server would hide it
            try:
                self.stop()
            except PostgresServerError:
                pass
            raise

    def _connect(self, dbname: str = "postgres") -> psycopg2.extensions.connection:
        return psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres", dbname=dbname, connect_timeout=5)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while True:
            try:
                self._connect().close()
                return
            except psycopg2.OperationalError as e:
                if time.monotonic() > deadline:
                    raise PostgresServerError(
                        f"PostgreSQL on 127.0.0.1:{self.port} did not accept connections within "
                        f"{self.start_timeout:.0f}s: {e}{self._log_tail()}"
                    ) from None
                time.sleep(0.1)

    def create_database(self, name: str, template: str | None = None) -> str:
        """Create a database, empty or as a copy of *template*, and return its URL."""
        conn = self._connect()
        try:
            conn.autocommit = True  # CREATE DATABASE cannot run inside a transaction
            with conn.cursor() as cursor:
                statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
                if template is not None:
                    statement = sql.SQL("{} TEMPLATE {}").format(statement, sql.Identifier(template))
                cursor.execute(statement)
        finally:
            conn.close()
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def restart(self) -> None:
        """Restart the server (fast shutdown: clients' connections are cut) on the same port."""
        self._run("pg_ctl restart", [self._pg_ctl, "restart", "-m", "fast", "-w", "-D", self.datadir,
                                     "-l", self.logfile, "-o", self._options], timeout=self.start_timeout + 10)
        self._wait_ready()

    def halt(self) -> None:
        """Stop the server (fast shutdown: clients' connections are cut) but keep its cluster: an outage."""
        self._run("pg_ctl stop", [self._pg_ctl, "stop", "-m", "fast", "-w", "-D", self.datadir], timeout=60)

    def resume(self) -> None:
        """Start a server stopped by :meth:`halt` again, on the same port, and wait until it accepts connections."""
        self._run("pg_ctl start", [self._pg_ctl, "start", "-w", "-t", str(int(self.start_timeout)), "-D", self.datadir,
                                   "-l", self.logfile, "-o", self._options], timeout=self.start_timeout + 10)
        self._wait_ready()

    def stop(self) -> None:
        """Stop the server (fast shutdown) and remove its directory."""
        try:
            if self._started:
                self._started = False
                self._run("pg_ctl stop", [self._pg_ctl, "stop", "-m", "fast", "-w", "-D", self.datadir], timeout=60)
        finally:
            if self.tmpdir is not None:
                shutil.rmtree(self.tmpdir, ignore_errors=True)
                self.tmpdir = None
