"""``worker.cfg``: where the master is and how the worker logs in, as JSON in the worker directory.

The file holds the worker's password, so it is written with mode 0600 from its creation on.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from ci_common import protocol

CONFIG_FILE = "worker.cfg"
PATH = protocol.PATH.decode()  # the WebSocket endpoint on the master's web port

_SCHEMES = {"ws": "ws", "wss": "wss", "http": "ws", "https": "wss"}


class WorkerConfigError(Exception):
    """worker.cfg is missing or invalid, or a value given to create-worker is; the message says which."""


@dataclass
class WorkerConfig:
    """What a worker needs to connect: the master's WebSocket URL, its name and password, its build slots."""

    master: str
    name: str
    password: str
    max_builds: int = 1


def master_url(url: str) -> str:
    """The WebSocket URL of the master's ``/worker`` endpoint from *url*.

    ``ws://`` and ``wss://`` are taken as they are; ``http://`` and ``https://`` become ``ws://`` and
    ``wss://``; a URL whose path does not end in ``/worker`` gets it added, so the master's web
    URL (``http://ci:8010/``, or ``https://ci.example.org/ci/`` behind a prefix) is enough.
    """
    parts = urlsplit(url.strip())
    scheme = _SCHEMES.get(parts.scheme.lower())
    if scheme is None:
        raise WorkerConfigError(f"master URL {url!r}: the scheme must be ws, wss, http or https")
    if not parts.hostname:
        raise WorkerConfigError(f"master URL {url!r} names no host")
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError as e:
        raise WorkerConfigError(f"master URL {url!r}: {e}") from None
    path = parts.path.rstrip("/")
    if not path.endswith("/" + PATH):
        path = f"{path}/{PATH}"
    return urlunsplit((scheme, parts.netloc, path, parts.query, ""))


def validate(config: WorkerConfig) -> WorkerConfig:
    """*config* with its URL normalised, or WorkerConfigError naming the bad key."""
    if not isinstance(config.name, str) or not config.name.strip():
        raise WorkerConfigError("name: must be a non-empty string")
    if not isinstance(config.password, str) or not config.password:
        raise WorkerConfigError("password: must be a non-empty string")
    if isinstance(config.max_builds, bool) or not isinstance(config.max_builds, int) or config.max_builds < 1:
        raise WorkerConfigError("max_builds: must be an integer of at least 1")
    if not isinstance(config.master, str):
        raise WorkerConfigError("master: must be a URL")
    config.master = master_url(config.master)
    return config


def write_config(basedir: Path, config: WorkerConfig) -> Path:
    """Write ``worker.cfg`` in *basedir* (which must exist), readable by its owner only; never overwrites."""
    path = basedir / CONFIG_FILE
    text = json.dumps(asdict(validate(config)), indent=2) + "\n"
    # O_EXCL: never clobber an existing worker's file; 0o600 at creation: no moment where others can read it
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise WorkerConfigError(f"{path} already exists; not overwriting it") from None
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    return path


def load_config(basedir: Path) -> WorkerConfig:
    """Read and validate ``worker.cfg`` in *basedir*."""
    path = basedir / CONFIG_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise WorkerConfigError(
            f"{basedir} is not a worker directory (no {CONFIG_FILE}; see 'ci-worker create-worker')"
        ) from None
    except (OSError, UnicodeDecodeError) as e:
        raise WorkerConfigError(f"{path}: {e}") from None
    except json.JSONDecodeError as e:
        raise WorkerConfigError(f"{path}: not JSON: {e}") from None
    if not isinstance(data, dict):
        raise WorkerConfigError(f"{path}: must hold a JSON object")
    missing = [key for key in ("master", "name", "password") if key not in data]
    if missing:
        raise WorkerConfigError(f"{path}: missing key(s): {', '.join(missing)}")
    unknown = sorted(set(data) - {"master", "name", "password", "max_builds"})
    if unknown:
        raise WorkerConfigError(f"{path}: unknown key(s): {', '.join(unknown)}")
    try:
        return validate(WorkerConfig(**data))
    except WorkerConfigError as e:
        raise WorkerConfigError(f"{path}: {e}") from None
