"""Keeping a master directory's secrets to its owner: the directory 0700, its secret files 0600.

``master.cfg`` holds worker passwords, tokens and hook secrets; the SQLite database (with its
``-wal`` and ``-shm`` files) holds DCI remotecis' API secrets and everything built; the log
may quote any of them; ``users.json``, ``session.key`` and ``sessions_ended.json`` are the
accounts and sessions.  ``create-master`` makes them private, the daemon creates files with
umask 077 (and its log 0600), and ``checkconfig`` warns about any of them that others may
read.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from sqlalchemy.engine import make_url

PRIVATE_UMASK = 0o077
DIR_MODE = 0o700
FILE_MODE = 0o600
FIXED_FILES = ("master.cfg", "twistd.log", "users.json", "session.key", "sessions_ended.json")


def sqlite_files(basedir: Path, db_url: str) -> list[Path]:
    """The SQLite database of *db_url* and its companion files (``-wal``, ``-shm``, ``-journal``); none for a server."""
    try:
        url = make_url(db_url)
    except Exception:  # a bad URL is checkconfig's to report, not ours
        return []
    if not url.drivername.startswith("sqlite") or not url.database or url.database == ":memory:":
        return []
    database = Path(url.database)
    database = database if database.is_absolute() else basedir / database
    return [database] + [database.with_name(database.name + suffix) for suffix in ("-wal", "-shm", "-journal")]


def private_files(basedir: Path, db_url: str) -> list[Path]:
    """The files of the master directory that only its owner should read, those that exist."""
    candidates = [basedir / name for name in FIXED_FILES] + sqlite_files(basedir, db_url)
    candidates += sorted(basedir.glob("twistd.log.*"))  # rotated logs
    return [path for path in candidates if path.exists()]


def make_private(basedir: Path, db_url: str) -> None:
    """Make *basedir* 0700 and its secret files 0600."""
    os.chmod(basedir, DIR_MODE)
    for path in private_files(basedir, db_url):
        os.chmod(path, FILE_MODE)


def exposed(basedir: Path, db_url: str) -> list[str]:
    """A warning for the directory and each secret file that others than the owner may read."""
    warnings = []
    for path, private in [(basedir, DIR_MODE), *((p, FILE_MODE) for p in private_files(basedir, db_url))]:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            warnings.append(f"{path} is readable by others (mode {mode:04o}); make it {private:04o}: "
                            f"chmod {private:o} {path}")
    return warnings
