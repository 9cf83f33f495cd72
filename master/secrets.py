"""Secrets: values that builds need (tokens, passwords) and that must never be stored or shown.

master.cfg lists where they come from, asked in order until one knows the name::

    secretsProviders=[
        SecretInAFile(dirname="/etc/ci/secrets"),      # the file /etc/ci/secrets/NAME (owner-only)
        SecretInEnvironment(prefix="CI_SECRET_"),      # the master's variable CI_SECRET_NAME
        SecretInVault(url="https://vault:8200", token="...", path="secret/ci"),   # KV v2, key "value"
    ]

and steps name them with ``Secret("name")`` or ``Interpolate("... %(secret:name)s ...")``.  A build
reads the secrets its steps name when it starts (a secret no provider knows fails the build
then, its name in the build's state string); a secret's value exists only in the build's memory
and in the command given to the worker.  It is not a property, and every text the build stores
(log lines, step and build state strings, properties a step sets) has each value replaced by
``<secret:name>``.  Log lines are redacted whole, after the output chunks are joined, so a value
split across two chunks is caught too.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from twisted.internet import threads

from master.engine.config import Configured
from master.engine.properties import Properties, Renderable

NAME = re.compile(r"^[A-Za-z0-9_.\-/]+$")
INTERPOLATED = re.compile(r"%\(secret:([^)]*)\)")


class SecretError(Exception):
    """A secret could not be read; the message names it (never its value)."""


class SecretProvider(Configured):
    """Where secrets come from: :meth:`get` returns a secret's value, or None when this provider has no such one."""

    async def get(self, name: str) -> str | None:
        """The value of secret *name*, or None."""
        raise NotImplementedError


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME.match(name) or ".." in name.split("/"):
        raise SecretError(f"bad secret name {name!r}: letters, digits and _ . - / only")
    return name


class SecretInAFile(SecretProvider):
    """Secret NAME is the content of the file *dirname*/NAME (its last newline dropped when *strip*).

    As in Buildbot, a file others than its owner may read is refused (the build fails, naming it).
    """

    def __init__(self, dirname: str, strip: bool = True) -> None:
        self.dirname = dirname
        self.strip = strip

    async def get(self, name: str) -> str | None:
        """The file's content, or None when there is no such file."""
        return await threads.deferToThread(self._read, _check_name(name))

    def _read(self, name: str) -> str | None:
        path = Path(self.dirname) / name
        try:
            info = os.stat(path)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise SecretError(f"secret {name!r}: cannot read {path}: {e.strerror}") from None
        if not stat.S_ISREG(info.st_mode):
            return None
        if info.st_mode & 0o077:
            raise SecretError(f"secret {name!r}: the permissions of {path} ({stat.S_IMODE(info.st_mode):o}) are too"
                              " open: make it readable by its owner only (chmod 600)")
        text = path.read_text()
        return text.rstrip("\r\n") if self.strip else text


class SecretInEnvironment(SecretProvider):
    """Secret NAME is the master's environment variable *prefix* + NAME."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix

    async def get(self, name: str) -> str | None:
        """The variable's value, or None when it is unset."""
        return os.environ.get(self.prefix + _check_name(name))


class SecretInVault(SecretProvider):
    """Secret NAME is the key *key* (``value``) of the HashiCorp Vault KV version 2 secret *path*/NAME.

    *path* begins with the secrets engine's mount point (``secret/ci``: mount ``secret``, secrets
    under ``ci/``).  Needs the ``hvac`` package (``pip install 'ci-master[vault]'``).
    """

    def __init__(self, url: str, token: str, path: str = "secret", key: str = "value", verify: bool | str = True):
        self.url = url
        self.token = token
        self.path = path.strip("/")
        self.key = key
        self.verify = verify

    def __repr__(self) -> str:  # the token stays out of messages and logs
        return f"SecretInVault(url={self.url!r}, path={self.path!r})"

    async def get(self, name: str) -> str | None:
        """The key's value in Vault, or None when Vault has no such secret or key."""
        return await threads.deferToThread(self._read, _check_name(name))

    def _read(self, name: str) -> str | None:
        try:
            import hvac
            import hvac.exceptions
        except ImportError:
            raise SecretError("SecretInVault needs the hvac package: pip install 'ci-master[vault]'") from None
        mount, _, prefix = self.path.partition("/")
        client = hvac.Client(url=self.url, token=self.token, verify=self.verify)
        try:
            answer = client.secrets.kv.v2.read_secret_version(
                path=f"{prefix}/{name}" if prefix else name, mount_point=mount, raise_on_deleted_version=True)
        except hvac.exceptions.InvalidPath:
            return None
        except Exception as e:  # the server's message, never the token
            raise SecretError(f"secret {name!r}: Vault at {self.url} failed: {type(e).__name__}") from None
        value = ((answer or {}).get("data") or {}).get("data", {}).get(self.key)
        return None if value is None else str(value)


class Secret(Renderable):
    """The value of secret *name*, read when the build starts (see the module)."""

    def __init__(self, name: str) -> None:
        self.name = _check_name(name)

    def render(self, props: Properties) -> str:
        """The value the build read."""
        secrets = getattr(props, "secrets", None) or {}
        if self.name not in secrets:
            raise SecretError(f"secret {self.name!r} was not read when the build started")
        return secrets[self.name]

    def __repr__(self) -> str:
        return f"Secret({self.name!r})"


def check_providers(providers: Any) -> list[SecretProvider]:
    """*providers* as a list; ValueError naming ``secretsProviders`` otherwise."""
    if not isinstance(providers, list | tuple):
        raise ValueError("secretsProviders: expected a list such as [SecretInAFile(dirname='secrets')]")
    for index, provider in enumerate(providers):
        if not isinstance(provider, SecretProvider):
            raise ValueError(f"secretsProviders[{index}]: expected SecretInAFile, SecretInEnvironment or"
                             f" SecretInVault, got {provider!r}")
    return list(providers)


def secret_names(value: Any, found: set[str] | None = None) -> set[str]:
    """The names of the secrets *value* (a step, a renderable, containers of them) uses."""
    found = set() if found is None else found
    if isinstance(value, Secret):
        found.add(value.name)
    elif isinstance(value, str):
        found.update(INTERPOLATED.findall(value))
    elif isinstance(value, Configured):
        args, kwargs = value._init_args
        secret_names(list(args) + list(kwargs.values()), found)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            secret_names(key, found)
            secret_names(item, found)
    elif isinstance(value, list | tuple | set):
        for item in value:
            secret_names(item, found)
    return found


async def read_secrets(providers: Iterable[SecretProvider], names: Iterable[str]) -> dict[str, str]:
    """``{name: value}`` of every secret of *names*; SecretError naming the first that no provider knows."""
    providers = list(providers)
    values = {}
    for name in sorted(names):
        for provider in providers:
            value = await provider.get(name)
            if value is not None:
                values[name] = value
                break
        else:
            where = ", ".join(type(p).__name__ for p in providers) or "no secretsProviders configured"
            raise SecretError(f"secret {name!r} not found ({where})")
    return values


class Redactor:
    """Replaces each secret value in a text by ``<secret:name>`` (the longest values first)."""

    def __init__(self, secrets: Mapping[str, str]) -> None:
        pairs: dict[str, str] = {}
        for name, value in secrets.items():
            if value:
                pairs.setdefault(value, name)
                # a value of several lines is stored line by line: each of its lines goes too
                for line in value.splitlines():
                    if len(line.strip()) >= 4:
                        pairs.setdefault(line, name)
        self._pairs = sorted(pairs.items(), key=lambda pair: -len(pair[0]))

    def __bool__(self) -> bool:
        return bool(self._pairs)

    def __call__(self, text: str) -> str:
        """*text* with every value replaced."""
        for value, name in self._pairs:
            if value in text:
                text = text.replace(value, f"<secret:{name}>")
        return text

    def value(self, value: Any) -> Any:
        """*value* redacted if it holds text (strings, and containers of them)."""
        if isinstance(value, str):
            return self(value)
        if isinstance(value, list | tuple):
            return type(value)(self.value(item) for item in value)
        if isinstance(value, dict):
            return {key: self.value(item) for key, item in value.items()}
        return value


async def load_build_secrets(build: Any) -> str | None:
    """Read the secrets the steps of *build* use into its memory; return why the build cannot run, or None."""
    names = secret_names(build.builder.steps)
    build.redact = Redactor({})
    if not names:
        return None
    providers = getattr(getattr(build.engine, "config", None), "secretsProviders", None) or []
    try:
        values = await read_secrets(providers, names)
    except SecretError as e:
        return str(e)
    build.props.secrets = values
    build.redact = Redactor(values)
    return None
