"""The Bileto plugin object: what master.cfg enables."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from master.sdk import Plugin, PluginContext, ResourceType
from plugins.bileto.resources import TicketComments, Tickets
from plugins.bileto.routes import BiletoApi
from plugins.bileto.tables import metadata

STATUSES = (
    "New",
    "Preparing packages",
    "Building",
    "Build failed",
    "Packages built",
    "Publishing",
    "Publish failed",
    "Can't publish",
    "Published",
    "Migrating",
    "Landed",
    "Abandoned",
)
QA_SIGNOFFS = ("", "Ready for QA", "QA in progress", "QA Granted", "QA Failed", "Publish without QA")
DISTRIBUTIONS = ("ubuntu", "ubuntu-rtm", "stable-phone-overlay")
SERIES = ("dual", "xenial", "wily", "vivid", "trusty")


class BiletoPlugin(Plugin):
    """Bileto's public API v1 at ``/v1``: landing tickets ("requests") with comments.

    Enable it in master.cfg::

        from plugins.bileto import BiletoPlugin
        c["plugins"] = [BiletoPlugin(api_token=os.environ.get("BILETO_TOKEN"))]

    Options: *api_token*, the site's bot token accepted as ``?token=`` on POSTs (None: only
    ci-master users' credentials); *statuses*, *qa_signoffs*, *distributions* and *series*,
    the drop-down lists ``/v1/metadata`` offers.

    Tickets and comments are the data API resource types ``tickets`` and ``ticket_comments``
    (so also ``/api/v2/tickets``, ``/api/v2/tickets/<id>/comments`` and their events),
    stored in the plugin's tables ``bileto_tickets`` and ``bileto_comments``, whose schema
    moves with the plugin's Alembic revisions.

    Where the seed says nothing, this is what the plugin does:

    * **search** joins, by newlines: request_id, description, sources, merge_proposals,
      landers, status, siloname, dest, distribution, series, test_plan, qa_signoff.  The
      seed's example fixes every filled slot; its three empty ones are taken to be sources
      (beside merge_proposals: what to land), dest (beside siloname: where to) and test_plan
      (beside qa_signoff).  jenkins, download_links, published_versions and sync_request
      are not in it, as jenkins is not in the example.  It is rewritten on every change.
    * **date** is the creation time in UTC, naive ISO 8601, always with six decimals.
    * **Queries**: ``field=value`` is a case-insensitive substring match (``request_id``
      matches exactly); the same field given twice matches either value; several fields
      must all match.  ``limit``/``offset`` page (no limit: at most the master's largest
      page, 1000 by default) and the header ``X-Total-Count`` gives the number of matches;
      newest ticket first.  ``token`` is accepted and ignored on reads.  Landed and
      Abandoned (exact statuses) are left out when no field is named (paging alone names
      none), and from any query with ``active_only`` (bare, or ``=true``; ``=false`` is off).
      ``comments`` cannot be queried (400), nor can an unknown field (400 naming it).
    * ``/v1/user/<lander>`` and ``/v1/silo/<name>`` take the same parameters as
      ``/v1/tickets``, always active only; ``/v1/publishable`` (status exactly "Packages
      built", qa_signoff exactly one of the two) and ``/v1/failures`` (status containing
      can't, failed or error, in any case) take them too.
    * ``/v1/ticket/<id>``: 404 ``{"error": "no ticket <id>"}`` when there is none, 400 for
      a non-integer id.
    * ``/v1/metadata``: ``{"fields": {name: doc}, "statuses": [...], "qa_signoff": [...],
      "distributions": [...], "series": [...]}``.  Statuses are not restricted to the list:
      bots write free text such as "Build failed: <reason>".
    * **POST /v1/tickets**: a body without ``request_id`` creates a ticket (201, missing
      fields "", status "New" if none); with one, updates only the fields given (200);
      both answer ``{"requests": [ticket]}``.  ``date``, ``comments`` and ``search`` are
      ignored; other unknown fields, or non-string values, are 400 naming them; null is "".
      Each field whose value really changes gets one comment "<field> changed from <old>
      to <new>" (an empty value shown as "(empty)"), in field order; a POST changing
      nothing adds none.  The comments' author is the body's ``author``, else the
      ci-master user posting; with neither (the bot token) an update is 400.
    * **POST /v1/comment**: ``{"request_id", "text"[, "author"]}`` answers 201
      ``{"comments": [comment]}``; empty text is 400, an unknown ticket 404.
    * **Credentials** (see :mod:`plugins.bileto.access`): the site's ``api_token``, or a
      ci-master user (API token as ``?token=`` or Bearer, Basic, or the session cookie)
      whom the master's rules allow action ``create``/``update``/``comment`` on resource
      ``tickets``.  Bad token or none: 401; a user without the role: 403.
    * Errors are ``{"error": message}``; other methods 405 with ``Allow``.
    """

    name = "bileto"
    tables = metadata
    migrations_dir = str(Path(__file__).with_name("migrations"))

    def __init__(
        self,
        api_token: str | None = None,
        statuses: Sequence[str] = STATUSES,
        qa_signoffs: Sequence[str] = QA_SIGNOFFS,
        distributions: Sequence[str] = DISTRIBUTIONS,
        series: Sequence[str] = SERIES,
    ) -> None:
        self.api_token = api_token or None
        self.statuses = list(statuses)
        self.qa_signoffs = list(qa_signoffs)
        self.distributions = list(distributions)
        self.series = list(series)

    def resource_types(self) -> list[ResourceType]:
        """Tickets and their comments."""
        return [Tickets(), TicketComments()]

    def routes(self, ctx: PluginContext) -> dict[str, Any]:
        """The v1 API at ``/v1``."""
        lists = {
            "statuses": self.statuses,
            "qa_signoff": self.qa_signoffs,
            "distributions": self.distributions,
            "series": self.series,
        }
        return {"v1": BiletoApi(ctx, self.api_token, lists)}
