"""master.cfg: plain Python that builds one :class:`MasterConfig` named ``config``.

Loading runs the file with the master directory as the working directory's stand-in for
relative paths, then validates the result; every error names the file and line, or the
key at fault.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zope.interface.verify import verifyObject

from master.data.interfaces import IPlugin
from master.data.resultspec import Limits
from master.engine.config import check_engine_config
from master.engine.latent import ILatentWorker
from master.engine.localworkers import LocalWorker
from master.plugin import PluginError, load_plugin
from master.reporters import check_reporters
from master.secrets import check_providers
from master.www.auth import Auth, ControlRule, ReadRule
from master.www.changehooks import check_settings as check_change_hooks
from master.www.httplimits import DEFAULT_MAX_BODY_BYTES


class ConfigError(Exception):
    """master.cfg could not be loaded or is invalid; the message says where and why."""


@dataclass
class WWWConfig:
    """The web server: where it listens and the URL users reach it by."""

    interface: str = "127.0.0.1"
    port: int = 8010
    base_url: str | None = None
    allowed_origins: list[str] = field(default_factory=list)
    access_log: str | None = None
    ws_max_subscriptions: int = 1000
    ws_max_connections_per_ip: int = 200
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES

    @property
    def url(self) -> str:
        """The base URL, ending in '/'."""
        url = self.base_url or f"http://{self.interface}:{self.port}/"
        return url if url.endswith("/") else url + "/"


@dataclass
class BuilderConfig:
    """A builder: its unique name, tags, description, project and the workers that may run it."""

    name: str
    tags: list[str] = field(default_factory=list)
    description: str | None = None
    project: str | None = None
    workernames: list[str] = field(default_factory=list)
    steps: list[Any] = field(default_factory=list)
    locks: list[Any] = field(default_factory=list)


@dataclass
class WorkerConfig:
    """A worker allowed to connect: its unique name and the password it logs in with."""

    name: str
    password: str = field(repr=False, default="")


@dataclass
class MasterConfig:
    """Everything master.cfg sets.  Each key is documented in master.cfg.sample."""

    title: str = "ci-master"
    db_url: str = "sqlite:///state.sqlite"
    www: WWWConfig | dict = field(default_factory=WWWConfig)
    plugins: list[Any] = field(default_factory=list)
    builders: list[BuilderConfig] = field(default_factory=list)
    workers: list[WorkerConfig | LocalWorker] = field(default_factory=list)
    schedulers: list[Any] = field(default_factory=list)
    change_hooks: dict[str, dict[str, Any]] = field(default_factory=dict)
    auth: Auth | None = None
    log_retention_days: float | None = None
    build_retention_days: float | None = None
    artifact_retention_days: float | None = None
    api_default_limit: int = 100
    api_max_limit: int = 1000
    heartbeat_seconds: float = 10.0
    master_expiry_seconds: float = 60.0
    event_retention_minutes: float = 60.0
    metrics_public: bool = False
    reporters: list[Any] = field(default_factory=list)
    db_retry_seconds: float = 30.0
    secretsProviders: list[Any] = field(default_factory=list)  # noqa: N815 (Buildbot's name)
    max_latent_workers: int | None = None

    @property
    def limits(self) -> Limits:
        """Page size bounds of the data API's collections."""
        return Limits(self.api_default_limit, self.api_max_limit)

    @property
    def web(self) -> WWWConfig:
        """``www`` as checked: a dict given in master.cfg is a :class:`WWWConfig` once the config is loaded."""
        if not isinstance(self.www, WWWConfig):
            raise ConfigError("www has not been checked yet: load the configuration with load_config()")
        return self.www


def _check(config: MasterConfig, basedir: Path) -> MasterConfig:
    if isinstance(config.www, dict):
        known = ("interface", "port", "base_url", "allowed_origins", "access_log",
                 "ws_max_subscriptions", "ws_max_connections_per_ip", "max_body_bytes")
        unknown = set(config.www) - set(known)
        if unknown:
            raise ConfigError(f"www: unknown key(s) {', '.join(sorted(unknown))} (known: {', '.join(known)})")
        config.www = WWWConfig(**config.www)
    if not isinstance(config.www.port, int) or not 0 <= config.www.port <= 65535:
        raise ConfigError(f"www.port: expected a port number, got {config.www.port!r}")
    body = config.www.max_body_bytes
    if isinstance(body, bool) or not isinstance(body, int) or body < 1:
        raise ConfigError(f"www.max_body_bytes: expected a positive number of bytes, got {body!r}")
    if not isinstance(config.title, str):
        raise ConfigError(f"title: expected a string, got {config.title!r}")
    if not isinstance(config.db_url, str) or "://" not in config.db_url:
        raise ConfigError(f"db_url: expected a database URL such as sqlite:///state.sqlite, got {config.db_url!r}")
    if config.db_url.startswith("sqlite:///") and not config.db_url[len("sqlite:///"):].startswith("/"):
        config.db_url = f"sqlite:///{basedir / config.db_url[len('sqlite:///'):]}"
    if not 1 <= config.api_default_limit <= config.api_max_limit:
        raise ConfigError("api_default_limit: must be between 1 and api_max_limit")
    origins = config.www.allowed_origins
    if not isinstance(origins, list) or not all(isinstance(o, str) for o in origins):
        raise ConfigError(
            f"www.allowed_origins: expected a list of origins like 'https://ci.example.org', got {origins!r}"
        )
    if config.www.access_log is not None and (not isinstance(config.www.access_log, str) or not config.www.access_log):
        raise ConfigError(f"www.access_log: expected a file name or None (off), got {config.www.access_log!r}")
    if not isinstance(config.metrics_public, bool):
        raise ConfigError(f"metrics_public: expected True or False, got {config.metrics_public!r}")
    for key in ("ws_max_subscriptions", "ws_max_connections_per_ip"):
        value = getattr(config.www, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"www.{key}: expected a positive integer, got {value!r}")
    _check_auth(config.auth)
    try:
        config.change_hooks = check_change_hooks(config.change_hooks)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    for key in ("log_retention_days", "build_retention_days", "artifact_retention_days"):
        value = getattr(config, key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or value <= 0):
            raise ConfigError(f"{key}: expected a positive number of days or None (keep forever), got {value!r}")
    for key in ("heartbeat_seconds", "master_expiry_seconds", "event_retention_minutes", "db_retry_seconds"):
        value = getattr(config, key)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ConfigError(f"{key}: expected a positive number, got {value!r}")
    if config.master_expiry_seconds < 2 * config.heartbeat_seconds:
        raise ConfigError(
            f"master_expiry_seconds ({config.master_expiry_seconds:g}) must be at least twice heartbeat_seconds"
            f" ({config.heartbeat_seconds:g}), or a slow heartbeat would get a live master expired"
        )
    names = set()
    for index, spec in enumerate(config.plugins):
        try:
            plugin = config.plugins[index] = load_plugin(spec)
        except PluginError as e:
            raise ConfigError(f"plugins[{index}]: {e}") from None
        try:
            verifyObject(IPlugin, plugin)
        except Exception as e:
            raise ConfigError(f"plugins[{index}]: {plugin!r} is not a ci-master plugin ({e})") from None
        if plugin.name in names:
            raise ConfigError(f"plugins[{index}]: a plugin named {plugin.name!r} is listed twice")
        names.add(plugin.name)
    workers = set()
    for index, worker in enumerate(config.workers):
        if isinstance(worker, LocalWorker) or ILatentWorker.providedBy(worker):
            if worker.name in workers:
                raise ConfigError(f"workers[{index}]: worker name {worker.name!r} is used twice")
            workers.add(worker.name)
            continue
        if not isinstance(worker, WorkerConfig):
            raise ConfigError(f"workers[{index}]: expected a WorkerConfig, a LocalWorker or a latent worker"
                              f" such as DockerLatentWorker, got {worker!r}")
        if not isinstance(worker.name, str) or not worker.name:
            raise ConfigError(f"workers[{index}].name: expected a non-empty string")
        if not isinstance(worker.password, str) or not worker.password:
            raise ConfigError(f"workers[{index}].password: a worker needs a password (plain, or a hash)")
        if worker.name in workers:
            raise ConfigError(f"workers[{index}]: worker name {worker.name!r} is used twice")
        workers.add(worker.name)
    value = config.max_latent_workers
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ConfigError(f"max_latent_workers: expected a number >= 1 or None (no cap), got {value!r}")
    seen = set()
    for index, builder in enumerate(config.builders):
        if not isinstance(builder, BuilderConfig):
            raise ConfigError(f"builders[{index}]: expected a BuilderConfig, got {builder!r}")
        if builder.name in seen:
            raise ConfigError(f"builders[{index}]: builder name {builder.name!r} is used twice")
        seen.add(builder.name)
        missing = [name for name in builder.workernames if name not in workers]
        if missing:
            raise ConfigError(f"builders[{index}].workernames: no such worker(s) {', '.join(map(repr, missing))}")
    try:
        check_engine_config(config.builders, config.schedulers)
        check_reporters(config.reporters)
        check_providers(config.secretsProviders)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    return config


def _check_auth(auth: Any) -> None:
    if auth is None:
        return
    if not isinstance(auth, Auth):
        raise ConfigError(f"auth: expected Auth(...) or None, got {auth!r}")
    if not isinstance(auth.users_file, str) or not auth.users_file:
        raise ConfigError("auth.users_file: expected a file name")
    for index, rule in enumerate(auth.rules):
        if not isinstance(rule, ControlRule):
            raise ConfigError(f"auth.rules[{index}]: expected ControlRule(...), got {rule!r}")
        if isinstance(rule.roles, str):
            raise ConfigError(f"auth.rules[{index}].roles: expected a list of role names, got {rule.roles!r}")
    for index, read_rule in enumerate(auth.read_rules or ()):
        if not isinstance(read_rule, ReadRule):
            raise ConfigError(f"auth.read_rules[{index}]: expected ReadRule(...), got {read_rule!r}")
    if not isinstance(auth.session_hours, int | float) or auth.session_hours <= 0:
        raise ConfigError("auth.session_hours: expected a positive number of hours")


def load_config(basedir: str | Path, filename: str = "master.cfg") -> MasterConfig:
    """Run ``basedir/master.cfg`` and return its validated ``config``."""
    basedir = Path(basedir).resolve()
    path = basedir / filename
    if not path.is_file():
        raise ConfigError(f"{path}: no such file (is {basedir} a master directory? see 'ci-master create-master')")
    namespace: dict[str, Any] = {"__file__": str(path), "basedir": str(basedir)}
    try:
        code = compile(path.read_text(), str(path), "exec")
        exec(code, namespace)  # noqa: S102 (master.cfg is the site's own Python)
    except SyntaxError as e:
        raise ConfigError(f"{path}:{e.lineno}: syntax error: {e.msg}") from None
    except Exception as e:
        frames = [f for f in traceback.extract_tb(e.__traceback__) if f.filename == str(path)]
        where = f"{path}:{frames[-1].lineno}" if frames else str(path)
        raise ConfigError(f"{where}: {type(e).__name__}: {e}") from None
    config = namespace.get("config")
    if not isinstance(config, MasterConfig):
        raise ConfigError(f"{path}: must define 'config = MasterConfig(...)' (see master.cfg.sample)")
    return _check(config, basedir)
