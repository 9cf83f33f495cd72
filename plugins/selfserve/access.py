"""Who may ask self-serve for what: a trusted proxy's ``X-Remote-User`` or a ci-master user, under the master's rules.

Jobs (rebuild, cancel, reprioritize...) are the actions of resource type ``selfservejobs``: a
ci-master user needs a rule of ``Auth.rules`` allowing the action.  On a master without
``auth`` every control is open and the name of HTTP Basic auth is taken as given.  Reads are
public unless ``Auth.read_rules`` restrict them.  BuildAPI answered every refusal with 403
``ACCESS DENIED!``, and so does this.
"""

from __future__ import annotations

import base64
from collections.abc import Collection

from twisted.web.iweb import IRequest

from master.sdk import AuthError, HttpError, PluginAuth


def requester(request: IRequest, auth: PluginAuth, trusted_proxies: Collection[str], action: str) -> str:
    """Who asks for job *action*: a trusted proxy's X-Remote-User, else the ci-master user; else 403."""
    remote = request.getHeader(b"x-remote-user")
    host = getattr(request.getClientAddress(), "host", None)
    if remote and host in trusted_proxies:
        return remote.decode("utf-8", "replace")
    if auth.enabled:
        try:
            user = auth.authenticate(request)
            if user is None:
                raise HttpError(403, "ACCESS DENIED! Log in with the user name and password of a ci-master user "
                                     "(HTTP Basic auth)")
            auth.authorize(user, "selfservejobs", action)
        except AuthError as e:
            raise HttpError(403, f"ACCESS DENIED! {e.message}") from None
        return user.name
    # the master has no users (auth unset): every control is open, the name is taken as given
    header = (request.getHeader(b"authorization") or b"").decode("latin-1")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() == "basic":
        try:
            name = base64.b64decode(credentials.strip()).decode().partition(":")[0]
        except (ValueError, UnicodeDecodeError):
            name = ""
        if name:
            return name
    raise HttpError(403, "ACCESS DENIED! Give a user name (HTTP Basic auth)")


def check_read(request: IRequest, auth: PluginAuth, resource_type: str) -> None:
    """Refuse (403) a read the master's read rules forbid; reads are public unless it has some.

    *resource_type* is what the route mainly reads; every other type it reads on the way
    (branches, requests, builders...) is checked too, by the read scope opened here.
    """
    if not auth.restricts_reads:
        return
    try:
        user = auth.authenticate(request)
        auth.authorize_read(user, resource_type)
    except AuthError as e:
        raise HttpError(403, f"ACCESS DENIED! {e.message}") from None
    auth.scope_reads(request, user)
