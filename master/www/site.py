"""The web site: a resource tree with the REST API at /api and plugins at their prefixes."""

from __future__ import annotations

from collections.abc import Mapping

from twisted.web import resource, server
from twisted.web.iweb import IRequest

from master.www.responses import json_error


class NotFoundResource(resource.Resource):
    """A JSON 404 for paths nothing is mounted at."""

    isLeaf = True

    def render(self, request: IRequest) -> bytes:
        """Answer 404 whatever the method."""
        return json_error(request, 404, f"no such path: {request.path.decode(errors='replace')}")


class Root(resource.Resource):
    """The top of the site; children are looked up by their first path segment."""

    def getChild(self, path: bytes, request: IRequest) -> resource.Resource:  # noqa: N802 (Twisted's name)
        """Unknown top-level paths get a JSON 404."""
        return NotFoundResource()

    def render(self, request: IRequest) -> bytes:
        """``/``: where to go from here."""
        return json_error(request, 404, "nothing here yet: the API is at /api/v2")


class CorsRequest(server.Request):
    """A request that gets CORS headers when its Origin is one the site allows (``www.allowed_origins``)."""

    def process(self) -> None:
        """Add the CORS headers, then dispatch as usual."""
        origin = self.getHeader(b"origin")
        allowed = getattr(self.channel.site, "allowed_origins", ())
        if origin and ("*" in allowed or origin.decode("latin-1") in allowed):
            self.setHeader(b"Access-Control-Allow-Origin", origin)
            self.setHeader(b"Access-Control-Allow-Credentials", b"true")
            self.setHeader(b"Access-Control-Allow-Methods", b"GET, HEAD, POST, OPTIONS")
            self.setHeader(b"Access-Control-Allow-Headers", b"Content-Type, Authorization")
            self.setHeader(b"Vary", b"Origin")
        super().process()


def build_site(mounts: Mapping[str, resource.Resource] | Root, allowed_origins: list[str] = ()) -> server.Site:
    """A Site serving a root built by :func:`build_root`, or built here from *mounts*.

    ``site.allowed_origins`` may be changed while it runs (reconfig does).
    """
    root = mounts if isinstance(mounts, Root) else build_root(mounts)
    site = server.Site(root, requestFactory=CorsRequest)
    site.displayTracebacks = False
    site.allowed_origins = list(allowed_origins)
    return site


def build_root(mounts: Mapping[str, resource.Resource]) -> Root:
    """A root serving each resource of *mounts* at its prefix (``"api"``, ``"v1"``...)."""
    root = Root()
    for prefix, child in mounts.items():
        parts = prefix.strip("/").split("/")
        parent = root
        for part in parts[:-1]:
            existing = parent.children.get(part.encode())
            if existing is None:
                existing = resource.Resource()
                parent.putChild(part.encode(), existing)
            parent = existing
        parent.putChild(parts[-1].encode(), child)
    return root
