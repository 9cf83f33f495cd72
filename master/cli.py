"""The ``ci-master`` command: create a master directory and run the master."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from master.config import ConfigError, load_config
from master.db import migrate
from master.db.interfaces import StorageError

SAMPLE = Path(__file__).parent / "master.cfg.sample"


class CommandError(Exception):
    """A failure to report to the user in one line, exiting non-zero."""


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
    plugin_metadata = [m for m in (p.metadata() for p in config.plugins) if m is not None]
    migrate.create(config.db_url, plugin_metadata)
    print(f"created master in {basedir} (database {migrate.masked_url(config.db_url)})")
    print(f"start it with: ci-master start --nodaemon {args.dir}")
    return 0


def start(args: argparse.Namespace) -> int:
    """Run the master in the foreground, logging to standard output, until stopped."""
    if not args.nodaemon:
        raise CommandError("running as a daemon is not available yet: use 'ci-master start --nodaemon DIR'")
    basedir = Path(args.dir).resolve()
    if not basedir.is_dir():
        raise CommandError(f"{basedir}: no such directory")
    config = load_config(basedir)

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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="ci-master", description="A continuous-integration master daemon.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    create = commands.add_parser("create-master", help="make a master directory with master.cfg and a database")
    create.add_argument("dir", metavar="DIR")
    create.set_defaults(run=create_master)
    run = commands.add_parser("start", help="start the master in DIR")
    run.add_argument("dir", metavar="DIR")
    run.add_argument("--nodaemon", action="store_true", help="run in the foreground, logging to standard output")
    run.set_defaults(run=start)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``ci-master``."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (CommandError, ConfigError, StorageError) as e:
        print(f"ci-master: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
