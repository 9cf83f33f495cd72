"""Size limits of HTTP requests, answered in JSON before the handlers see anything.

Twisted's HTTP server drops a connection whose request line or one header line passes 16 KiB
without a word, answers a bare 400 when the headers together do, and reads any body into a
file however large.  :class:`LimitedChannel` answers instead:

====  ==========================================================================
414   the request line is longer than 16 KiB (for example a filter with thousands of ids)
431   the header lines together are longer than 16 KiB
413   the body is larger than the limit of its route: ``www.max_body_bytes`` (10 MB), or
      a larger one a mounted resource declares for some of its routes (DCI file uploads)
====  ==========================================================================

The answer goes out as soon as the excess is known (a body announced too large is not
waited for, and ``Expect: 100-continue`` gets the 413 instead of the go-ahead); the
connection is then closed for writing and what the client still sends is read and dropped
for a while, so that a client busy sending its body still reads the answer.  Bodies within
the limit are streamed to a temporary file by Twisted, not held in memory, beyond 100 KB.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_to_bytes

from twisted.logger import Logger
from twisted.web import http, server

from master.www.responses import JSON, encode_json
from master.www.transport import connection

log = Logger()

DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
"""``www.max_body_bytes`` when master.cfg does not set it."""

LINGER_SECONDS = 10
"""How long a refused connection keeps reading (and dropping) what its client still sends."""

_REASONS = {413: b"Content Too Large", 414: b"URI Too Long", 431: b"Request Header Fields Too Large"}


def body_limit(site: Any, method: bytes, path: bytes) -> int:
    """The largest body accepted for *method* on *path* (the raw request target) at *site*.

    The resource tree is walked by the path's segments; a mounted resource with a
    ``max_body_bytes(method, segments)`` method may answer for the segments below it (``None``:
    the site's limit).  The innermost one that answers wins.
    """
    limit = getattr(site, "max_body_bytes", DEFAULT_MAX_BODY_BYTES)
    segments = [unquote_to_bytes(part) for part in path.split(b"?", 1)[0].split(b"/")[1:]]
    node = site.resource
    for index, segment in enumerate(segments):
        node = getattr(node, "children", {}).get(segment)
        if node is None:
            break
        declare = getattr(node, "max_body_bytes", None)
        if callable(declare):
            own = declare(method, segments[index + 1:])
            if own is not None:
                limit = own
    return limit


_FIRST_LINE = "_HTTPChannel__first_line"
"""HTTPChannel's private flag, true while the request line is being read."""


class LimitedChannel(http.HTTPChannel):
    """An HTTP/1.1 channel that answers oversized request lines, headers and bodies in JSON."""

    site: server.Site  # set by Site.buildProtocol (HTTPChannel does not declare it)
    _refused = False
    _host: Any = None

    def getHost(self) -> Any:  # noqa: N802 (Twisted's name)
        """The local address, asked of the socket once: Twisted asks for it with every request."""
        if self._host is None:
            self._host = super().getHost()
        return self._host

    def lineLengthExceeded(self, line: bytes) -> None:  # noqa: N802 (Twisted's name)
        """One line past 16 KiB: the request line (414) or a header (431)."""
        self._refuse_oversized_head()

    def lineReceived(self, line: bytes) -> None:  # noqa: N802
        """Refuse the head once its lines together pass ``totalHeadersSize``; else parse as usual."""
        if self._refused:
            return
        if self._receivedHeaderSize + len(line) > self.totalHeadersSize:
            self._refuse_oversized_head()
            return
        super().lineReceived(line)

    def allHeadersReceived(self) -> None:  # noqa: N802
        """Refuse a body announced larger than its route takes; else give the request its limit."""
        if self._transferDecoder is None or self.length == 0:
            # no body to limit (most requests): spare the walk of the resource tree
            super().allHeadersReceived()
            return
        request = self.requests[-1]
        request.max_body_bytes = limit = body_limit(self.site, self._command, self._path)
        if self.length is not None and self.length > limit:
            self.refuse(413, f"the request body ({self.length} bytes) is larger than the {limit} bytes allowed here")
            return
        super().allHeadersReceived()

    def allContentReceived(self) -> None:  # noqa: N802
        """A refused request is not processed, whatever of its body arrived."""
        if not self._refused:
            super().allContentReceived()

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        """Once refused, what the client still sends is dropped."""
        if not self._refused:
            super().dataReceived(data)

    def rawDataReceived(self, data: bytes) -> None:  # noqa: N802
        """Once refused, what the client still sends is dropped."""
        if not self._refused:
            super().rawDataReceived(data)

    def _refuse_oversized_head(self) -> None:
        first_line = getattr(self, _FIRST_LINE)  # Twisted's own flag: still reading the request line
        if first_line:
            self.refuse(414, f"the request line is longer than {self.MAX_LENGTH} bytes")
        else:
            self.refuse(431, f"the request header lines are longer than {self.totalHeadersSize} bytes")

    def refuse(self, status: int, message: str) -> None:
        """Answer *status* with a JSON error now, and close the connection once the client stops sending."""
        if self._refused:
            return
        self._refused = True
        self.persistent = False
        body = encode_json({"error": message})
        transport = connection(self)
        transport.write(
            b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
            % (status, _REASONS[status], JSON, len(body), body)
        )
        peer = transport.getPeer()
        log.info("refused a request from {host}: {status} {message}", host=getattr(peer, "host", peer),
                 status=status, message=message)
        # half-close: the client reads the answer and EOF while we drop the rest of its request;
        # the idle timeout ends the connection if it keeps sending
        lose_write = getattr(self.transport, "loseWriteConnection", None)
        if lose_write is not None:
            lose_write()
            self.setTimeout(LINGER_SECONDS)
        else:
            self.loseConnection()

    def timeoutConnection(self) -> None:  # noqa: N802
        """A refused connection whose client kept sending is cut; others time out as Twisted does."""
        if self._refused:
            connection(self).abortConnection()
            return
        super().timeoutConnection()
