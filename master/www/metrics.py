"""``GET /metrics``: the master's Prometheus metrics (:mod:`master.metrics`) on its web port.

The metrics themselves know no HTTP, so that the data API and the engine, below the web
layer, can count into them; this module serves them and hands them to the master's parts.
"""

from __future__ import annotations

from typing import Any

from prometheus_client.exposition import CONTENT_TYPE_LATEST
from twisted.internet import defer
from twisted.web import resource, server
from twisted.web.iweb import IRequest

from master.metrics import MasterMetrics, note_route
from master.www.auth import AuthError
from master.www.responses import json_error
from master.www.site import mount
from master.www.transport import streaming


class MetricsResource(resource.Resource):
    """``GET /metrics``: the master's metrics for Prometheus; who may scrape follows ``metrics_public``."""

    isLeaf = True

    def __init__(self, master: Any) -> None:
        super().__init__()
        self.master = master

    def render(self, request: IRequest) -> Any:
        """GET and HEAD scrape; any other method is a JSON 405."""
        if request.method in (b"GET", b"HEAD"):
            return super().render(request)
        note_route(request, "/metrics", prefix="")
        request.setHeader(b"Allow", b"GET, HEAD")
        return json_error(request, 405, f"method {request.method.decode(errors='replace')} is not allowed; use GET")

    def render_GET(self, request: IRequest) -> Any:  # noqa: N802 (twisted.web's name)
        """Refresh the state gauges, then answer the text exposition."""
        note_route(request, "/metrics", prefix="")
        auth = self.master.auth
        if not self.master.config.metrics_public and auth.restricts_reads:
            try:
                auth.authorize_read(auth.authenticate(request), "metrics")
            except AuthError as e:
                if e.status == 401:
                    request.setHeader(b"WWW-Authenticate", b'Bearer realm="ci-master"')
                return json_error(request, e.status, e.message)
        defer.ensureDeferred(self._answer(request))
        return server.NOT_DONE_YET

    async def _answer(self, request: IRequest) -> None:
        gone: list[Any] = []
        streaming(request).notifyFinish().addBoth(gone.append)
        metrics = self.master.metrics
        await metrics.refresh(self.master)
        if gone:
            return
        request.setHeader(b"Content-Type", CONTENT_TYPE_LATEST.encode())
        request.write(metrics.exposition())
        request.finish()


def attach(master: Any) -> MasterMetrics:
    """Give the starting *master* (a MasterService) its metrics: hand them to its parts, serve ``/metrics``."""
    metrics = MasterMetrics()
    master.data.metrics = master.data.events.metrics = metrics
    metrics.time_storage(master.storage)
    master.site.metrics = metrics
    mount(master.root, "metrics", MetricsResource(master))
    return metrics
