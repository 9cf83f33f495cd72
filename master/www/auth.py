"""Users, API tokens, sessions and the rules saying who may call which action.

One model that every API maps its own scheme onto:

* **Users** live in a file of the master directory (``users.json`` by default), each with
  a salted scrypt password hash and a list of roles.  ``ci-master user ...`` edits it;
  the master re-reads it when it changes, so a new token works at once.
* **API tokens** are random strings shown once when made; only their SHA-256 is kept, so
  the file never holds a usable token.  A token is sent as ``Authorization: Bearer``.
  Each has an id, to revoke it without knowing it.
* **Sessions**: a login (``/auth/login``, with a password) sets a cookie signed with a
  per-master secret (HMAC-SHA256), valid for ``session_hours``.  The master can end one
  before then: ``/auth/logout`` records the session's id as ended (``sessions_ended.json``
  in the master directory, kept until the session would have expired), and each user has a
  session generation in the users file, renewed when their password is set (``ci-master
  user add``), so that a password change, or ``ci-master user remove``, ends all of that
  user's sessions at once.
* **Rules** (``Auth.rules`` in master.cfg) say which roles may call which actions on which
  resource types.  Reads are public; a control that no rule allows is refused: 401 when
  nobody is logged in, 403 when the user lacks the role.

With ``auth`` unset in master.cfg every control is open, which suits a master on
127.0.0.1 and nothing else.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import EllipsisType
from typing import Any, Protocol

from twisted.web.iweb import IRequest

from master.data.readscope import open_read_scope
from master.security import b64, check_password, hash_password, token_hash, unb64

SESSION_COOKIE = b"ci_master_session"
TOKEN_PREFIX = "cim_"


class AuthError(Exception):
    """A request may not do what it asks: *status* 401 (who are you?) or 403 (not you)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class UserError(ValueError):
    """A user-file operation cannot be done (unknown user, bad name...); the message says why."""


@dataclass(frozen=True)
class User:
    """An authenticated user and their roles."""

    name: str
    roles: frozenset[str] = frozenset()

    def to_json(self) -> dict[str, Any]:
        """The user as the web UI and ``/auth/user`` show it."""
        return {"username": self.name, "roles": sorted(self.roles), "anonymous": False}


@dataclass
class ControlRule:
    """Users having one of *roles* may call *actions* (names, or ``"*"``) on *resources* (plural names, or ``"*"``)."""

    roles: Iterable[str]
    actions: Iterable[str] | str = "*"
    resources: Iterable[str] | str = "*"

    def allows(self, resource: str, action: str) -> bool:
        """Whether this rule covers *action* on *resource* (whoever calls it)."""
        return _matches(self.actions, action) and _matches(self.resources, resource)


@dataclass
class ReadRule:
    """Users having one of *roles* (``"*"``: anyone, even signed out) may read *resources* (plural names or ``"*"``)."""

    roles: Iterable[str] | str
    resources: Iterable[str] | str = "*"

    def allows(self, resource: str) -> bool:
        """Whether this rule covers reading *resource* (whoever reads it)."""
        return _matches(self.resources, resource)


def _matches(names: Iterable[str] | str, name: str) -> bool:
    if isinstance(names, str):
        return names in ("*", name)
    return "*" in names or name in names


@dataclass
class Auth:
    """master.cfg's ``auth``: where users are kept and who may control what."""

    users_file: str = "users.json"
    rules: list[ControlRule] = field(default_factory=lambda: [ControlRule(roles=["admin"])])
    session_hours: float = 24.0
    # None: anyone may read everything (REST and live updates); else only what a rule allows
    read_rules: list[ReadRule] | None = None


def _roles(roles: Iterable[str] | str) -> list[str]:
    return [roles] if isinstance(roles, str) else list(roles)


class UserStore:
    """The users file: ``{"users": {name: {"password", "roles", "tokens": [{"id", "sha256", "created"}]}}}``.

    Writes replace the file atomically (write, fsync, rename), so a crash never leaves it half written.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._users: dict[str, dict[str, Any]] = {}
        self._loaded_stamp: tuple[int, int] | None = None

    def _stamp(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def reload_if_changed(self) -> None:
        """Re-read the file if it changed since last read (the CLI edits it under a running master)."""
        stamp = self._stamp()
        if stamp == self._loaded_stamp:
            return
        if stamp is None:
            self._users = {}
        else:
            try:
                content = json.loads(self.path.read_text())
                users = content["users"]
                if not isinstance(users, dict):
                    raise TypeError("'users' must be an object")
            except (ValueError, KeyError, TypeError) as e:
                raise UserError(f"{self.path}: not a users file ({e})") from None
            self._users = users
        self._loaded_stamp = stamp

    def _save(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump({"users": self._users}, handle, indent=2, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)
        self._loaded_stamp = self._stamp()

    def names(self) -> list[str]:
        """Every user name, sorted."""
        self.reload_if_changed()
        return sorted(self._users)

    def describe(self, name: str) -> dict[str, Any]:
        """Roles and token ids of user *name* (never the hashes)."""
        entry = self._entry(name)
        return {
            "name": name,
            "roles": list(entry.get("roles", [])),
            "tokens": [{"id": t["id"], "created": t["created"]} for t in entry.get("tokens", [])],
        }

    def _entry(self, name: str) -> dict[str, Any]:
        self.reload_if_changed()
        if name not in self._users:
            raise UserError(f"no such user: {name}")
        return self._users[name]

    def add_user(self, name: str, password: str | None, roles: Iterable[str]) -> None:
        """Add user *name*, or replace their password and roles if they exist (tokens are kept)."""
        if not name or any(c.isspace() or c == ":" for c in name):
            raise UserError(f"bad user name {name!r}: no spaces or ':' allowed")
        self.reload_if_changed()
        entry = self._users.setdefault(name, {"tokens": []})
        entry["roles"] = sorted(set(roles))
        entry["password"] = hash_password(password) if password else None
        entry["sessions"] = secrets.token_hex(8)  # a new password (or none) ends the sessions opened before
        self._save()

    def remove_user(self, name: str) -> None:
        """Remove user *name* and every token of theirs."""
        self._entry(name)
        del self._users[name]
        self._save()

    def new_token(self, name: str) -> tuple[str, str]:
        """Make an API token for *name*; return ``(token id, token)``.  The token is not kept."""
        entry = self._entry(name)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        token_id = secrets.token_hex(4)
        record = {"id": token_id, "sha256": token_hash(token), "created": int(time.time())}
        entry.setdefault("tokens", []).append(record)
        self._save()
        return token_id, token

    def revoke_token(self, token_id: str) -> str:
        """Revoke the token with id *token_id*; return its user's name."""
        self.reload_if_changed()
        for name, entry in self._users.items():
            kept = [t for t in entry.get("tokens", []) if t["id"] != token_id]
            if len(kept) != len(entry.get("tokens", [])):
                entry["tokens"] = kept
                self._save()
                return name
        raise UserError(f"no token with id {token_id}")

    def user(self, name: str) -> User | None:
        """The user *name*, or None."""
        self.reload_if_changed()
        entry = self._users.get(name)
        return User(name, frozenset(entry.get("roles", []))) if entry is not None else None

    def session_generation(self, name: str) -> str | None:
        """The current session generation of user *name* (a session of another one has ended); None if no such user."""
        self.reload_if_changed()
        entry = self._users.get(name)
        if entry is None:
            return None
        # a users file written before generations existed: the password hash stands in for one
        return entry.get("sessions") or entry.get("password") or ""

    def by_password(self, name: str, password: str) -> User | None:
        """The user if *password* is theirs, else None."""
        self.reload_if_changed()
        entry = self._users.get(name)
        if entry is None or not entry.get("password") or not check_password(password, entry["password"]):
            return None
        return User(name, frozenset(entry.get("roles", [])))

    def by_token(self, token: str) -> User | None:
        """The user owning *token*, else None."""
        self.reload_if_changed()
        wanted = token_hash(token)
        for name, entry in self._users.items():
            for stored in entry.get("tokens", []):
                if hmac.compare_digest(stored["sha256"], wanted):
                    return User(name, frozenset(entry.get("roles", [])))
        return None


class RequestHeaders(Protocol):
    """What :meth:`Authenticator.authenticate` reads of a request: a websocket handshake has it too."""

    def getHeader(self, name: bytes) -> bytes | None:  # noqa: N802 (twisted.web's name)
        """The value of header *name*, or None."""

    def getCookie(self, name: bytes) -> bytes | None:  # noqa: N802
        """The value of cookie *name*, or None."""


class Authenticator:
    """Finds who makes a request (token, session cookie or Basic password) and checks the rules."""

    def __init__(self, config: Auth | None, basedir: str | Path) -> None:
        self.basedir = Path(basedir)
        self.reconfigure(config)

    def reconfigure(self, config: Auth | None) -> None:
        """Apply a new ``auth`` setting (reconfig): rules, users file and sessions take effect at once."""
        self.config = config
        self.users = UserStore(self.basedir / config.users_file) if config else None
        self._secret = _session_secret(self.basedir) if config else b""
        self.ended = EndedSessions(self.basedir / "sessions_ended.json")

    @property
    def enabled(self) -> bool:
        """Whether auth is on (``auth`` set in master.cfg)."""
        return self.config is not None

    def authenticate(self, request: IRequest | RequestHeaders) -> User | None:
        """The user making *request*, or None when anonymous; AuthError(401) for bad credentials."""
        users = self.users
        if users is None:  # auth is off
            return None
        header = (request.getHeader(b"authorization") or b"").decode("latin-1")
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() == "bearer":
            user = users.by_token(credentials.strip())
            if user is None:
                raise AuthError(401, "invalid or revoked API token")
            return user
        if scheme.lower() == "basic":
            try:
                name, _, password = base64.b64decode(credentials.strip()).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                raise AuthError(401, "malformed Basic credentials") from None
            user = users.by_password(name, password)
            if user is None:
                raise AuthError(401, "wrong user name or password")
            return user
        cookie = request.getCookie(SESSION_COOKIE)
        if cookie:
            return self.session_user(cookie.decode("latin-1"))
        return None

    def authorize(self, user: User | None, resource: str, action: str) -> None:
        """Raise AuthError unless *user* may call *action* on resource type *resource*."""
        if self.config is None:
            return
        rules = [rule for rule in self.config.rules if rule.allows(resource, action)]
        if any(user is not None and user.roles & set(rule.roles) for rule in rules):
            return
        if user is None:
            raise AuthError(401, f"authentication required to call {action!r} on {resource}")
        raise AuthError(403, f"user {user.name!r} may not call {action!r} on {resource}")

    @property
    def restricts_reads(self) -> bool:
        """Whether reads need authorization (auth on, with ``read_rules``)."""
        return self.config is not None and self.config.read_rules is not None

    def authorize_read(self, user: User | None, resource: str) -> None:
        """Raise AuthError unless *user* may read resource type *resource* (``read_rules``)."""
        if self.config is None or self.config.read_rules is None:
            return
        for rule in self.config.read_rules:
            if rule.allows(resource) and (
                _matches(rule.roles, "*") or (user is not None and user.roles & set(_roles(rule.roles)))
            ):
                return
        if user is None:
            raise AuthError(401, f"authentication required to read {resource}")
        raise AuthError(403, f"user {user.name!r} may not read {resource}")

    def scope_reads(self, user: User | None) -> None:
        """Check every later ``data.get`` of the running coroutine against the read rules, as *user*.

        Plugins' web routes call this (inside their coroutine) once they know who the caller
        is, so that every resource type they read needs the rule a REST read of it needs.
        Nothing is checked when reads are not restricted.
        """
        if not self.restricts_reads:
            open_read_scope(None)
            return
        open_read_scope(lambda plural: self.authorize_read(user, plural))

    def make_session(self, user: User) -> str:
        """A signed cookie value naming *user* until the session expires."""
        if self.config is None or self.users is None:
            raise RuntimeError("sessions are made only when auth is on")
        expires = int(time.time() + self.config.session_hours * 3600)
        content = {"u": user.name, "exp": expires, "sid": secrets.token_hex(16),
                   "gen": _generation_tag(self.users.session_generation(user.name))}
        payload = b64(json.dumps(content).encode())
        return f"{payload}.{b64(hmac.new(self._secret, payload.encode(), hashlib.sha256).digest())}"

    def _session(self, value: str) -> dict[str, Any] | None:
        """The content of a genuine, unexpired session cookie, else None."""
        payload, _, signature = value.partition(".")
        expected = b64(hmac.new(self._secret, payload.encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(signature, expected):
            return None
        try:
            content = json.loads(unb64(payload))
        except ValueError:
            return None
        if not isinstance(content, dict) or not isinstance(content.get("exp"), int) or content["exp"] < time.time():
            return None
        return content

    def session_user(self, value: str) -> User | None:
        """The user of a session cookie, or None if it is forged, expired or ended, or the user is gone."""
        content = self._session(value)
        if content is None or not isinstance(content.get("sid"), str) or content["sid"] in self.ended:
            return None
        if self.users is None:  # auth was turned off since the login
            return None
        name = content.get("u", "")
        if content.get("gen") != _generation_tag(self.users.session_generation(name)):
            return None  # the user's password changed, or the user was removed, since the login
        return self.users.user(name)

    def end_session(self, value: str) -> None:
        """End the session of cookie *value* for good (logout); a forged or expired one needs no ending."""
        content = self._session(value)
        if content is not None and isinstance(content.get("sid"), str):
            self.ended.add(content["sid"], content["exp"])


def _session_secret(basedir: Path) -> bytes:
    """The master's session-signing secret, made on first use and kept readable by its owner only."""
    path = basedir / "session.key"
    try:
        return bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        pass
    secret = secrets.token_bytes(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: use theirs
        return bytes.fromhex(path.read_text().strip())
    with os.fdopen(fd, "w") as handle:
        handle.write(secret.hex())
    return secret


def scope_plugin_reads(data: Any, request: IRequest, user: User | None | EllipsisType = ...) -> None:
    """Open the read scope of a plugin's GET route for its caller: *user*, or whoever *request* authenticates as.

    *data* carries the master's Authenticator as ``data.auth`` (the master service binds it);
    without one, or without read rules, reads stay public.  Raises AuthError(401) for bad
    credentials; the reads themselves raise AuthError(401/403) when a rule is missing.
    """
    auth = data.auth
    if auth is None or not auth.restricts_reads:
        open_read_scope(None)
        return
    auth.scope_reads(auth.authenticate(request) if user is ... else user)


def _generation_tag(generation: str | None) -> str | None:
    # a digest, so that the cookie does not carry a password hash (the stand-in for old files)
    return hashlib.sha256(generation.encode()).hexdigest()[:16] if generation is not None else None


class EndedSessions:
    """Ids of sessions ended before they expire (logout), kept in a file of the master directory.

    An id is dropped once its session would have expired anyway, so the file stays small.
    It is re-read when it changes, so that a restarted master still refuses the cookies.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._ids: dict[str, int] = {}
        self._stamp: tuple[int, int] | None = None

    def _reload(self) -> None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._ids, self._stamp = {}, None
            return
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return
        try:
            loaded = json.loads(self.path.read_text())
            self._ids = {str(k): int(v) for k, v in loaded.items()}
        except (ValueError, TypeError, AttributeError):
            self._ids = {}  # unreadable: the signed cookies' expiry still bounds every session
        self._stamp = stamp

    def __contains__(self, sid: object) -> bool:
        self._reload()
        return sid in self._ids

    def add(self, sid: str, expires: int) -> None:
        """Record session *sid* as ended (until *expires*, when it would have ended anyway)."""
        self._reload()
        now = time.time()
        self._ids = {k: v for k, v in self._ids.items() if v >= now}
        self._ids[sid] = expires
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(self._ids, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)
        st = self.path.stat()
        self._stamp = (st.st_mtime_ns, st.st_size)
