"""Refusing cross-site request forgery: state changes that ride on the browser's session cookie.

A browser sends the session cookie with requests other sites make it send: a form posted to
us from anywhere, or a ``fetch`` with a body of a "simple" content type (``text/plain``,
a form encoding).  Such a request may not change anything here.  A state-changing request
(any method but GET, HEAD and OPTIONS) that carries the session cookie, and no credentials
of its own, is served only when one of these holds:

* its ``Content-Type`` is ``application/json``: a page of another site can only send that
  after a CORS preflight, which this master answers only for ``www.allowed_origins``;
* its ``Origin`` (or, without one, its ``Referer``) is this site (the ``Host`` it was sent
  to) or one of ``www.allowed_origins``.

Otherwise it is refused with 403 and a JSON message.  Requests with an ``Authorization``
header (Bearer token, Basic password, DCI's HMAC signature) are not affected: a browser
never adds one by itself.  ``POST /auth/login`` is held to the same rule even without a
cookie, so that no other site can log a browser in as someone else.
"""

from __future__ import annotations

from collections.abc import Collection
from urllib.parse import urlsplit

from twisted.web.iweb import IRequest

from master.www.auth import SESSION_COOKIE

SAFE_METHODS = frozenset({b"GET", b"HEAD", b"OPTIONS"})
LOGIN_PATH = b"/auth/login"


def _origin(request: IRequest) -> str | None:
    """``scheme://host[:port]`` the request says it comes from (Origin, else Referer), or None."""
    origin: bytes | None = request.getHeader(b"origin")
    if origin is not None:
        return origin.decode("latin-1").strip()
    referer = request.getHeader(b"referer")
    if referer is None:
        return None
    parts = urlsplit(referer.decode("latin-1").strip())
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else None


def forgery_refusal(request: IRequest, allowed_origins: Collection[str]) -> str | None:
    """Why *request* must be refused as a possible cross-site forgery, or None to serve it."""
    if request.method in SAFE_METHODS or request.getHeader(b"authorization"):
        return None
    if request.getCookie(SESSION_COOKIE) is None and request.path.rstrip(b"/") != LOGIN_PATH:
        return None
    content_type = (request.getHeader(b"content-type") or b"").split(b";")[0].strip().lower()
    if content_type == b"application/json":
        return None
    origin = _origin(request)
    if origin is None:
        return ("refused: a state change with the session cookie needs Content-Type: application/json, "
                "or an Origin or Referer of this site")
    host = (request.getHeader(b"host") or b"").decode("latin-1").strip().lower()
    if host and urlsplit(origin).netloc.lower() == host:
        return None
    if "*" in allowed_origins or origin in allowed_origins:
        return None
    return (f"refused: a state change with the session cookie from another site ({origin}); "
            "send Content-Type: application/json, or list that origin in www.allowed_origins")
