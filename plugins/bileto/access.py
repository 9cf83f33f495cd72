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
  controls are.  If the data API carries no Authenticator (``data.auth``, which the master
  service sets), nothing but the ``api_token`` may write: an unwired master fails closed.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any

from twisted.web.iweb import IRequest

from master.www.auth import Authenticator, AuthError, User

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

    def authorize(self, authenticator: Authenticator | None, action: str) -> None:
        """Raise AuthError(403) unless this poster may do *action* on tickets (the bot may do all)."""
        if self.user is not None:
            authenticator.authorize(self.user, RESOURCE, action)


def identify_poster(request: IRequest, authenticator: Authenticator | None, api_token: str | None) -> Poster:
    """Who makes a Bileto write; AuthError(401) for a bad token or missing credentials."""
    auth_on = authenticator is not None and authenticator.enabled
    token = _query_token(request)
    if token is not None:
        if api_token and hmac.compare_digest(token.encode(), api_token.encode()):
            return Poster(bot=True)
        user = authenticator.users.by_token(token) if auth_on else None
        if user is None:
            raise AuthError(401, "invalid token")
        return Poster(user)
    if auth_on:
        user = authenticator.authenticate(request)  # Bearer, Basic or the session cookie
        if user is None:
            raise AuthError(401, "authentication required: send ?token=<API token> or log in for a session cookie")
        return Poster(user)
    if authenticator is None:
        # the master handed no accounts to its plugins: fail closed, never open by mistake
        raise AuthError(401, "authentication required: send ?token=<API token> (this master passes no user "
                             "accounts to plugins, so only BiletoPlugin(api_token=...) can write)")
    if api_token:
        raise AuthError(401, "authentication required: send ?token=<API token>")
    return Poster()


def authorize_read(request: IRequest, authenticator: Authenticator | None, api_token: str | None) -> None:
    """Raise AuthError unless the request may read tickets under the master's ``read_rules``.

    Reads are public unless the master restricts them; then the site token, or a ci-master
    user (``?token=``, Bearer, Basic or the session cookie) whom a read rule allows
    ``tickets``, may read.
    """
    # getattr: a master without read rules (older Authenticator) keeps every read public
    if authenticator is None or not getattr(authenticator, "restricts_reads", False):
        return
    token = _query_token(request)
    if token is not None:
        if api_token and hmac.compare_digest(token.encode(), api_token.encode()):
            return
        user = authenticator.users.by_token(token)
        if user is None:
            raise AuthError(401, "invalid token")
    else:
        user = authenticator.authenticate(request)
    authenticator.authorize_read(user, RESOURCE)
    authenticator.scope_reads(user)  # and whatever else the route reads, as this user


def site_authenticator(data: Any) -> Authenticator | None:
    """The master's Authenticator, which the master service hands the data API as ``data.auth``.

    The master makes one even with ``auth`` off (then ``enabled`` is False); None means no
    master handed one over, and :func:`identify_poster` then accepts only the site token.
    """
    return getattr(data, "auth", None)
