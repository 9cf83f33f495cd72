"""Prometheus metrics of one master, served at ``GET /metrics`` on the web port (:mod:`master.www.metrics`).

Every metric lives in a registry of its own master (:class:`MasterMetrics`), never in
prometheus_client's global one, so that several masters in one process (the tests) keep
apart.  The code being measured calls in with one line: :func:`metrics_of` finds the
master's metrics on the object at hand (the DataAPI, the EventHub) and, on an object no
master owns, a detached set nobody scrapes.  Quantities that are state rather than
happenings (connections, running builds, pending requests) are read when scraped.

The README's "Metrics" table documents each one.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest
from twisted.logger import Logger
from twisted.web import http, resource
from twisted.web.iweb import IRequest

from master.results import RESULTS, result_name

log = Logger()

PREFIX = "ci_master_"
BUILD_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, float("inf"))
LAG_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 300, float("inf"))
UNKNOWN = "(unknown)"
"""The label of a JSON-RPC method no endpoint offers: callers choose method names, the label set stays bounded."""

RPC_OUTCOMES = {200: "ok", 400: "bad_request", 401: "unauthenticated", 403: "forbidden", 404: "not_found",
                409: "conflict", 500: "error", 503: "unavailable"}


class BuildTimer:
    """Times one build from its start; :meth:`finished` counts it under its result."""

    def __init__(self, metrics: MasterMetrics, builder: str) -> None:
        self.metrics = metrics
        self.builder = builder
        self.started = time.monotonic()

    def finished(self, results: int) -> None:
        """Count the build as finished with *results* and observe its duration."""
        self.metrics.builds_finished.labels(self.builder, result_name(results)).inc()
        self.metrics.build_duration.labels(self.builder).observe(time.monotonic() - self.started)


class MasterMetrics:
    """The metrics of one master, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)

        def counter(name: str, text: str, labels: Iterable[str] = ()) -> Counter:
            return Counter(PREFIX + name, text, list(labels), registry=registry)

        def gauge(name: str, text: str) -> Gauge:
            return Gauge(PREFIX + name, text, registry=registry)

        def histogram(name: str, text: str, labels: Iterable[str], **kw: Any) -> Histogram:
            return Histogram(PREFIX + name, text, list(labels), registry=registry, **kw)

        self._http_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self.http_requests = counter(
            "http_requests", "HTTP requests answered, by route pattern, method and status",
            ("route", "method", "status"),
        )
        self.http_duration = histogram(
            "http_request_duration_seconds", "Time from a request's arrival to its last byte, by route pattern and "
            "method", ("route", "method"),
        )
        self.rpc_actions = counter("jsonrpc_actions", "JSON-RPC actions called, by action and outcome",
                                   ("action", "outcome"))
        self.ws_connections = gauge("websocket_connections", "Open /ws connections")
        self.ws_subscriptions = gauge("websocket_subscriptions", "Subscriptions (startConsuming) of the open /ws "
                                      "connections")
        self.ws_queued = gauge("websocket_queued_events", "Events waiting in the fan-out queues of /ws connections "
                               "whose sockets are full")
        self.events_published = counter("events_published", "Events this master published, by resource type",
                                        ("type",))
        self.journal_lag = histogram(
            "event_journal_lag_seconds", "Delay from another master journaling an event to this master "
            "delivering it (PostgreSQL; 1 s resolution)", (), buckets=LAG_BUCKETS,
        )
        self.buildrequests_pending = gauge("buildrequests_pending", "Build requests nobody has claimed yet "
                                           "(all masters of the database)")
        self.buildrequests_claimed = gauge("buildrequests_claimed", "Build requests claimed and not complete "
                                           "(all masters of the database)")
        self.builds_running = gauge("builds_running", "Builds running on this master")
        self.builds_finished = counter("builds_finished", "Builds this master finished, by builder and result",
                                       ("builder", "result"))
        self.build_duration = histogram("build_duration_seconds", "Duration of the builds this master ran, by "
                                        "builder", ("builder",), buckets=BUILD_BUCKETS)
        self.workers_connected = gauge("workers_connected", "Workers connected to this master")
        self.log_lines = counter("log_lines_stored", "Log lines of steps stored")
        self.database_available = gauge("database_available", "1 while the database answers, 0 during an outage "
                                        "(PostgreSQL; SQLite is always 1)")
        self.reporter_backlog = Gauge(PREFIX + "reporter_backlog", "Reports waiting for delivery, by reporter",
                                      ["reporter"], registry=registry)
        self.db_duration = histogram(
            "db_statement_duration_seconds", "Time of a storage call (one statement, or one transaction), "
            "waiting for a connection included, by backend and operation", ("backend", "operation"),
        )

    # -- the one-line calls -----------------------------------------------------------------

    def build_timer(self, builder: str) -> BuildTimer:
        """Start timing a build of *builder* (the engine calls ``.finished(results)`` at its end)."""
        return BuildTimer(self, builder)

    def request_finished(self, request: http.Request, root: resource.Resource) -> None:
        """Count an answered request (the site calls this); *root* is the site's, to name mount prefixes."""
        route = getattr(request, "metrics_route", None)
        status = request.code
        if route is None:
            # unknown paths are the client's choice: one label for them all
            route = "unmatched" if status == 404 else _mount_prefix(root, request.path)
        method = _METHODS.get(request.method, "other")
        # the children of the label sets seen, kept: prometheus_client's labels() takes a lock and
        # validates on every call, a cost paid per request; the sets are bounded (patterns, statuses)
        key = (route, method, status)
        counted = self._http_children.get(key)
        if counted is None:
            counted = self._http_children[key] = (
                self.http_requests.labels(route, method, str(status)), self.http_duration.labels(route, method)
            )
        counted[0].inc()
        started = getattr(request, "started_at", None)
        if started is not None:
            counted[1].observe(time.monotonic() - started)
        action = getattr(request, "metrics_action", None)
        if action is not None:
            outcome = getattr(request, "metrics_outcome", None) or RPC_OUTCOMES.get(status, str(status))
            self.rpc_actions.labels(action, outcome).inc()

    def journal_rows_read(self, rows: Iterable[Mapping[str, Any]], masterid: int | None) -> None:
        """Observe how late the events other masters journaled reach this one."""
        now = time.time()
        for row in rows:
            if row.get("masterid") not in (None, masterid):
                self.journal_lag.observe(max(0.0, now - row["at"]))

    def time_storage(self, storage: Any) -> None:
        """Time every call of *storage*'s interface (wrapping its methods on this object only)."""
        backend = getattr(storage, "dialect_name", type(storage).__name__)
        for name in ("fetch_all", "fetch_many", "fetch_page", "execute", "append_events", "transaction"):
            method = getattr(storage, name, None)
            if method is not None and not getattr(method, _TIMED, False):
                setattr(storage, name, _timed(method, self.db_duration.labels(backend, name)))

    # -- scraping ---------------------------------------------------------------------------

    async def refresh(self, master: Any) -> None:
        """Read the state gauges from the running *master* (a MasterService)."""
        live = getattr(master, "live", None)
        connections = list(live.factory.connections) if live is not None else []
        self.ws_connections.set(len(connections))
        self.ws_subscriptions.set(sum(len(getattr(c, "patterns", ())) for c in connections))
        self.ws_queued.set(sum(len(getattr(c, "_queue", ())) for c in connections))
        engine = master.engine
        self.builds_running.set(len(engine.builds))
        self.workers_connected.set(len(engine.workers))
        for name in engine.builders:
            # a builder that never built shows zeros, not nothing, so that rate() sees its first build
            self.build_duration.labels(name)
            for result in RESULTS:
                self.builds_finished.labels(name, result)
        storage = getattr(master, "storage", None)
        self.database_available.set(1 if getattr(storage, "database_available", True) else 0)
        reporters = getattr(master, "reporters", None)
        if reporters is not None:
            for name, waiting in reporters.backlog().items():
                self.reporter_backlog.labels(name).set(waiting)
        data = getattr(master, "data", None)  # None before start (NotRunning is an AttributeError)
        if data is None:
            return
        base = {"complete": ["false"], "field": ["buildrequestid"], "limit": ["1"]}
        try:
            pending = await data.get("buildrequests", query={**base, "claimed": ["false"]})
            claimed = await data.get("buildrequests", query={**base, "claimed": ["true"]})
        except Exception:
            log.failure("metrics: counting build requests failed")
            return
        self.buildrequests_pending.set(pending.total)
        self.buildrequests_claimed.set(claimed.total)

    def exposition(self) -> bytes:
        """The registry in Prometheus' text format."""
        return generate_latest(self.registry)


def _mount_prefix(root: resource.Resource, path: bytes) -> str:
    """The prefix (at most two segments: ``/api/v1``, ``/self-serve``) *path* is served under; else the UI's."""
    node, prefix = root, []
    for part in path.split(b"/")[1:3]:
        child = getattr(node, "children", {}).get(part)
        if child is None:
            break
        prefix.append(part.decode(errors="replace"))
        node = child
    return "/" + "/".join(prefix) if prefix else "/ (web UI)"


_METHODS = {name: name.decode() for name in (b"GET", b"HEAD", b"POST", b"PUT", b"PATCH", b"DELETE", b"OPTIONS")}
"""The method labels; any other method is counted as ``other``."""


_TIMED = "timed"


def _timed(method: Any, histogram: Any) -> Any:
    observe = histogram.observe

    async def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.monotonic()
        try:
            return await method(*args, **kwargs)
        finally:
            observe(time.monotonic() - started)

    setattr(timed, _TIMED, True)  # time_storage wraps a method once
    return timed


DETACHED = MasterMetrics()
"""The metrics of objects no master owns (a DataAPI made by a test): counted, never scraped."""


def metrics_of(owner: Any) -> MasterMetrics:
    """The metrics of the master *owner* (a DataAPI or an EventHub) belongs to."""
    return getattr(owner, "metrics", None) or DETACHED


def _label(request: IRequest, name: str, value: str) -> None:
    # IRequest declares no such attributes; Twisted's requests take any, read back by request_finished
    setattr(request, name, value)


def note_route(request: IRequest, pattern: str, prefix: str = "/api/v2") -> None:
    """Label *request* with the REST endpoint pattern it resolved to (not its path: ids would explode)."""
    _label(request, "metrics_route", prefix + pattern)


def note_outcome(request: IRequest, outcome: str) -> None:
    """Label a JSON-RPC *request* with an outcome its status alone does not tell (``unknown_action``)."""
    _label(request, "metrics_outcome", outcome)


def note_action(request: IRequest, data: Any, path: str, method: Any) -> None:
    """Label a JSON-RPC *request* with its endpoint pattern and action (``(unknown)`` for one no endpoint has)."""
    try:
        endpoint, _ = data.resolve(path)
    except Exception:
        _label(request, "metrics_action", UNKNOWN)
        return
    note_route(request, endpoint.pattern)
    _label(request, "metrics_action", method if method in endpoint.actions else UNKNOWN)
