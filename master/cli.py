"""The ``ci-master`` command: create, start, stop, reconfigure and upgrade a master.

Every failure is one line on standard error and a non-zero exit code.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
from pathlib import Path

from master import daemon
from master.config import ConfigError, MasterConfig, load_config
from master.db import migrate
from master.db.interfaces import StorageError

SAMPLE = Path(__file__).parent / "master.cfg.sample"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 60.0


class CommandError(Exception):
    """A failure to report to the user in one line, exiting non-zero."""


def master_dir(path: str) -> Path:
    """*path* resolved, checked to be a master directory."""
    basedir = Path(path).resolve()
    if not basedir.is_dir():
        raise CommandError(f"{basedir}: no such directory")
    if not (basedir / "master.cfg").is_file():
        raise CommandError(f"{basedir} is not a master directory (no master.cfg; see 'ci-master create-master')")
    return basedir


def _plugin_metadata(config: MasterConfig) -> list:
    return [m for m in (p.metadata() for p in config.plugins) if m is not None]


def create_master(args: argparse.Namespace) -> int:
    """Make DIR with master.cfg from the sample and a database at the newest schema."""
    basedir = Path(args.dir).resolve()
    config_path = basedir / "master.cfg"
    if config_path.exists():
        raise CommandError(f"{config_path} already exists; not overwriting it")
    basedir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(SAMPLE, config_path)
    shutil.copyfile(SAMPLE, basedir / "master.cfg.sample")
    config = load_config(basedir)
    migrate.create(config.db_url, _plugin_metadata(config))
    print(f"created master in {basedir} (database {migrate.masked_url(config.db_url)})")
    print(f"start it with: ci-master start {args.dir}")
    return 0


def checkconfig(args: argparse.Namespace) -> int:
    """Load and validate master.cfg without starting anything."""
    basedir = master_dir(args.dir)
    config = load_config(basedir)
    print(f"{basedir / 'master.cfg'} is valid: {len(config.builders)} builder(s), {len(config.plugins)} plugin(s)")
    return 0


def upgrade_master(args: argparse.Namespace) -> int:
    """Migrate the database to the newest schema, backing up a SQLite file first."""
    basedir = master_dir(args.dir)
    if daemon.running_pid(basedir) is not None:
        raise CommandError(f"the master in {basedir} is running; stop it before upgrading")
    config = load_config(basedir)
    if migrate.current_revision(config.db_url) is None:
        migrate.create(config.db_url, _plugin_metadata(config))
        print(f"created the schema in {migrate.masked_url(config.db_url)}")
        return 0
    migrate.upgrade(config.db_url, progress=lambda line: print(line, flush=True))
    migrate.create_plugin_tables(config.db_url, _plugin_metadata(config))
    print(f"database {migrate.masked_url(config.db_url)} is at schema {migrate.head_revision()}")
    return 0


def start(args: argparse.Namespace) -> int:
    """Start the master: as a daemon (default) or in the foreground with --nodaemon."""
    basedir = master_dir(args.dir)
    config = load_config(basedir)
    pid = daemon.running_pid(basedir)
    if pid is not None:
        raise CommandError(f"the master in {basedir} is already running (pid {pid})")
    # checked here too, to say it before forking
    migrate.check(config.db_url)
    if args.nodaemon:
        return _run_foreground(basedir, config)
    offset = daemon.log_size(basedir)
    spawned = daemon.spawn_twistd(basedir)
    if spawned.returncode != 0:
        detail = (spawned.stderr or spawned.stdout).strip().splitlines()
        raise CommandError(f"twistd failed to start: {detail[-1] if detail else 'no output'}")
    pid = daemon.read_pid(basedir)
    line = daemon.wait_for_log(
        basedir, offset, (daemon.STARTED, daemon.FAILED), START_TIMEOUT,
        alive=lambda: pid is None or daemon.is_running(pid),
    )
    if line is None:
        raise CommandError(f"the master did not say it started within {START_TIMEOUT:.0f}s; see {basedir}/twistd.log")
    if daemon.FAILED in line:
        raise CommandError(line.split(daemon.FAILED, 1)[1].strip())
    url = line.split(daemon.STARTED, 1)[1].strip()
    print(f"ci-master started: serving {url}; log in {basedir / daemon.LOGFILE}")
    return 0


def _run_foreground(basedir: Path, config: MasterConfig) -> int:
    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner, textFileLogObserver

    from master.service import MasterService, StartupError

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
    """Stop the master with SIGTERM and wait until it has exited."""
    basedir = master_dir(args.dir)
    pid = daemon.running_pid(basedir)
    if pid is None:
        raise CommandError(f"the master in {basedir} is not running")
    if not daemon.stop_process(pid, STOP_TIMEOUT):
        raise CommandError(f"the master (pid {pid}) did not exit within {STOP_TIMEOUT:.0f}s")
    print(f"ci-master stopped (pid {pid})")
    return 0


def restart(args: argparse.Namespace) -> int:
    """Stop the master if it runs, then start it."""
    basedir = master_dir(args.dir)
    if daemon.running_pid(basedir) is not None:
        stop(args)
    return start(args)


def reconfig(args: argparse.Namespace) -> int:
    """Make the running master reload master.cfg (SIGHUP) and report how it went."""
    basedir = master_dir(args.dir)
    load_config(basedir)  # a broken file is reported here, and the master is not disturbed
    pid = daemon.running_pid(basedir)
    if pid is None:
        raise CommandError(f"the master in {basedir} is not running")
    offset = daemon.log_size(basedir)
    os.kill(pid, signal.SIGHUP)
    line = daemon.wait_for_log(
        basedir, offset, (daemon.RECONFIGURED, daemon.RECONFIG_FAILED), START_TIMEOUT,
        alive=lambda: daemon.is_running(pid),
    )
    if line is None:
        raise CommandError(f"the master did not report on the reconfig; see {basedir / daemon.LOGFILE}")
    if daemon.RECONFIG_FAILED in line:
        raise CommandError(line.split(daemon.RECONFIG_FAILED, 1)[1].strip())
    print(f"reconfig done: {line.split(daemon.RECONFIGURED, 1)[1].strip()}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="ci-master", description="A continuous-integration master daemon.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, run, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("dir", metavar="DIR", help="the master directory")
        sub.set_defaults(run=run)
        return sub

    command("create-master", create_master, "make a master directory with master.cfg and a new database")
    run = command("start", start, "start the master (as a daemon unless --nodaemon)")
    run.add_argument("--nodaemon", action="store_true", help="run in the foreground, logging to standard output")
    command("stop", stop, "stop the running master and wait for it to exit")
    restart_parser = command("restart", restart, "stop the master if it runs, then start it")
    restart_parser.set_defaults(nodaemon=False)
    command("reconfig", reconfig, "reload master.cfg in the running master without dropping connections")
    command("checkconfig", checkconfig, "load and validate master.cfg without starting")
    command("upgrade-master", upgrade_master, "migrate the database to this version's schema")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``ci-master``."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (CommandError, ConfigError, StorageError) as e:
        print(f"ci-master: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
