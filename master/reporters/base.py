"""What every reporter shares: which builds it reports, and delivering its reports with retries.

A reporter turns a build's start and end into a *report* (a JSON-able payload: a commit status,
an HTTP body, a mail) and delivers it.  :class:`master.reporters.service.Reporters` feeds it
from the data API's events and keeps every report in the ``reporter_reports`` table until it
is delivered; this module holds the reporter's side: selecting builds, making the payload,
sending it, and the retry policy.

Delivery failures are of two kinds.  :class:`Retry` (a 5xx answer, a 429, a connection refused,
dropped or timed out) is tried again after ``retry_delay`` seconds, doubling up to
``max_delay``, at most ``max_attempts`` times; :class:`GiveUp` (any other 4xx: a bad token, an
unknown repository) is logged once with the forge's answer and the report dropped.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from master.engine.config import Configured
from master.engine.properties import Properties
from master.results import EXCEPTION, FAILURE, result_name

START = "start"
FINISH = "finish"
STATES = (START, FINISH)

class Retry(Exception):
    """Delivery failed for a reason that may pass (a 5xx, a connection error): try again later."""


class GiveUp(Exception):
    """Delivery failed for a reason that will not pass (a 4xx): log it once and drop the report."""


@dataclass
class BuildInfo:
    """What a reporter knows of a build when it makes a report.

    *build* is the build's entity as REST shows it (``properties`` included), *builder* the
    builder's (``name``, ``tags``), *sourcestamps* those of its buildset, *url* the build's page
    in the web UI; *props* the build's properties for renderables; *steps* (name and results of
    each step, in order) and *previous_results* (of the builder's build before this one) are
    filled in only for reporters that ask for them (``wants_steps``, ``wants_previous``).
    """

    build: dict[str, Any]
    builder: dict[str, Any]
    sourcestamps: list[dict[str, Any]]
    url: str
    props: Properties
    steps: list[dict[str, Any]] = field(default_factory=list)
    previous_results: int | None = None

    @property
    def results(self) -> int | None:
        """The build's result code, None while it runs."""
        return self.build.get("results")

    @property
    def result_name(self) -> str:
        """The result in words ("success", "failure", ...)."""
        return result_name(self.results)

    @property
    def revision(self) -> str | None:
        """The commit built: ``got_revision`` when a source step set it, else the source stamp's revision."""
        got = self.props.get("got_revision")
        if isinstance(got, dict):  # one per codebase: the first source stamp's
            got = got.get(self.sourcestamps[0].get("codebase", "")) if self.sourcestamps else None
        if isinstance(got, str) and got:
            return got
        return self._first_stamp("revision")

    @property
    def repository(self) -> str | None:
        """The first source stamp's repository URL, if any."""
        return self._first_stamp("repository")

    def _first_stamp(self, key: str) -> str | None:
        return next((stamp[key] for stamp in self.sourcestamps if stamp.get(key)), None)

    @property
    def failing_step(self) -> str | None:
        """The name of the first step that failed (or ended in an exception), if any."""
        for step in self.steps:
            if step.get("results") in (FAILURE, EXCEPTION):
                return step["name"]
        return None


class Reporter(Configured):
    """The base of reporters: the builds it selects, its retry policy, and the two methods to write.

    ``name`` keys its reports in the database (two reporters of one class need distinct names);
    ``builders`` and ``tags`` select the builds (a build is reported when its builder is named
    in ``builders`` or carries one of ``tags``; with neither, every build is).
    """

    wants_start = True
    """Whether the build's start is reported (else only its end)."""
    wants_steps = False
    wants_previous = False

    def __init__(
        self, *, name: str | None = None, builders: Sequence[str] | None = None, tags: Sequence[str] | None = None,
        retry_delay: float = 1.0, max_delay: float = 300.0, max_attempts: int = 12,
    ) -> None:
        self.name = name if name is not None else type(self).__name__
        self.builders = list(builders) if builders is not None else None
        self.tags = list(tags) if tags is not None else None
        self.retry_delay = retry_delay
        self.max_delay = max_delay
        self.max_attempts = max_attempts
        self.pending = 0  # reports recorded and not yet delivered nor given up (see backlog())

    def check(self) -> None:
        """Raise ValueError saying why this reporter cannot work (checked by ``ci-master checkconfig``)."""
        if not isinstance(self.name, str) or not self.name or len(self.name) > 255:
            raise ValueError(f"name: expected a non-empty string of at most 255 characters, got {self.name!r}")
        for key in ("builders", "tags"):
            value = getattr(self, key)
            if value is not None and not all(isinstance(item, str) for item in value):
                raise ValueError(f"{key}: expected a list of names, got {value!r}")
        for key in ("retry_delay", "max_delay"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ValueError(f"{key}: expected a positive number of seconds, got {value!r}")
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise ValueError(f"max_attempts: expected a positive integer, got {self.max_attempts!r}")

    def selects(self, builder_name: str, builder_tags: Sequence[str]) -> bool:
        """Whether builds of this builder are reported."""
        if self.builders is None and self.tags is None:
            return True
        return (self.builders is not None and builder_name in self.builders) or (
            self.tags is not None and any(tag in self.tags for tag in builder_tags)
        )

    async def make_report(self, info: BuildInfo, state: str) -> dict[str, Any] | None:
        """The payload to deliver for the build's *state* (START or FINISH), or None for nothing to send.

        It is stored as JSON before delivery: secrets (tokens, passwords) are added by
        :meth:`deliver`, never put here.
        """
        raise NotImplementedError

    async def deliver(self, report: dict[str, Any]) -> None:
        """Send one report; raise :class:`Retry` or :class:`GiveUp` when it was not delivered."""
        raise NotImplementedError

    def backlog(self) -> int:
        """How many of this reporter's reports wait for delivery (for a ``/metrics`` gauge)."""
        return self.pending

    def delay(self, attempt: int) -> float:
        """Seconds to wait before attempt *attempt* + 1 (exponential back-off, capped)."""
        return min(self.retry_delay * 2 ** (attempt - 1), self.max_delay)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def check_http_url(key: str, url: Any) -> str:
    """*url* when it is an absolute http(s) URL with a host (and any port valid), else ValueError naming *key*."""
    if not isinstance(url, str) or not url or re.search(r"\s", url):
        raise ValueError(f"{key}: expected an http:// or https:// URL, got {url!r}")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError as e:
        raise ValueError(f"{key}: {url!r} is not a valid URL ({e})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{key}: {url!r} is not an http:// or https:// URL with a host")
    return url
