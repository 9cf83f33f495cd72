"""HTTP for the reporters: JSON requests through Twisted's Agent on a shared keep-alive pool, failures sorted.

A 2xx answer is a success; a 5xx, a 429 or a connection refused, dropped or timed out raises
:class:`Retry`; any other answer raises :class:`GiveUp` with the status and the start of the body
(a 401 for a bad token, a 404 for an unknown repository: trying again would not help).

The Agent is used as it is, not through treq: a report is one small JSON POST, and on a busy
master treq's URL handling (hyperlink, IDNA, a cookie jar per request) cost as much CPU as the
request itself.  Endpoints are made once per (scheme, host, port) for the same reason.
"""

from __future__ import annotations

from typing import Any

import orjson
from twisted.internet import defer, reactor
from twisted.internet import error as net_error
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.web._newclient import PotentialDataLoss
from twisted.web.client import (
    Agent,
    BrowserLikePolicyForHTTPS,
    HTTPConnectionPool,
    ResponseDone,
    ResponseFailed,
    ResponseNeverReceived,
)
from twisted.web.error import SchemeNotSupported
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgentEndpointFactory, IBodyProducer
from zope.interface import implementer

from ci_common.twistd_process import package_version
from master.reporters.base import GiveUp, Retry

TIMEOUT = 30.0  # seconds a forge has to answer
USER_AGENT = f"ci-master/{package_version()}"
_agent: Agent | None = None
_pool: HTTPConnectionPool | None = None


@implementer(IAgentEndpointFactory)
class _Endpoints:
    """One endpoint per (scheme, host, port), kept: the Agent would make one per request."""

    def __init__(self) -> None:
        self._made: dict[tuple[bytes, bytes, int], IStreamClientEndpoint] = {}
        self._tls = BrowserLikePolicyForHTTPS()

    def endpointForURI(self, uri: Any) -> IStreamClientEndpoint:  # noqa: N802 (the interface's name)
        """The endpoint of *uri*'s host and port."""
        key = (uri.scheme, uri.host, uri.port)
        endpoint = self._made.get(key)
        if endpoint is None:
            if uri.scheme not in (b"http", b"https"):
                raise SchemeNotSupported(f"unsupported scheme: {uri.scheme!r}")
            host = uri.host.decode("ascii")
            endpoint = HostnameEndpoint(reactor, host, uri.port, timeout=TIMEOUT)
            if uri.scheme == b"https":
                endpoint = wrapClientTLS(self._tls.creatorForNetloc(uri.host, uri.port), endpoint)
            self._made[key] = endpoint
        return endpoint


@implementer(IBodyProducer)
class _Body:
    """A request body held in memory, written at once."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.length = len(data)

    def startProducing(self, consumer: Any) -> defer.Deferred[None]:  # noqa: N802 (IBodyProducer's names)
        """Write the whole body."""
        consumer.write(self.data)
        return defer.succeed(None)

    def pauseProducing(self) -> None:  # noqa: N802
        """Nothing to pause: the body is written in one go."""

    def resumeProducing(self) -> None:  # noqa: N802
        """Nothing to resume."""

    def stopProducing(self) -> None:  # noqa: N802
        """Nothing to stop."""


class _Collect(Protocol):
    """The response body, gathered; *done* fires with it, or with why the connection ended early."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.done: defer.Deferred[bytes] = defer.Deferred(self._cancel)

    def _cancel(self, _: defer.Deferred[bytes]) -> None:
        # the timeout struck in the middle of the body: close the connection rather than keep reading
        if self.transport is not None:
            close = getattr(self.transport, "abortConnection", None) or self.transport.loseConnection
            close()

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 (Protocol's names)
        """Keep a part of the body."""
        self.parts.append(data)

    def connectionLost(self, reason: Failure = Failure(ResponseDone())) -> None:  # noqa: B008, N802
        """The body ended: whole (ResponseDone; PotentialDataLoss for a body without a length) or cut short."""
        if reason.check(ResponseDone, PotentialDataLoss):
            self.done.callback(b"".join(self.parts))
        else:
            self.done.errback(reason)


def pool() -> HTTPConnectionPool:
    """The connection pool every reporter shares (made on first use)."""
    global _pool
    if _pool is None:
        _pool = HTTPConnectionPool(reactor, persistent=True)
        _pool.maxPersistentPerHost = 8
        _pool.retryAutomatically = False  # a dropped POST is our Retry, never sent twice behind our back
    return _pool


def agent() -> Agent:
    """The Agent every reporter shares, on :func:`pool`."""
    global _agent
    if _agent is None:
        _agent = Agent.usingEndpointFactory(reactor, _Endpoints(), pool=pool())
    return _agent


async def _exchange(method: str, url: str, headers: Headers, body: bytes | None) -> tuple[int, bytes]:
    response = await agent().request(method.encode("ascii"), url.encode("utf-8"), headers,
                                     _Body(body) if body is not None else None)
    answer = _Collect()
    response.deliverBody(answer)
    return response.code, await answer.done


async def request_json(
    method: str, url: str, headers: dict[str, str], body: Any = None, what: str = "", timeout: float = TIMEOUT
) -> Any:
    """Send *body* as JSON (if any); return the decoded JSON answer (or None if it is not JSON).

    A forge that has not answered in full within *timeout* seconds is a :class:`Retry`.
    """
    sent = Headers({"User-Agent": [USER_AGENT], **{name: [value] for name, value in headers.items()}})
    data = None
    if body is not None:
        data = orjson.dumps(body)
        sent.setRawHeaders("Content-Type", ["application/json; charset=utf-8"])
    what = what or f"{method} {url}"
    exchange = defer.ensureDeferred(_exchange(method, url, sent, data))
    exchange.addTimeout(timeout, reactor)
    try:
        status, content = await exchange
    except (ResponseFailed, ResponseNeverReceived, net_error.ConnectError,
            net_error.ConnectionLost, net_error.TimeoutError, net_error.DNSLookupError, OSError) as e:
        if _timed_out(e):
            raise Retry(f"{what}: no answer within {timeout:g}s") from None
        raise Retry(f"{what}: {_describe(e)}") from None
    except (defer.TimeoutError, defer.CancelledError):
        raise Retry(f"{what}: no answer within {timeout:g}s") from None
    if 200 <= status < 300:
        try:
            return orjson.loads(content) if content.strip() else None
        except orjson.JSONDecodeError:
            return None
    text = content[:1000].decode("utf-8", "replace")
    if status >= 500 or status == 429:
        raise Retry(f"{what}: HTTP {status} {text}")
    raise GiveUp(f"{what}: HTTP {status} {text}")


def _timed_out(failure: Exception) -> bool:
    """Whether the request failed because our timeout cancelled it."""
    reasons = getattr(failure, "reasons", [])
    return any(reason.check(defer.CancelledError) for reason in reasons)


def _describe(failure: Exception) -> str:
    if isinstance(failure, ResponseFailed | ResponseNeverReceived):
        reasons = [r.getErrorMessage() for r in getattr(failure, "reasons", [])]
        return f"connection lost ({'; '.join(reasons) or type(failure).__name__})"
    return f"{type(failure).__name__}: {failure}"


async def close_pool() -> None:
    """Close the kept-alive connections (when the reporters stop)."""
    global _pool, _agent
    if _pool is not None:
        closing, _pool, _agent = _pool, None, None
        await closing.closeCachedConnections()
