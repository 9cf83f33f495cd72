"""The web server's request log: off by default, or a file in combined log format (``www.access_log``).

Twisted's Site writes a line per request to the master's own log, which under load is
thousands of lines a second.  Here a request goes to the access log file when one is set
(rotated as ``twistd.log`` is: at 10 MB, ten files kept), and to the master's log only when
it failed on our side (status 500 and above).  Every answered request is also counted in
the master's metrics.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.logger import Logger
from twisted.python.logfile import LogFile
from twisted.web import http, server

log = Logger()

ROTATE_BYTES = 10_000_000
KEEP_FILES = 10


def _quoted(value: bytes | str | None) -> str:
    """A header or request line as it may stand between double quotes in a log line."""
    if value is None:
        return "-"
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")


def combined_line(request: http.Request, timestamp: str | None = None) -> str:
    """*request* in the combined log format (Apache's and nginx's default), without the newline."""
    address = request.getClientAddress()
    host = getattr(address, "host", None) or "-"
    user = getattr(request, "log_user", None) or "-"
    when = timestamp or http.datetimeToLogString()
    line = f"{_quoted(request.method)} {_quoted(request.uri)} {_quoted(request.clientproto)}"
    length = request.sentLength or "-"
    referrer = _quoted(request.getHeader(b"referer"))
    agent = _quoted(request.getHeader(b"user-agent"))
    return f'{host} - {user} {when} "{line}" {request.code} {length} "{referrer}" "{agent}"'


class AccessLogSite(server.Site):
    """A Site that logs requests to its access log file (if any) and counts them in its metrics (if any)."""

    metrics: Any = None
    access_log_path: Path | None = None
    allowed_origins: list[str]  # set by master.www.site.build_site, changed by reconfig
    max_body_bytes: int
    _access_log: LogFile | None = None

    def log(self, request: http.Request) -> None:
        """A request was answered: count it, write its line, and tell the master's log if it failed."""
        if self.metrics is not None:
            try:
                self.metrics.request_finished(request, self.resource)
            except Exception:
                log.failure("counting a request failed")
        if self._access_log is None and request.code < 500:
            return
        line = combined_line(request, getattr(self, "_logDateTime", None))
        if self._access_log is not None:
            self._access_log.write(line + "\n")
        if request.code >= 500:
            log.error("request failed: {line}", line=line)

    def set_access_log(self, path: str | None, basedir: str | Path) -> None:
        """Write to *path* (relative to *basedir*) from now on; None: stop writing.  The same path is kept open.

        ValueError, saying why, when the file cannot be opened (the log written until then is kept).
        """
        target = None if path is None else (Path(basedir) / path).resolve()
        if target == self.access_log_path:
            return
        opened = None
        if target is not None:
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                opened = LogFile(target.name, str(target.parent), rotateLength=ROTATE_BYTES,
                                 maxRotatedFiles=KEEP_FILES)
            except OSError as e:
                raise ValueError(f"www.access_log: cannot write {target}: {e.strerror or e}") from None
        if self._access_log is not None:
            self._access_log.close()
        self._access_log, self.access_log_path = opened, target
