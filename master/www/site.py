"""The web site: a resource tree with the REST API at /api and plugins at their prefixes."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from twisted.web import resource, server
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource

from master.www.accesslog import AccessLogSite
from master.www.csrf import forgery_refusal
from master.www.httplimits import DEFAULT_MAX_BODY_BYTES, LimitedChannel
from master.www.responses import json_error


class NotFoundResource(resource.Resource):
    """A JSON 404 for paths nothing is mounted at."""

    isLeaf = True

    def render(self, request: IRequest) -> bytes:
        """Answer 404 whatever the method."""
        return json_error(request, 404, f"no such path: {request.path.decode(errors='replace')}")


class Root(resource.Resource):
    """The top of the site; children are looked up by their first path segment.

    ``ui`` is the web UI (:class:`master.www.ui.WebUi`) when one is installed: it serves
    ``/`` and the top-level paths nothing else is mounted at (its page, config, files).
    """

    ui: Any = None

    def getChild(self, path: bytes, request: IRequest) -> resource.Resource:  # noqa: N802 (Twisted's name)
        """The UI's page or file of that name; otherwise a JSON 404."""
        if self.ui is not None:
            child: resource.Resource | None = self.ui.child(path)
            if child is not None:
                return child
        return NotFoundResource()

    def render(self, request: IRequest) -> bytes:
        """``/``: where to go from here."""
        return json_error(request, 404, "nothing here yet: the API is at /api/v2")


def _site(request: server.Request) -> server.Site:
    """The site *request* came through: Site.buildProtocol sets it on the channel."""
    site: server.Site = request.channel.site  # type: ignore[attr-defined]  # HTTPChannel does not declare it
    return site


class CorsRequest(server.Request):
    """A request that gets CORS headers when its Origin is one the site allows (``www.allowed_origins``).

    A state change riding on the session cookie from another site is refused here (403), for
    the whole site (:mod:`master.www.csrf`). Its body may not pass ``max_body_bytes`` (set by
    :class:`master.www.httplimits.LimitedChannel` from its route), and a fault nothing else caught
    is answered in JSON, not Twisted's HTML.
    """

    max_body_bytes: int | None = None
    _body_bytes = 0

    def handleContentChunk(self, data: bytes) -> None:  # noqa: N802 (Twisted's name)
        """Store a piece of the body; a body of unannounced length (chunked) is refused once too large."""
        self._body_bytes += len(data)
        if self.max_body_bytes is not None and self._body_bytes > self.max_body_bytes:
            refuse = getattr(self.channel, "refuse", None)
            if refuse is not None:
                refuse(413, f"the request body is larger than the {self.max_body_bytes} bytes allowed here")
                return
        super().handleContentChunk(data)

    def processingFailed(self, reason: Any) -> Any:  # noqa: N802
        """Log the fault and answer a JSON 500 without detail (Twisted would answer HTML)."""
        self._log.failure("{method} {uri} failed", failure=reason, method=self.method, uri=self.uri)
        if not self.startedWriting:
            body = json_error(self, 500, "internal error (logged on the master)")
            self.write(body)
        self.finish()
        return reason

    def process(self) -> None:
        """Add the CORS headers, then dispatch as usual."""
        self.started_at = time.monotonic()  # for the request duration metric
        origin = self.getHeader(b"origin")
        allowed = getattr(_site(self), "allowed_origins", ())
        if origin and ("*" in allowed or origin.decode("latin-1") in allowed):
            self.setHeader(b"Access-Control-Allow-Origin", origin)
            self.setHeader(b"Access-Control-Allow-Credentials", b"true")
            self.setHeader(b"Access-Control-Allow-Methods", b"GET, HEAD, POST, OPTIONS")
            self.setHeader(b"Access-Control-Allow-Headers", b"Content-Type, Authorization")
            self.setHeader(b"Vary", b"Origin")
        refusal = forgery_refusal(self, allowed)
        if refusal is not None:
            # refused before any resource sees it: no plugin or core route can forget this check
            self.site = _site(self)
            self.write(json_error(self, 403, refusal))
            self.finish()
            return
        super().process()


def build_site(
    mounts: Mapping[str, IResource] | Root,
    allowed_origins: Sequence[str] = (),
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> server.Site:
    """A Site serving a root built by :func:`build_root`, or built here from *mounts*.

    ``site.allowed_origins`` and ``site.max_body_bytes`` may be changed while it runs (reconfig does).
    """
    root = mounts if isinstance(mounts, Root) else build_root(mounts)
    site = AccessLogSite(root, requestFactory=CorsRequest)
    # Twisted types Site.protocol as a method, though replacing it is how a Site picks its channel
    site.protocol = LimitedChannel  # type: ignore[method-assign,assignment]  # JSON answers to oversized requests (HTTP/1.1 only: no HTTP/2 here)
    site.displayTracebacks = False
    site.allowed_origins = list(allowed_origins)
    site.max_body_bytes = max_body_bytes
    return site


def build_root(mounts: Mapping[str, IResource]) -> Root:
    """A root serving each resource of *mounts* at its prefix (``"api"``, ``"v1"``, ``"rest/v1"``...)."""
    root = Root()
    for prefix, child in mounts.items():
        mount(root, prefix, child)
    return root


class MountError(ValueError):
    """A resource cannot be mounted at a prefix: it is taken, or under a resource that has no children."""


def mount(root: resource.Resource, prefix: str, child: IResource) -> None:
    """Serve *child* at *prefix* under *root*, making plain parents for a nested prefix.

    A parent that exists must take children (``/api`` does, so plugins may serve ``/api/v1``).
    """
    parts = [part.encode() for part in prefix.strip("/").split("/")]
    parent = root
    for part in parts[:-1]:
        existing = parent.children.get(part)
        if existing is None:
            existing = Root()
            parent.putChild(part, existing)
        elif existing.isLeaf:
            raise MountError(f"/{prefix.strip('/')}: /{part.decode()} is served by a resource without children")
        parent = existing
    if parts[-1] in parent.children:
        raise MountError(f"/{prefix.strip('/')} is taken")
    parent.putChild(parts[-1], child)


def unmount(root: resource.Resource, predicate: Any) -> None:
    """Remove, at any depth, every child resource for which *predicate(child)* is true."""
    for name, child in list(getattr(root, "children", {}).items()):
        if predicate(child):
            del root.children[name]
        else:
            unmount(child, predicate)
