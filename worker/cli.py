"""The ``ci-worker`` command: create a worker directory, start, stop and restart the worker.

Every failure is one line on standard error and a non-zero exit code, as with ``ci-master``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ci_common import twistd_process as proc
from ci_common.twistd_process import CommandError, program_dir
from ci_common.workerconfig import CONFIG_FILE, WorkerConfig, WorkerConfigError, load_config, validate, write_config
from worker import daemon

START_TIMEOUT = 45.0  # a first attempt to an unreachable master may take CONNECT_TIMEOUT (30 s)
STOP_TIMEOUT = 60.0


def worker_dir(path: str) -> Path:
    """*path* resolved, checked to be a worker directory."""
    return program_dir(path, CONFIG_FILE, "worker", "ci-worker create-worker")


def create_worker(args: argparse.Namespace) -> int:
    """Make DIR with worker.cfg (mode 0600: it holds the password)."""
    basedir = Path(args.dir).resolve()
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    elif args.password is not None:
        password = args.password
    else:
        raise CommandError("give the worker's password with --password P or --password-stdin")
    config = validate(WorkerConfig(master=args.master, name=args.name, password=password, max_builds=args.max_builds))
    if (basedir / CONFIG_FILE).exists():
        raise CommandError(f"{basedir / CONFIG_FILE} already exists; not overwriting it")
    basedir.mkdir(parents=True, exist_ok=True)
    write_config(basedir, config)
    print(f"created worker {config.name} in {basedir} (master {config.master}, {config.max_builds} build(s) at once)")
    print(f"start it with: ci-worker start {args.dir}")
    return 0


def start(args: argparse.Namespace) -> int:
    """Start the worker: as a daemon (default) or in the foreground with --nodaemon."""
    basedir = worker_dir(args.dir)
    config = load_config(basedir)
    stale = proc.clear_stale_pidfile(basedir)
    if stale is not None:
        print(f"removed a stale pidfile (pid {stale} is not running)")
    pid = proc.running_pid(basedir)
    if pid is not None:
        raise CommandError(f"the worker in {basedir} is already running (pid {pid})")
    if args.nodaemon:
        return _run_foreground(basedir, config)
    pid, line = proc.start_daemon(basedir, daemon.TAC, (daemon.STARTED,), START_TIMEOUT, daemon.caller_umask())
    logfile = basedir / proc.LOGFILE
    if line is None:
        if pid is not None and not proc.is_running(pid):
            raise CommandError(f"the worker exited as it started; see {logfile}")
        print(f"ci-worker started (pid {pid}), still making its first connection to {config.master}; log in {logfile}")
        return 0
    detail = line.split(daemon.STARTED, 1)[1].strip()
    print(f"ci-worker started: {detail}; log in {logfile}")
    return 0


def _run_foreground(basedir: Path, config: WorkerConfig) -> int:
    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner, textFileLogObserver

    from worker.client import Worker

    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)], redirectStandardIO=False)
    worker = Worker(basedir, config, on_leave=reactor.stop)
    print(f"ci-worker {config.name} running in the foreground, master {config.master} (Ctrl-C to stop)", flush=True)
    reactor.callWhenRunning(worker.startService)
    reactor.addSystemEventTrigger("before", "shutdown", worker.stopService)
    reactor.run()
    return 0


def stop(args: argparse.Namespace) -> int:
    """Stop the worker with SIGTERM (its commands are interrupted) and wait until it has exited."""
    basedir = worker_dir(args.dir)
    stale = proc.clear_stale_pidfile(basedir)
    if stale is not None:
        raise CommandError(f"the worker in {basedir} is not running (removed a stale pidfile of pid {stale})")
    pid = proc.running_pid(basedir)
    if pid is None:
        raise CommandError(f"the worker in {basedir} is not running")
    if not proc.stop_process(pid, STOP_TIMEOUT):
        raise CommandError(f"the worker (pid {pid}) did not exit within {STOP_TIMEOUT:.0f}s")
    print(f"ci-worker stopped (pid {pid})")
    return 0


def restart(args: argparse.Namespace) -> int:
    """Stop the worker if it runs, then start it."""
    basedir = worker_dir(args.dir)
    if proc.running_pid(basedir) is not None:
        stop(args)
    return start(args)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="ci-worker", description="A worker of ci-master: runs builds' commands.")
    parser.add_argument("--version", action="version", version=f"ci-worker {proc.package_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, run, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("dir", metavar="DIR", help="the worker directory")
        sub.set_defaults(run=run)
        return sub

    create = command("create-worker", create_worker, "make a worker directory with worker.cfg")
    create.add_argument(
        "--master", required=True, metavar="URL",
        help="the master's worker endpoint, e.g. ws://127.0.0.1:8010/worker (http://host:port is enough)",
    )
    create.add_argument("--name", required=True, help="the worker's name, as in the master's configuration")
    create.add_argument("--password", help="the worker's password (visible to other users in ps; see --password-stdin)")
    create.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    create.add_argument(
        "--max-builds", type=int, default=1, metavar="K", help="how many builds the worker runs at once (default 1)"
    )
    run = command("start", start, "start the worker (as a daemon unless --nodaemon)")
    run.add_argument("--nodaemon", action="store_true", help="run in the foreground, logging to standard output")
    command("stop", stop, "stop the running worker (interrupting its commands) and wait for it to exit")
    command("restart", restart, "stop the worker if it runs, then start it").set_defaults(nodaemon=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``ci-worker``."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (CommandError, WorkerConfigError) as e:
        print(f"ci-worker: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"ci-worker: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
