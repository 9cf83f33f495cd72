"""``/auth``: log in with a password to get a session cookie, log out, and ask who you are.

``GET /auth/login`` takes HTTP Basic credentials (as browsers and Buildbot's UI send them);
``POST /auth/login`` takes ``{"username", "password"}`` as JSON or a form.  Both answer
``{"user": {...}}`` and set the session cookie, or 401.  With auth off they answer 404.

The web UI links to ``auth/login?redirect=/builders/1`` and ``auth/logout?redirect=...``: with
``redirect``, a successful login or a logout answers 302 to that page of the UI
(``/#/builders/1``), so the browser lands back where the user was.  Only a path of the UI
is followed (one starting with ``/``); anything else lands on the UI's home page.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import orjson
from klein import Klein
from twisted.web.iweb import IRequest

from master.www.auth import SESSION_COOKIE, Authenticator, AuthError, User
from master.www.responses import json_body, json_error, json_routing_errors

ANONYMOUS = {"anonymous": True}


class LoginPages:
    """The routes of ``/auth`` over one Authenticator."""

    app = json_routing_errors(Klein())

    def __init__(self, auth: Authenticator) -> None:
        self.auth = auth

    def resource(self) -> Any:
        """The twisted.web resource serving these routes; mount it at ``/auth``."""
        return self.app.resource()

    @app.route("/login", methods=["GET", "POST"])
    def login(self, request: IRequest) -> bytes:
        """Check a password and open a session."""
        users, config = self.auth.users, self.auth.config
        if users is None or config is None:
            return json_error(request, 404, "authentication is not enabled on this master")
        try:
            if request.method == b"POST":
                name, password = _posted_credentials(request)
                user = users.by_password(name, password)
                if user is None:
                    raise AuthError(401, "wrong user name or password")
            else:
                user = self.auth.authenticate(request)
                if user is None:
                    request.setHeader(b"WWW-Authenticate", b'Basic realm="ci-master"')
                    raise AuthError(401, "send a user name and password (HTTP Basic) to log in")
        except AuthError as e:
            return json_error(request, e.status, e.message)
        self._set_cookie(request, self.auth.make_session(user), int(config.session_hours * 3600))
        target = ui_redirect(request)
        if target is not None:
            request.redirect(target)
            return b""
        return json_body(request, {"user": user.to_json()})

    @app.route("/logout", methods=["GET", "POST"])
    def logout(self, request: IRequest) -> bytes:
        """Close the session: the cookie is ended on the master, not only dropped by the browser."""
        cookie = request.getCookie(SESSION_COOKIE)
        if cookie and self.auth.enabled:
            self.auth.end_session(cookie.decode("latin-1"))
        self._set_cookie(request, "", 0)
        target = ui_redirect(request)
        if target is not None:
            request.redirect(target)
            return b""
        return json_body(request, {"user": ANONYMOUS})

    @app.route("/user", methods=["GET", "HEAD"])
    def whoami(self, request: IRequest) -> bytes:
        """The user the request is made by, or anonymous."""
        try:
            user: User | None = self.auth.authenticate(request)
        except AuthError as e:
            return json_error(request, e.status, e.message)
        return json_body(request, {"user": user.to_json() if user else ANONYMOUS})

    def _set_cookie(self, request: IRequest, value: str, max_age: int) -> None:
        # IRequest.addCookie omits the httpOnly and sameSite keywords that Twisted's Request takes
        request.addCookie(  # type: ignore[call-arg]
            SESSION_COOKIE, value.encode(), path=b"/", max_age=str(max_age).encode(), httpOnly=True, sameSite="lax",
            secure=request.isSecure(),
        )


def ui_redirect(request: IRequest) -> bytes | None:
    """Where ``?redirect=/page`` sends the browser: that page of the UI (``../#/page``), or None without it.

    The location is relative to ``/auth/...``, so it stays on this site whatever its host name
    or the prefix a proxy serves it under.  A value that is not a path of the UI (``//host``,
    ``https://...``) is replaced by the home page: no redirect leaves the site.
    """
    values = request.args.get(b"redirect")
    if not values:
        return None
    page = values[0].decode("utf-8", "replace")
    if not page.startswith("/") or page.startswith("//") or "\\" in page:
        page = "/"
    return b"../#" + quote(page, safe="/?=&%:@!$'()*+,;-._~").encode()


def _posted_credentials(request: IRequest) -> tuple[str, str]:
    content_type = (request.getHeader(b"content-type") or b"").split(b";")[0].strip().lower()
    if content_type == b"application/json":
        try:
            body = orjson.loads(request.content.read())
        except orjson.JSONDecodeError:
            raise AuthError(400, "the body is not JSON") from None
        if not isinstance(body, dict):
            raise AuthError(400, "expected a JSON object with username and password")
        name, password = body.get("username"), body.get("password")
    else:
        name = (request.args.get(b"username") or [b""])[0].decode(errors="replace")
        password = (request.args.get(b"password") or [b""])[0].decode(errors="replace")
    if not isinstance(name, str) or not isinstance(password, str) or not name:
        raise AuthError(400, "username and password are required")
    return name, password
