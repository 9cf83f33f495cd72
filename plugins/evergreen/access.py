"""Who may read and write Evergreen's REST v1: ``Api-User``/``Api-Key``, or the master's own credentials.

Evergreen's clients send ``Api-User`` (a ci-master user name) and ``Api-Key`` (one of that
user's API tokens) on every call.  Reads are public unless the master's ``Auth.read_rules``
restrict them; then a GET reads as that user, or as whoever the master's credentials
(Bearer token, Basic password, session cookie) name.  The PATCH of a version needs
``Api-User``/``Api-Key`` and a rule allowing ``set_activation`` on ``evergreen_versions``.
"""

from __future__ import annotations

from twisted.web.iweb import IRequest

from master.sdk import AuthError, HttpError, PluginAuth, User


def _credentials(request: IRequest) -> tuple[str, str]:
    name = (request.getHeader(b"api-user") or b"").decode("latin-1").strip()
    key = (request.getHeader(b"api-key") or b"").decode("latin-1").strip()
    return name, key


def reader_user(request: IRequest, auth: PluginAuth) -> User | None:
    """Who reads: the ``Api-User`` whose token is ``Api-Key``, else the master's credentials' user, else None."""
    if not auth.restricts_reads:
        return None
    name, key = _credentials(request)
    if name or key:
        user = auth.user_by_token(key) if key else None
        if user is None or user.name != name:
            raise AuthError(401, "unknown Api-User or wrong Api-Key")
        return user
    return auth.authenticate(request)


def api_user(request: IRequest, auth: PluginAuth) -> User:
    """The ci-master user named by ``Api-User`` whose API token is ``Api-Key``, allowed to activate; else 401."""
    name, key = _credentials(request)
    if not name or not key:
        raise HttpError(401, "unauthorized: send the Api-User and Api-Key headers")
    if not auth.enabled:
        raise HttpError(401, "unauthorized: this master has no users (auth is off in master.cfg)")
    user = auth.user_by_token(key)
    if user is None or user.name != name:
        raise HttpError(401, "unauthorized: unknown Api-User or wrong Api-Key")
    try:
        auth.authorize(user, "evergreen_versions", "set_activation")
    except AuthError:
        raise HttpError(401, "not authorized to modify this version") from None
    return user
