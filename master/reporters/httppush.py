"""HttpStatusPush: the build POSTed as JSON to a URL of the site's own, at its start and at its end."""

from __future__ import annotations

from typing import Any

from master.reporters.base import BuildInfo, Reporter, check_http_url
from master.reporters.http import request_json


class HttpStatusPush(Reporter):
    """POST each build, as REST shows it (``builds/N?property=*``), to *url* when it starts and ends.

    The body is the build's entity with three more keys: ``builder`` (``builderid``, ``name``,
    ``tags``), ``sourcestamps`` (those of its buildset) and ``url`` (its page in the web UI).
    *headers* are sent with every request (an ``Authorization`` for instance); they are not stored
    in the database.
    """

    def __init__(self, url: str, headers: dict[str, str] | None = None, builders: list[str] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(builders=builders, **kwargs)
        self.url = url
        self.headers = dict(headers or {})

    def check(self) -> None:
        """The URL is an http(s) URL; the headers are strings."""
        super().check()
        check_http_url("url", self.url)
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in self.headers.items()):
            raise ValueError("headers: expected a dict of header names to string values")

    async def make_report(self, info: BuildInfo, state: str) -> dict[str, Any] | None:
        """The build's JSON body."""
        builder = {key: info.builder.get(key) for key in ("builderid", "name", "tags")}
        return {"body": {**info.build, "builder": builder, "sourcestamps": info.sourcestamps, "url": info.url}}

    async def deliver(self, report: dict[str, Any]) -> None:
        """POST it."""
        body = report["body"]
        await request_json("POST", self.url, self.headers, body,
                           what=f"HttpStatusPush of build {body.get('buildid')} to {self.url}")
