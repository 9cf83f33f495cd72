"""Who is calling: a remoteci or feeder by DCI's HMAC v2 signature, or a ci-master user by Basic auth.

Signatures are checked with the ``dciauth`` library (the one DCI's own server and clients use),
so the canonical request, the 15 minute clock skew and the signing key are exactly DCI's.  The
statuses and messages of failures are the DCI server's: 400 for a malformed, expired or wrong
signature, 404 for an unknown client id, 401 for a missing header or an unknown scheme.

Roles: a remoteci or feeder belongs to its team.  A ci-master user (from the master's users
file, ``ci-master user add``) belongs to the DCI teams named by its ``dci-team:<team name>``
roles; the ``admin`` and ``dci-admin`` roles make it a DCI administrator (all teams, and the
right to create teams, topics, components, remotecis and feeders).

Under the master's ``Auth.read_rules``, a GET reads as its caller: a ci-master user with
its roles, a remoteci with the role ``dci-remoteci``, a feeder with ``dci-feeder``; every
resource type the route reads (``dci_jobs``, ``dci_topics``...) needs a read rule naming
one of them, as a REST read of ``/api/v2/dci_jobs`` does.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from dciauth.v2.headers import parse_headers
from dciauth.v2.signature import is_valid
from twisted.web.iweb import IRequest

from master.sdk import DataAPI, User, UserStore
from plugins.dci.errors import DciError
from plugins.dci.resources import Feeders, Remotecis

HMAC_SCHEMES = ("DCI2-HMAC-SHA256", "AWS4-HMAC-SHA256")
ADMIN_ROLES = {"admin", "dci-admin"}
TEAM_ROLE_PREFIX = "dci-team:"
CLIENT_TYPES: dict[str, type[Remotecis | Feeders]] = {"remoteci": Remotecis, "feeder": Feeders}


@dataclass
class Identity:
    """The caller: its kind (``remoteci``, ``feeder`` or ``user``), id, name and teams (id -> team entity)."""

    kind: str
    id: str
    name: str | None
    teams: dict[str, dict[str, Any]] = field(default_factory=dict)
    is_admin: bool = False
    entity: dict[str, Any] | None = None

    def in_team(self, team_id: str | None) -> bool:
        """Whether the caller may see and change what belongs to team *team_id*."""
        return self.is_admin or team_id in self.teams


async def authenticate(request: IRequest, body: bytes, data: DataAPI, users: UserStore | None) -> Identity:
    """The identity making *request*, or DciError with the DCI server's status and message."""
    header = (request.getHeader(b"authorization") or b"").decode("latin-1").strip()
    if not header:
        raise DciError(401, "Authorization header missing")
    scheme = header.split(" ", 1)[0]
    if scheme in HMAC_SCHEMES:
        return await _hmac_identity(request, body, data)
    if scheme.lower() == "basic":
        return await _user_identity(header, data, users)
    raise DciError(401, f"Authorization scheme {scheme} unknown")


def _bad_headers() -> DciError:
    return DciError(400, "HmacMechanism failed: bad or incomplete headers.")


async def _hmac_identity(request: IRequest, body: bytes, data: DataAPI) -> Identity:
    headers = {
        name.decode("latin-1").lower(): values[-1].decode("latin-1")
        for name, values in request.requestHeaders.getAllRawHeaders()
    }
    try:
        parsed = parse_headers(headers)
    except (ValueError, KeyError, IndexError):
        parsed = None
    if parsed is None:
        raise _bad_headers()
    client_type = parsed["client_type"]
    if client_type not in CLIENT_TYPES:
        raise DciError(401, "identity does not exists.")
    found = await data.resource_type(CLIENT_TYPES[client_type]).credentials(parsed["client_id"])
    if found is None:
        raise DciError(404, f"{client_type} not found")
    entity, secret = found
    path, _, query = request.uri.decode("latin-1").partition("?")
    signed = {
        "method": request.method.decode(),
        "endpoint": path,
        "params": dict(parse_qsl(query)),
        "data": body,
    }
    try:
        valid, reason = is_valid(signed, {"secret_key": secret}, parsed)
    except (ValueError, KeyError, IndexError, TypeError):
        raise _bad_headers() from None
    if not valid:
        raise DciError(400, f"HmacMechanism failed: {reason}")
    if entity["state"] != "active":
        raise DciError(412, f"{client_type} is disabled")
    team = await data.get(("dci_teams", entity["team_id"]))
    if team is None or team["state"] != "active":
        raise DciError(412, "team is disabled")
    return Identity(client_type, entity["id"], entity["name"], {team["id"]: team}, False, entity)


async def _user_identity(header: str, data: DataAPI, users: UserStore | None) -> Identity:
    try:
        name, _, password = base64.b64decode(header.split(" ", 1)[1].strip()).decode().partition(":")
    except (ValueError, IndexError, UnicodeDecodeError):
        raise DciError(401, "Invalid user credentials") from None
    user = users.by_password(name, password) if users is not None else None
    if user is None:
        raise DciError(401, "Invalid user credentials")
    team_names = sorted(role.removeprefix(TEAM_ROLE_PREFIX) for role in user.roles if role.startswith(TEAM_ROLE_PREFIX))
    teams: dict[str, dict[str, Any]] = {}
    if team_names:
        found = await data.get("dci_teams", query={"name__in": [",".join(team_names)]})
        teams = {team["id"]: team for team in found.items if team["state"] == "active"}
    return Identity("user", _user_id(name), name, teams, bool(user.roles & ADMIN_ROLES))


def _user_id(name: str) -> str:
    """A stable UUID for a ci-master user name (DCI identities are UUIDs)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"ci-master:user:{name}"))


def reader(identity: Identity, users: UserStore | None) -> User | None:
    """The ci-master user the read rules see for *identity*: the user itself, or ``dci-<kind>`` for a client."""
    if identity.kind == "user":
        return users.user(identity.name) if users is not None and identity.name is not None else None
    return User(f"{identity.kind}:{identity.name}", frozenset({f"dci-{identity.kind}"}))
