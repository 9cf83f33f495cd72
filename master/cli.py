"""The ``ci-master`` command: create, start, stop, reconfigure and upgrade a master.

Every failure is one line on standard error and a non-zero exit code.

Only the standard library and :mod:`ci_common.twistd_process` are imported at the top: each command
imports what it needs (configuration, Alembic and SQLAlchemy, Twisted), so that ``--help``,
``--version`` and ``sendchange`` start fast.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ci_common import twistd_process as proc
from ci_common.twistd_process import CommandError, program_dir
from master import sendchange as sendchange_cli

if TYPE_CHECKING:
    from master.config import MasterConfig

SAMPLE = Path(__file__).parent / "master.cfg.sample"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 60.0


def master_dir(path: str) -> Path:
    """*path* resolved, checked to be a master directory."""
    return program_dir(path, "master.cfg", "master", "ci-master create-master")


def _plugin_schemas(config: MasterConfig) -> list:
    from master.db import migrate

    return migrate.plugin_schemas(config.plugins)


def create_master(args: argparse.Namespace) -> int:
    """Make DIR with master.cfg from the sample and a database at the newest schema."""
    from master import filemodes
    from master.config import load_config
    from master.db import migrate

    basedir = Path(args.dir).resolve()
    config_path = basedir / "master.cfg"
    if config_path.exists():
        raise CommandError(f"{config_path} already exists; not overwriting it")
    # the directory 0700 and its files 0600: master.cfg and the database hold secrets
    previous_umask = os.umask(filemodes.PRIVATE_UMASK)
    try:
        basedir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(SAMPLE, config_path)
        shutil.copyfile(SAMPLE, basedir / "master.cfg.sample")
        config = load_config(basedir)
        migrate.create(config.db_url)
        migrate.prepare_plugin_tables(config.db_url, _plugin_schemas(config))
    finally:
        os.umask(previous_umask)
    filemodes.make_private(basedir, config.db_url)
    print(f"created master in {basedir} (database {migrate.masked_url(config.db_url)})")
    print(f"start it with: ci-master start {args.dir}")
    return 0


def checkconfig(args: argparse.Namespace) -> int:
    """Load and validate master.cfg without starting anything."""
    from master import filemodes
    from master.config import load_config

    basedir = master_dir(args.dir)
    config = load_config(basedir)
    print(f"{basedir / 'master.cfg'} is valid: {len(config.builders)} builder(s), {len(config.plugins)} plugin(s)")
    for warning in filemodes.exposed(basedir, config.db_url):
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def upgrade_master(args: argparse.Namespace) -> int:
    """Migrate the database to the newest schema, backing up a SQLite file first."""
    from master.config import load_config
    from master.db import migrate

    basedir = master_dir(args.dir)
    if proc.running_pid(basedir) is not None:
        raise CommandError(f"the master in {basedir} is running; stop it before upgrading")
    config = load_config(basedir)
    if migrate.current_revision(config.db_url) is None:
        migrate.create(config.db_url)
        migrate.prepare_plugin_tables(config.db_url, _plugin_schemas(config))
        print(f"created the schema in {migrate.masked_url(config.db_url)}")
        return 0
    migrate.upgrade(config.db_url, progress=lambda line: print(line, flush=True))
    migrate.upgrade_plugin_tables(config.db_url, _plugin_schemas(config), progress=lambda line: print(line, flush=True))
    print(f"database {migrate.masked_url(config.db_url)} is at schema {migrate.head_revision()}")
    return 0


def start(args: argparse.Namespace) -> int:
    """Start the master: as a daemon (default) or in the foreground with --nodaemon."""
    from master import daemon
    from master.config import load_config
    from master.db import migrate

    basedir = master_dir(args.dir)
    config = load_config(basedir)
    pid = proc.running_pid(basedir)
    if pid is not None:
        raise CommandError(f"the master in {basedir} is already running (pid {pid})")
    # checked here too, to say it before forking
    migrate.check(config.db_url)
    if args.nodaemon:
        return _run_foreground(basedir, config)
    _, line = proc.start_daemon(basedir, daemon.TAC, (daemon.STARTED, daemon.FAILED), START_TIMEOUT)
    if line is None:
        raise CommandError(f"the master did not say it started within {START_TIMEOUT:.0f}s; see {basedir}/twistd.log")
    if daemon.FAILED in line:
        raise CommandError(line.split(daemon.FAILED, 1)[1].strip())
    url = line.split(daemon.STARTED, 1)[1].strip()
    print(f"ci-master started: serving {url}; log in {basedir / proc.LOGFILE}")
    return 0


def _run_foreground(basedir: Path, config: MasterConfig) -> int:
    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner, textFileLogObserver

    from master import filemodes
    from master.service import MasterService, StartupError

    os.umask(filemodes.PRIVATE_UMASK)  # as the daemon: what the master writes is its owner's only
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)], redirectStandardIO=False)
    master = MasterService(basedir, config)
    failure_message: list[str] = []

    def failed(failure):
        if failure.check(StartupError):
            failure_message.append(failure.getErrorMessage())
        else:
            failure_message.append(f"unexpected error: {failure.getErrorMessage()}")
            failure.printTraceback()
        reactor.stop()

    def started(url: str) -> None:
        print(f"ci-master is running at {url} (Ctrl-C to stop)", flush=True)

    reactor.callWhenRunning(master.startService)
    master.started.addCallbacks(started, failed)
    reactor.addSystemEventTrigger("before", "shutdown", master.stopService)
    reactor.run()
    if failure_message:
        raise CommandError(failure_message[0])
    return 0


def stop(args: argparse.Namespace) -> int:
    """Stop the master with SIGTERM and wait until it has exited; --clean lets running builds end first."""
    from master import daemon

    basedir = master_dir(args.dir)
    pid = proc.running_pid(basedir)
    if pid is None:
        raise CommandError(f"the master in {basedir} is not running")
    if getattr(args, "clean", False):
        offset = proc.log_size(basedir)
        os.kill(pid, signal.SIGUSR1)
        print("clean stop: the master starts no new build and exits when the running ones end", flush=True)
        while proc.is_running(pid):
            line = proc.wait_for_log(basedir, offset, (daemon.CLEAN_STOP,), 1.0)
            if line is not None:
                offset = proc.log_size(basedir)
                print(line.split(daemon.CLEAN_STOP, 1)[1].strip(), flush=True)
        proc.running_pid(basedir)  # twistd removes its pidfile; this clears it if it could not
        print(f"ci-master stopped (pid {pid})")
        return 0
    if not proc.stop_process(pid, STOP_TIMEOUT):
        raise CommandError(f"the master (pid {pid}) did not exit within {STOP_TIMEOUT:.0f}s")
    print(f"ci-master stopped (pid {pid})")
    return 0


def restart(args: argparse.Namespace) -> int:
    """Stop the master if it runs, then start it."""
    basedir = master_dir(args.dir)
    if proc.running_pid(basedir) is not None:
        stop(args)
    return start(args)


def reconfig(args: argparse.Namespace) -> int:
    """Make the running master reload master.cfg (SIGHUP) and report how it went."""
    from master import daemon
    from master.config import load_config

    basedir = master_dir(args.dir)
    load_config(basedir)  # a broken file is reported here, and the master is not disturbed
    pid = proc.running_pid(basedir)
    if pid is None:
        raise CommandError(f"the master in {basedir} is not running")
    offset = proc.log_size(basedir)
    os.kill(pid, signal.SIGHUP)
    line = proc.wait_for_log(
        basedir, offset, (daemon.RECONFIGURED, daemon.RECONFIG_FAILED), START_TIMEOUT,
        alive=lambda: proc.is_running(pid),
    )
    if line is None:
        raise CommandError(f"the master did not report on the reconfig; see {basedir / proc.LOGFILE}")
    if daemon.RECONFIG_FAILED in line:
        raise CommandError(line.split(daemon.RECONFIG_FAILED, 1)[1].strip())
    print(f"reconfig done: {line.split(daemon.RECONFIGURED, 1)[1].strip()}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="ci-master", description="A continuous-integration master daemon.")
    parser.add_argument("--version", action="version", version=f"ci-master {proc.package_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, run, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("dir", metavar="DIR", help="the master directory")
        sub.set_defaults(run=run)
        return sub

    command("create-master", create_master, "make a master directory with master.cfg and a new database")
    run = command("start", start, "start the master (as a daemon unless --nodaemon)")
    run.add_argument("--nodaemon", action="store_true", help="run in the foreground, logging to standard output")
    stop_parser = command("stop", stop, "stop the running master and wait for it to exit")
    stop_parser.add_argument(
        "--clean", action="store_true", help="first wait for running builds to end (no new build starts)"
    )
    restart_parser = command("restart", restart, "stop the master if it runs, then start it")
    restart_parser.set_defaults(nodaemon=False, clean=False)
    command("reconfig", reconfig, "reload master.cfg in the running master without dropping connections")
    command("checkconfig", checkconfig, "load and validate master.cfg without starting")
    command("upgrade-master", upgrade_master, "migrate the database to this version's schema")
    clean = command("cleanup", cleanup, "empty old logs and delete old builds (retention)")
    clean.add_argument("--logs-older-than", type=float, metavar="DAYS",
                       help="empty the logs of builds completed more than DAYS ago (default: log_retention_days)")
    clean.add_argument("--builds-older-than", type=float, metavar="DAYS",
                       help="delete builds completed more than DAYS ago (default: build_retention_days)")
    clean.add_argument("--artifacts-older-than", type=float, metavar="DAYS",
                       help="delete the artifacts of builds completed more than DAYS ago (default: "
                            "artifact_retention_days)")
    send = commands.add_parser(
        "sendchange", help="record a change on a running master (for scripts and VCS hooks)",
        description="record a change on a running master (for scripts and VCS hooks)",
    )
    sendchange_cli.add_arguments(send)
    send.set_defaults(run=sendchange_cli.run)
    command("plugins", list_plugins, "list the plugins master.cfg enables and those installed packages offer")

    user = commands.add_parser("user", help="manage users and API tokens", description="manage users and API tokens")
    user_commands = user.add_subparsers(dest="user_command", required=True, metavar="ACTION")

    def user_command(name: str, run, help_text: str) -> argparse.ArgumentParser:
        sub = user_commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("dir", metavar="DIR", help="the master directory")
        sub.set_defaults(run=run)
        return sub

    add = user_command("add", user_add, "add a user, or change their roles and password")
    add.add_argument("name", help="the user name")
    add.add_argument("--role", action="append", default=[], help="a role (repeatable), e.g. --role admin")
    add.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input instead of a prompt"
    )
    add.add_argument("--no-password", action="store_true", help="no password: the user logs in with tokens only")
    remove = user_command("remove", user_remove, "remove a user and their tokens")
    remove.add_argument("name", help="the user name")
    token = user_command("token", user_token, "make an API token for a user (printed once)")
    token.add_argument("name", help="the user name")
    revoke = user_command("revoke", user_revoke, "revoke an API token by its id")
    revoke.add_argument("token_id", metavar="TOKEN_ID", help="the id printed when the token was made")
    user_command("list", user_list, "list users, their roles and token ids")
    return parser


def cleanup(args: argparse.Namespace) -> int:
    """Remove old log contents and old builds now (the master also does it daily when a retention is set)."""
    from master.config import load_config
    from master.data.connector import DataAPI
    from master.data.resources import core_resource_types
    from master.db import migrate
    from master.db.backends import make_storage
    from master.retention import clean_up

    basedir = master_dir(args.dir)
    config = load_config(basedir)
    log_days = args.logs_older_than if args.logs_older_than is not None else config.log_retention_days
    build_days = args.builds_older_than if args.builds_older_than is not None else config.build_retention_days
    artifact_days = (args.artifacts_older_than if args.artifacts_older_than is not None
                     else config.artifact_retention_days)
    if log_days is None and build_days is None and artifact_days is None:
        raise CommandError("nothing to do: set log_retention_days, build_retention_days or artifact_retention_days"
                           " in master.cfg, or give --logs-older-than / --builds-older-than / --artifacts-older-than")
    for name, days in (("--logs-older-than", log_days), ("--builds-older-than", build_days),
                       ("--artifacts-older-than", artifact_days)):
        if days is not None and days <= 0:
            raise CommandError(f"{name}: expected a positive number of days, got {days:g}")
    migrate.check(config.db_url)

    async def work() -> None:
        storage = make_storage(config.db_url)
        await storage.start()
        try:
            data = DataAPI(storage, basedir=basedir)
            for rtype in core_resource_types():
                data.add_resource_type(rtype)
            await clean_up(data, log_days, build_days, progress=lambda line: print(line, flush=True),
                           artifact_days=artifact_days)
        finally:
            await storage.stop()

    run_in_reactor(work)
    return 0


def run_in_reactor(work: Any) -> Any:
    """Run coroutine function *work* in the reactor and return its result, or raise its exception."""
    from twisted.internet import defer, reactor
    from twisted.python.failure import Failure

    outcome: list[Any] = []

    def finished(result: Any) -> None:
        outcome.append(result)
        reactor.stop()

    reactor.callWhenRunning(lambda: defer.ensureDeferred(work()).addBoth(finished))
    reactor.run(installSignalHandlers=False)  # type: ignore[call-arg]  # IReactorCore.run omits the keyword
    if isinstance(outcome[0], Failure):
        outcome[0].raiseException()
    return outcome[0]


def list_plugins(args: argparse.Namespace) -> int:
    """Print the plugins master.cfg enables, then the installed ones."""
    from master.config import load_config
    from master.plugin import available_plugins

    basedir = master_dir(args.dir)
    config = load_config(basedir)
    print(f"enabled in {basedir / 'master.cfg'}:" if config.plugins else "no plugin enabled in master.cfg")
    for plugin in config.plugins:
        kind = type(plugin)
        types = ", ".join(rtype.plural for rtype in plugin.resource_types()) or "none"
        metadata = plugin.metadata()
        tables = ", ".join(sorted(metadata.tables)) if metadata is not None else "none"
        print(f"  {plugin.name}  ({kind.__module__}:{kind.__qualname__})  resource types: {types}; tables: {tables}")
    installed = available_plugins()
    enabled = {type(p).__module__ + ":" + type(p).__qualname__ for p in config.plugins}
    print("installed (entry points ci_master.plugins):" if installed else "no plugin installed by entry point")
    for name, entry in sorted(installed.items()):
        mark = "enabled" if entry.value in enabled else "not enabled"
        print(f"  {name}  ({entry.value})  {mark}")
    return 0


def _user_store(args: argparse.Namespace) -> tuple[Any, bool]:
    from master.config import load_config
    from master.www.auth import Auth, UserStore

    basedir = master_dir(args.dir)
    config = load_config(basedir)
    auth = config.auth or Auth()
    return UserStore(basedir / auth.users_file), config.auth is not None


def user_add(args: argparse.Namespace) -> int:
    """Add or update a user."""
    import getpass

    store, enabled = _user_store(args)
    if args.no_password:
        password = None
    elif args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"password for {args.name}: ")
        if password != getpass.getpass("again: "):
            raise CommandError("the passwords differ")
    if password is not None and not password:
        raise CommandError("empty password (use --no-password for a token-only user)")
    store.add_user(args.name, password, args.role)
    print(f"user {args.name} saved in {store.path} with roles: {', '.join(sorted(set(args.role))) or 'none'}")
    if not enabled:
        print("note: auth is off in master.cfg (config.auth); users take effect once it is set")
    return 0


def user_remove(args: argparse.Namespace) -> int:
    """Remove a user."""
    store, _ = _user_store(args)
    store.remove_user(args.name)
    print(f"user {args.name} removed")
    return 0


def user_token(args: argparse.Namespace) -> int:
    """Make and print an API token."""
    store, _ = _user_store(args)
    token_id, token = store.new_token(args.name)
    print(f"token {token_id} for {args.name} (shown once; send it as 'Authorization: Bearer <token>'):")
    print(token)
    return 0


def user_revoke(args: argparse.Namespace) -> int:
    """Revoke an API token."""
    store, _ = _user_store(args)
    name = store.revoke_token(args.token_id)
    print(f"token {args.token_id} of {name} revoked")
    return 0


def user_list(args: argparse.Namespace) -> int:
    """List users."""
    store, _ = _user_store(args)
    for name in store.names():
        described = store.describe(name)
        tokens = ", ".join(t["id"] for t in described["tokens"]) or "none"
        print(f"{name}  roles: {', '.join(described['roles']) or 'none'}  tokens: {tokens}")
    return 0


def _reported_errors() -> tuple[type[Exception], ...]:
    """The exceptions whose message is the whole report (imported now: the command has run)."""
    from master.config import ConfigError
    from master.db.interfaces import StorageError
    from master.www.auth import UserError

    return CommandError, ConfigError, StorageError, UserError


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``ci-master``."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except CommandError as e:
        print(f"ci-master: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as e:
        if not isinstance(e, _reported_errors()):
            raise
        print(f"ci-master: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
