"""The web UI: Buildbot's own React app (the ``buildbot-www`` package), served unmodified at ``/``.

The package ships a built app in ``buildbot_www/static``: ``index.html``, hashed bundles in
``assets/`` and a few files beside them.  Its ``__init__`` imports Buildbot, which ci-master
does not need, so the package is found without importing it (``pip install --no-deps
buildbot-www`` is enough).

What the app asks of the server besides the REST API (``api/v2``) and the websocket (``ws``):

* ``/`` (and ``/index.html``): ``index.html`` with ``window.buildbotFrontendConfig`` injected,
  so the app starts without a round trip.  The config names the user making the request,
  so this page is never cached.
* ``/config``: the same config as JSON (the app reads it when the global is missing).
* ``/avatar?username=...&email=...``: a picture of a person.  Buildbot asks Gravatar; a
  master on a private network cannot, so this draws the person's initials in SVG.
* the static files, with caching headers: the hashed bundles never change under a name
  (cached for a year, ``immutable``), the others are revalidated (``Last-Modified``).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import platform
from html import escape
from pathlib import Path
from typing import Any

import twisted
from twisted.web import resource, static
from twisted.web.iweb import IRequest
from twisted.web.server import GzipEncoderFactory

from master.www.auth import Authenticator, AuthError
from master.www.responses import JSON, encode_json, json_error

PACKAGE = "buildbot_www"
DISTRIBUTION = "buildbot-www"
CONFIG_PLACEHOLDER = b"<!-- BUILDBOT_CONFIG_PLACEHOLDER -->"

# hashed bundles are named after their content: a new UI has new names
IMMUTABLE = b"public, max-age=31536000, immutable"
# the other files keep their names across versions: use them, but ask (If-Modified-Since) each time
REVALIDATE = b"public, max-age=0, must-revalidate"
# the page and /config carry the user of the request
PRIVATE = b"private, no-cache, no-store"


class UiError(Exception):
    """The UI package is installed but unusable (no index.html, or no config placeholder in it)."""


def find_static_dir() -> Path | None:
    """The ``static`` folder of the installed buildbot-www package, or None when it is not installed.

    ``find_spec`` locates the package without running its ``__init__`` (which needs Buildbot).
    """
    try:
        spec = importlib.util.find_spec(PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        folder = Path(location) / "static"
        if (folder / "index.html").is_file():
            return folder
    return None


def _distribution_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions() -> list[list[str]]:
    """``[[name, version]...]`` for the UI's About page."""
    found = [
        ["ci-master", _distribution_version("ci-master") or "unknown"],
        ["Python", platform.python_version()],
        ["Twisted", twisted.__version__],
        ["buildbot-www", _distribution_version(DISTRIBUTION) or "unknown"],
    ]
    return found


def script_json(value: Any) -> str:
    """*value* as JSON that is safe inside an HTML ``<script>`` (no ``</script>`` or ``<!--`` can end it)."""
    text = encode_json(value).decode()
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


class WebUi:
    """The UI of one master: its page, config, avatars and static files.

    *title* and *base_url* come from master.cfg (``title``, ``www.base_url``), *auth* says
    whether users log in and who the request's user is.  ``ui_default_config`` (settings
    the UI starts with, e.g. ``{"Builders.buildFetchLimit": 500}``) and ``project_widgets``
    are passed to the app as Buildbot's ``www`` settings of the same names are.
    """

    def __init__(
        self,
        static_dir: Path,
        title: str,
        base_url: str,
        auth: Authenticator,
        ui_default_config: dict[str, Any] | None = None,
        project_widgets: list[dict[str, Any]] | None = None,
    ) -> None:
        self.static_dir = Path(static_dir)
        self.title = title
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.auth = auth
        self.ui_default_config = dict(ui_default_config or {})
        self.project_widgets = list(project_widgets or [])
        self._index = (self.static_dir / "index.html").read_bytes()
        if CONFIG_PLACEHOLDER not in self._index:
            index = self.static_dir / "index.html"
            raise UiError(f"{index} has no {CONFIG_PLACEHOLDER.decode()}: not a buildbot-www UI")
        self._versions = versions()
        self._files = StaticFiles(str(self.static_dir))
        self._served = {
            b"config": ConfigResource(self),
            b"avatar": AvatarResource(),
            b"index.html": IndexResource(self, leaf=True),
            b"": IndexResource(self),
        }

    @classmethod
    def if_installed(cls, title: str, base_url: str, auth: Authenticator, **settings: Any) -> WebUi | None:
        """The UI when buildbot-www is installed, else None (the master then serves the API alone)."""
        folder = find_static_dir()
        return cls(folder, title, base_url, auth, **settings) if folder is not None else None

    def reconfigure(self, title: str, base_url: str, **settings: Any) -> None:
        """Apply a new master.cfg: the next page and /config show it."""
        self.title = title
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.ui_default_config = dict(settings.get("ui_default_config") or {})
        self.project_widgets = list(settings.get("project_widgets") or [])

    def child(self, name: bytes) -> resource.Resource | None:
        """What serves the top-level path segment *name*, or None if it is not the UI's."""
        served = self._served.get(name)
        if served is not None:
            return served
        if self._files.has(name):
            found: resource.Resource = self._files.getChild(name, None)  # Twisted's has no annotations
            return found
        return None

    def frontend_config(self, request: IRequest) -> dict[str, Any]:
        """The ``buildbotFrontendConfig`` the app starts from, for the user making *request*."""
        if self.auth.enabled:
            # not OAuth: the app links "Login" to auth/login, which asks the browser for a password
            auth: dict[str, Any] = {"name": "ci-master", "oauth2": False, "fa_icon": "fa-sign-in"}
            try:
                user = self.auth.authenticate(request)
            except AuthError:
                user = None  # a stale or wrong credential reads as anonymous; /auth/login tells why
            user_json = user.to_json() if user is not None else {"anonymous": True}
        else:
            auth, user_json = {"name": "NoAuth"}, {"anonymous": True}
        return {
            "title": self.title,
            "titleURL": self.base_url,
            "buildbotURL": self.base_url,
            "multiMaster": False,
            "auth": auth,
            "user": user_json,
            "plugins": {},
            "versions": self._versions,
            "ui_default_config": self.ui_default_config,
            "project_widgets": self.project_widgets,
            "avatar_methods": [{"name": "initials"}],
        }

    def index_page(self, request: IRequest) -> bytes:
        """``index.html`` with the config injected and the master's title."""
        config = script_json(self.frontend_config(request))
        script = f'<script id="bb-config">window.buildbotFrontendConfig = {config};</script>'
        page = self._index.replace(CONFIG_PLACEHOLDER, script.encode(), 1)
        return page.replace(b"<title>Buildbot</title>", f"<title>{escape(self.title)}</title>".encode(), 1)


class _ReadOnly(resource.Resource):
    """GET and HEAD only: anything else is a JSON 405 naming what is allowed."""

    def render(self, request: IRequest) -> Any:
        """Dispatch GET and HEAD; refuse the rest."""
        if request.method not in (b"GET", b"HEAD"):
            request.setHeader(b"Allow", b"GET, HEAD")
            return json_error(request, 405, f"method {request.method.decode(errors='replace')} is not allowed here")
        return super().render(request)


class _NotFound(resource.Resource):
    isLeaf = True

    def render(self, request: IRequest) -> bytes:
        return json_error(request, 404, f"no such path: {request.path.decode(errors='replace')}")


class IndexResource(_ReadOnly, resource.Resource):
    """``/``: the app's page.

    An empty segment stands for the top again: the app asks for ``<buildbotURL>/icon.svg``,
    which is ``//icon.svg`` (Buildbot's server answers it too).
    """

    def __init__(self, ui: WebUi, leaf: bool = False) -> None:
        super().__init__()
        self.ui = ui
        self.isLeaf = leaf

    def getChild(self, path: bytes, request: IRequest) -> resource.Resource:  # noqa: N802 (Twisted's name)
        """``//name`` is ``/name``."""
        return self.ui.child(path) or _NotFound()

    def render_GET(self, request: IRequest) -> bytes:  # noqa: N802 (Twisted's name)
        """The page, never cached: it names the user."""
        if request.postpath not in ([], [b""]):
            # /index.html/x: not a page of the app
            return json_error(request, 404, f"no such path: {request.path.decode(errors='replace')}")
        body = self.ui.index_page(request)
        request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
        request.setHeader(b"Cache-Control", PRIVATE)
        request.setHeader(b"Content-Length", b"%d" % len(body))
        return body

    render_HEAD = render_GET  # noqa: N815


class ConfigResource(_ReadOnly, resource.Resource):
    """``/config``: the app's config as JSON."""

    isLeaf = True

    def __init__(self, ui: WebUi) -> None:
        super().__init__()
        self.ui = ui

    def render_GET(self, request: IRequest) -> bytes:  # noqa: N802 (Twisted's name)
        """The config for the user making the request."""
        if request.postpath not in ([], [b""]):
            return json_error(request, 404, f"no such path: {request.path.decode(errors='replace')}")
        body = encode_json(self.ui.frontend_config(request))
        request.setHeader(b"Content-Type", JSON)
        request.setHeader(b"Cache-Control", PRIVATE)
        request.setHeader(b"Content-Length", b"%d" % len(body))
        return body

    render_HEAD = render_GET  # noqa: N815


# background colours of avatars, readable under white letters
_AVATAR_COLOURS = ("#30426a", "#8c5e10", "#1b6e4b", "#7a2e5c", "#2f6f8f", "#6b4fa0", "#a0432f", "#4f6b2f")


def initials(name: str) -> str:
    """Up to two capital letters for *name* (``"Ada Lovelace <ada@x>"`` -> ``"AL"``); ``"?"`` for nobody."""
    name = name.split("<")[0].split("@")[0].replace(".", " ").replace("_", " ").replace("-", " ")
    words = [word for word in name.split() if word[0].isalnum()]
    if not words:
        return "?"
    letters = words[0][0] + (words[-1][0] if len(words) > 1 else "")
    return letters.upper()


def avatar_svg(who: str) -> bytes:
    """A round SVG picture with *who*'s initials, its colour fixed by the name."""
    colour = _AVATAR_COLOURS[hashlib.sha256(who.encode()).digest()[0] % len(_AVATAR_COLOURS)]
    text = escape(initials(who))
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64" viewBox="0 0 64 64">'
        f'<circle cx="32" cy="32" r="32" fill="{colour}"/>'
        '<text x="32" y="32" dy=".35em" text-anchor="middle" font-family="sans-serif" font-size="26" '
        f'fill="#fff">{text}</text></svg>'
    ).encode()


class AvatarResource(_ReadOnly, resource.Resource):
    """``/avatar?username=...&email=...``: the person's initials, drawn on the master (no outside service)."""

    isLeaf = True

    def render_GET(self, request: IRequest) -> bytes:  # noqa: N802 (Twisted's name)
        """An SVG for the user name, else the e-mail address; ``?`` for an unknown person."""
        args = {
            key.decode("utf-8", "replace"): values[0].decode("utf-8", "replace")
            for key, values in request.args.items() if values
        }
        who = args.get("username") or args.get("email") or ""
        if who == "unknown":
            who = ""
        body = avatar_svg(who)
        request.setHeader(b"Content-Type", b"image/svg+xml")
        request.setHeader(b"Cache-Control", b"public, max-age=86400")
        request.setHeader(b"Content-Length", b"%d" % len(body))
        return body

    render_HEAD = render_GET  # noqa: N815


# compressing pays for text; pictures are compressed already
_GZIPPED = {".js", ".css", ".svg", ".json", ".html", ".txt", ".map"}


# Twisted's File inherits "children" from Resource and from AbstractFilePath, typed differently
class StaticFiles(_ReadOnly, static.File):  # type: ignore[misc]
    """The package's files: no directory listings, JSON 404s, caching headers by kind of file."""

    childNotFound = _NotFound()  # type: ignore[assignment]  # File types it as its own 404 class
    indexNames: list[str] = []

    def has(self, name: bytes) -> bool:
        """Whether *name* is a file or folder of the top level."""
        try:
            text = name.decode()
        except UnicodeDecodeError:
            return False
        return text not in ("", ".", "..") and "/" not in text and (Path(self.path) / text).exists()

    def directoryListing(self) -> resource.Resource:  # noqa: N802 (Twisted's name)
        """Folders are not shown."""
        return self.childNotFound

    def createSimilarFile(self, path: str) -> resource.Resource:  # noqa: N802
        """Folders below are StaticFiles too (so ``assets/`` keeps these rules); text files are gzipped."""
        child = StaticFiles(path, self.defaultType, self.ignoredExts, self.registry)
        child.processors = self.processors
        if not child.isdir() and Path(path).suffix in _GZIPPED:
            return resource.EncodingResourceWrapper(child, [GzipEncoderFactory()])
        return child

    def render_GET(self, request: IRequest) -> Any:  # noqa: N802
        """The file, with ``Cache-Control`` for its kind."""
        if self.isdir():
            return self.childNotFound.render(request)
        hashed = Path(self.path).parent.name == "assets"
        request.setHeader(b"Cache-Control", IMMUTABLE if hashed else REVALIDATE)
        return super().render_GET(request)

    render_HEAD = render_GET  # noqa: N815
