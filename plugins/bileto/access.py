"""Who may write (and, under read rules, read) Bileto's ``/v1``: the site's API token, or an allowed ci-master user.

Bileto took its bots' token as ``?token=`` and people's browser session cookie.  Here:

* ``?token=<the api_token set in master.cfg>`` is the site's bot token (Jenkins' in Bileto);
  it may do every Bileto write, whatever the rules.
* ``?token=<a ci-master API token>`` (or ``Authorization: Bearer``), HTTP Basic, or the
  ci-master session cookie (from ``/auth/login``) name a ci-master user, who must be allowed
  the action (``create``, ``update`` or ``comment``) on resource type ``tickets`` by the
  master's ``Auth.rules`` (by default only role ``admin`` is).
* Reads are public, unless the master's ``Auth.read_rules`` restrict them: then the same
  credentials are needed, and a user must be allowed to read ``tickets``.
* A token that matches neither is refused with 401, as are missing credentials.  On a
  master without ``auth`` and without ``api_token``, writes are open, as the master's own
  controls are.  If no master handed its auth policy over (``PluginAuth.wired`` is False),
  nothing but the ``api_token`` may write: an unwired master fails closed.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from twisted.web.iweb import IRequest

from master.sdk import AuthError, PluginAuth, User

RESOURCE = "tickets"
"""The resource type the master's rules name to let users write Bileto tickets."""


def _query_token(request: IRequest) -> str | None:
    values = request.args.get(b"token")
    if not values:
        return None
    return values[0].decode("utf-8", "replace")


@dataclass(frozen=True)
class Poster:
    """Who sends a Bileto write: the site's bot token (*bot*), a ci-master *user*, or nobody on an open master."""

    user: User | None = None
    bot: bool = False

    def authorize(self, auth: PluginAuth, action: str) -> None:
        """Raise AuthError(403) unless this poster may do *action* on tickets (the bot may do all)."""
        if self.user is not None:
            auth.authorize(self.user, RESOURCE, action)


def identify_poster(request: IRequest, auth: PluginAuth, api_token: str | None) -> Poster:
    """Who makes a Bileto write; AuthError(401) for a bad token or missing credentials."""
    token = _query_token(request)
    if token is not None:
        if api_token and hmac.compare_digest(token.encode(), api_token.encode()):
            return Poster(bot=True)
        user = auth.user_by_token(token)
        if user is None:
            raise AuthError(401, "invalid token")
        return Poster(user)
    if auth.enabled:
        user = auth.authenticate(request)  # Bearer, Basic or the session cookie
        if user is None:
            raise AuthError(401, "authentication required: send ?token=<API token> or log in for a session cookie")
        return Poster(user)
    if not auth.wired:
        # the master handed no accounts to its plugins: fail closed, never open by mistake
        raise AuthError(401, "authentication required: send ?token=<API token> (this master passes no user "
                             "accounts to plugins, so only BiletoPlugin(api_token=...) can write)")
    if api_token:
        raise AuthError(401, "authentication required: send ?token=<API token>")
    return Poster()


def authorize_read(request: IRequest, auth: PluginAuth, api_token: str | None) -> None:
    """Raise AuthError unless the request may read tickets under the master's ``read_rules``.

    Reads are public unless the master restricts them; then the site token, or a ci-master
    user (``?token=``, Bearer, Basic or the session cookie) whom a read rule allows
    ``tickets``, may read.
    """
    if not auth.restricts_reads:
        return
    token = _query_token(request)
    if token is not None:
        if api_token and hmac.compare_digest(token.encode(), api_token.encode()):
            return
        user = auth.user_by_token(token)
        if user is None:
            raise AuthError(401, "invalid token")
    else:
        user = auth.authenticate(request)
    auth.authorize_read(user, RESOURCE)
    auth.scope_reads(request, user)  # and whatever else the route reads, as this user

