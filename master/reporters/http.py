"""HTTP for the reporters: JSON requests through treq on a shared keep-alive pool, failures sorted.

A 2xx answer is a success; a 5xx, a 429 or a connection refused, dropped or timed out raises
:class:`Retry`; any other answer raises :class:`GiveUp` with the status and the start of the body
(a 401 for a bad token, a 404 for an unknown repository: trying again would not help).
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet import error as net_error
from twisted.web.client import HTTPConnectionPool, ResponseFailed, ResponseNeverReceived

from ci_common.twistd_process import package_version
from master.reporters.base import GiveUp, Retry

TIMEOUT = 30.0  # seconds a forge has to answer
USER_AGENT = f"ci-master/{package_version()}"
_pool: HTTPConnectionPool | None = None


def pool() -> HTTPConnectionPool:
    """The connection pool every reporter shares (made on first use)."""
    global _pool
    if _pool is None:
        _pool = HTTPConnectionPool(reactor, persistent=True)
        _pool.maxPersistentPerHost = 8
        _pool.retryAutomatically = False  # a dropped POST is our Retry, never sent twice behind our back
    return _pool


async def request_json(
    method: str, url: str, headers: dict[str, str], body: Any = None, what: str = ""
) -> Any:
    """Send *body* as JSON (if any); return the decoded JSON answer (or None if it is not JSON)."""
    headers = {"User-Agent": USER_AGENT, **headers}
    kwargs: dict[str, Any] = {"headers": headers, "timeout": TIMEOUT, "pool": pool()}
    if body is not None:
        kwargs["json"] = body
    what = what or f"{method} {url}"
    try:
        import treq  # on the first report: a master without reporters never loads it (multipart, wsgiref)

        response = await treq.request(method, url, **kwargs)
        content = await treq.content(response)
    except (ResponseFailed, ResponseNeverReceived, net_error.ConnectError, net_error.ConnectionLost,
            net_error.TimeoutError, net_error.DNSLookupError, OSError) as e:
        raise Retry(f"{what}: {_describe(e)}") from None
    except defer.CancelledError:  # treq's timeout
        raise Retry(f"{what}: no answer within {TIMEOUT:g}s") from None
    status = response.code
    if 200 <= status < 300:
        try:
            return json.loads(content) if content.strip() else None
        except ValueError:
            return None
    text = content[:1000].decode("utf-8", "replace")
    if status >= 500 or status == 429:
        raise Retry(f"{what}: HTTP {status} {text}")
    raise GiveUp(f"{what}: HTTP {status} {text}")


def _describe(failure: Exception) -> str:
    if isinstance(failure, ResponseFailed | ResponseNeverReceived):
        reasons = [r.getErrorMessage() for r in getattr(failure, "reasons", [])]
        return f"connection lost ({'; '.join(reasons) or type(failure).__name__})"
    return f"{type(failure).__name__}: {failure}"


async def close_pool() -> None:
    """Close the kept-alive connections (when the reporters stop)."""
    global _pool
    if _pool is not None:
        closing, _pool = _pool, None
        await closing.closeCachedConnections()
