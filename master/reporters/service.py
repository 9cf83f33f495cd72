"""Running the configured reporters: from the data API's build events to delivered reports.

The path of a report, and why it survives a restart:

1. A listener on the event hub sees every ``builds/N/new`` and ``builds/N/finished`` event of a
   build this master runs, and only queues it: the engine never waits for a reporter.
2. One loop takes the queue in event order; for each event it takes the build (the event's
   entity; the properties its ``builds/N/properties/update`` events carried since its ``new``
   event, read from the database only for a build started before the listener; the builder,
   cached; its buildset's source stamps, read once) and asks each reporter that selects the
   build for its report; the reports of the events queued meanwhile are inserted into ``reporter_reports`` in
   one transaction (unique per reporter, build and state: an event seen twice makes no second
   report).  Rows carry the event's journal id; since the loop inserts in event order, the
   highest id a reporter has recorded on this master is a point before which nothing was missed.
3. Deliveries run beside the loop, one chain per reporter and build (so a build's start is
   delivered before its end), a few at a time; each delivered row is marked delivered, a
   given-up one is marked failed with the reason.
4. On start, each reporter first re-reads the event journal after its catch-up point (events
   a killed master journaled but did not record reports for), then delivers every row of its
   own left undelivered.  A report is delivered once; only a kill between the forge's answer
   and the row's update (a few milliseconds) can send it again.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson
import sqlalchemy as sa
from twisted.internet import defer, reactor
from twisted.internet.task import deferLater
from twisted.logger import Logger

from master.data.events import Event
from master.db import schema
from master.db.compiler import dialect_insert
from master.db.interfaces import Prepared
from master.engine.properties import Properties
from master.reporters.base import FINISH, START, BuildInfo, GiveUp, Reporter, Retry
from master.reporters.http import close_pool

if TYPE_CHECKING:
    from master.data.connector import DataAPI

log = Logger()
rr = schema.reporter_reports
ev = schema.events

EVENT_STATES = {"new": START, "finished": FINISH}
CONCURRENT_DELIVERIES = 8  # per reporter
GATHER_SECONDS = 0.05
"""How long events (and delivered rows) gather before one transaction records (or marks) them all:
a busy master then writes once per many builds; an idle one reports 50 ms later."""
JOURNAL_BATCH = 500
_REPORT_COLUMNS = ("reporter", "buildid", "state", "masterid", "event_id", "payload", "created_at")


def _insert_report(dialect_name: str) -> Prepared:
    """Insert one report unless its (reporter, build, state) has one; RETURNING its id when inserted.

    Compiled once per backend: statements built per report cost the writer thread more than
    the writes themselves.
    """
    return Prepared(("reporters", "insert-report", dialect_name), lambda: (
        dialect_insert(dialect_name, rr).values({name: sa.bindparam(name) for name in _REPORT_COLUMNS})
        .on_conflict_do_nothing(index_elements=[rr.c.reporter, rr.c.buildid, rr.c.state])
        .returning(rr.c.id)))


_MARK_DELIVERED = Prepared(("reporters", "mark-delivered"), lambda: sa.update(rr).where(
    rr.c.id.in_(sa.bindparam("ids", expanding=True))).values(delivered_at=sa.bindparam("at")))


def build_url(www_url: str, builderid: int, number: int) -> str:
    """The build's page in the web UI."""
    return f"{www_url}#/builders/{builderid}/builds/{number}"


class ReporterRunner:
    """One reporter's deliveries: a chain per build, at most CONCURRENT_DELIVERIES at once."""

    def __init__(self, reporter: Reporter, storage: Any) -> None:
        self.reporter = reporter
        self.storage = storage
        self._queues: dict[int, list[dict[str, Any]]] = {}  # buildid -> rows waiting, in order
        self._running: dict[int, defer.Deferred] = {}
        self._limit = defer.DeferredSemaphore(CONCURRENT_DELIVERIES)
        self._sleeps: set[defer.Deferred] = set()
        self._to_mark: list[tuple[int, defer.Deferred]] = []
        self._marking = False
        self.stopping = False

    def add(self, row: dict[str, Any]) -> None:
        """Deliver *row* (a reporter_reports row) after the build's rows before it."""
        self.reporter.pending += 1
        self._queues.setdefault(row["buildid"], []).append(row)
        if row["buildid"] not in self._running:
            # registered before the chain starts, which may end at once
            running = self._running[row["buildid"]] = defer.Deferred()
            defer.ensureDeferred(self._chain(row["buildid"])).chainDeferred(running)

    def _delivery(self, row: Any) -> defer.Deferred[None]:
        return defer.ensureDeferred(self._deliver(row))

    async def _chain(self, buildid: int) -> None:
        try:
            queue = self._queues[buildid]
            while queue and not self.stopping:
                row = queue.pop(0)
                try:
                    await self._limit.run(self._delivery, row)
                except defer.CancelledError:
                    return
                except Exception:
                    log.failure("reporter {name}: delivering report {id} failed", name=self.reporter.name, id=row["id"])
                finally:
                    self.reporter.pending -= 1
        finally:
            self._running.pop(buildid, None)
            if not self._queues.get(buildid):
                self._queues.pop(buildid, None)

    async def _deliver(self, row: dict[str, Any]) -> None:
        reporter = self.reporter
        report = orjson.loads(row["payload"])
        attempt = 0
        while not self.stopping:
            attempt += 1
            try:
                await reporter.deliver(report)
            except GiveUp as e:
                log.error("reporter {name}: build {buildid} ({state}) not reported: {why}",
                          name=reporter.name, buildid=row["buildid"], state=row["state"], why=str(e))
                await self._mark(row["id"], failed=str(e)[:2000])
                return
            except Retry as e:
                if attempt >= reporter.max_attempts:
                    log.error("reporter {name}: build {buildid} ({state}) not reported after {n} attempts: {why}",
                              name=reporter.name, buildid=row["buildid"], state=row["state"], n=attempt, why=str(e))
                    await self._mark(row["id"], failed=f"gave up after {attempt} attempts: {e}"[:2000])
                    return
                delay = reporter.delay(attempt)
                log.info("reporter {name}: {why}; trying again in {delay:g}s", name=reporter.name, why=str(e),
                         delay=delay)
                sleep = deferLater(reactor, delay, lambda: None)
                self._sleeps.add(sleep)
                try:
                    await sleep
                finally:
                    self._sleeps.discard(sleep)
            else:
                await self._mark(row["id"])
                return

    async def _mark(self, rowid: int, failed: str | None = None) -> None:
        if failed is not None:
            await self.storage.execute(sa.update(rr).where(rr.c.id == rowid).values(failed=failed))
            return
        # group commit: the rows delivered while one update runs are marked together by the next
        marked: defer.Deferred = defer.Deferred()
        self._to_mark.append((rowid, marked))
        if not self._marking:
            self._marking = True
            defer.ensureDeferred(self._mark_waiting())
        await marked

    async def _mark_waiting(self) -> None:
        try:
            await deferLater(reactor, GATHER_SECONDS, lambda: None)
            while self._to_mark:
                batch, self._to_mark = self._to_mark, []
                try:
                    await self.storage.execute(_MARK_DELIVERED, {"ids": [rowid for rowid, _ in batch],
                                                                 "at": int(time.time())})
                except Exception:
                    log.failure("reporter {name}: marking {n} report(s) delivered failed", name=self.reporter.name,
                                n=len(batch))
                for _, marked in batch:
                    marked.callback(None)
        finally:
            self._marking = False

    async def stop(self) -> None:
        """Stop retrying (waiting reports stay in the database); wait for the requests in flight."""
        self.stopping = True
        for sleep in list(self._sleeps):
            sleep.cancel()
        for running in list(self._running.values()):
            try:
                await running
            except Exception:
                log.failure("reporter {name}: stopping", name=self.reporter.name)


class Reporters:
    """The configured reporters of one master, fed from the data API's events."""

    def __init__(self, data: DataAPI, masterid: int, reporters: Sequence[Reporter], www_url: str) -> None:
        self.data = data
        self.storage = data.storage
        self.masterid = masterid
        self.www_url = www_url
        self.runners = {r.name: ReporterRunner(r, self.storage) for r in reporters}
        # (event id, buildid, state, the build's entity in the event)
        self._queue: list[tuple[int, int, str, dict[str, Any]]] = []
        self._working: defer.Deferred | None = None
        self._held = False
        self._remove_listener: Any = None
        self._builders: dict[int, dict[str, Any]] = {}
        self._stamps: dict[int, list[dict[str, Any]]] = {}  # buildid -> source stamps, start to finish
        # buildid -> {name: [value, source]} of this master's builds whose 'new' event came live: every
        # property they get is published after it, so these are all of them (no read per event)
        self._properties: dict[int, dict[str, list[Any]]] = {}

    @property
    def reporters(self) -> list[Reporter]:
        """The reporters run here."""
        return [runner.reporter for runner in self.runners.values()]

    async def start(self) -> None:
        """Listen to build events, record what the journal holds since each reporter's catch-up point, resume."""
        if not self.runners:
            return
        await self.data.events.catch_up()  # the hub knows its last id: events after it come to the listener
        last = self.data.events.delivered or 0
        self._held = True  # live events wait behind the journal's older ones
        self._remove_listener = self.data.events.add_listener(self._on_event)
        known = [point for point in (await self._catch_up_points()).values() if point is not None]
        if known:
            await self._replay_journal(min(known), last)
        for name, runner in self.runners.items():
            rows = await self.storage.fetch_all(
                sa.select(rr).where(rr.c.reporter == name, rr.c.masterid == self.masterid,
                                    rr.c.delivered_at.is_(None), rr.c.failed.is_(None)).order_by(rr.c.id)
            )
            if rows:
                log.info("reporter {name}: {n} report(s) left undelivered; delivering them", name=name, n=len(rows))
            for row in rows:
                runner.add(row)
        self._queue.sort(key=lambda queued: queued[0])
        self._held = False
        self._kick()

    async def _catch_up_points(self) -> dict[str, int | None]:
        rows = await self.storage.fetch_all(
            sa.select(rr.c.reporter, sa.func.max(rr.c.event_id).label("last"))
            .where(rr.c.masterid == self.masterid, rr.c.reporter.in_(list(self.runners)))
            .group_by(rr.c.reporter)
        )
        found = {row["reporter"]: row["last"] for row in rows}
        # a reporter with no report yet starts from now: it reports no build older than itself
        return {name: found.get(name) for name in self.runners}

    async def _replay_journal(self, since: int, through: int) -> None:
        """Queue the build events of this master journaled in (since, through] (a crash may have lost them)."""
        after = since
        while after < through:
            rows = await self.storage.fetch_all(
                sa.select(ev.c.id, ev.c["keys"], ev.c.entity)
                .where(ev.c.id > after, ev.c.id <= through, ev.c.rtype == "builds", ev.c.masterid == self.masterid)
                .order_by(ev.c.id).limit(JOURNAL_BATCH)
            )
            if not rows:
                return
            for row in rows:
                for key in row["keys"].split("\n"):
                    parts = key.split("/")
                    if len(parts) == 3 and parts[0] == "builds" and parts[2] in EVENT_STATES:
                        entity = orjson.loads(row["entity"])
                        if entity.get("masterid") == self.masterid:
                            self._queue.append((row["id"], int(parts[1]), EVENT_STATES[parts[2]], entity))
            after = rows[-1]["id"]

    def _on_event(self, event: Event) -> None:
        if event.rtype == "properties":
            for key in event.keys:
                if len(key) == 4 and key[0] == "builds" and key[2] == "properties":
                    known = self._properties.get(int(key[1]))
                    if known is not None:
                        known.update(event.entity)
            return
        if event.rtype != "builds":
            return
        entity = event.entity
        if entity.get("masterid") != self.masterid:
            return  # another master's build: that master reports it
        for key in event.keys:
            if len(key) == 3 and key[0] == "builds" and key[2] in EVENT_STATES:
                buildid = int(key[1])
                if key[2] == "new":
                    self._properties[buildid] = {}
                self._queue.append((event.id, buildid, EVENT_STATES[key[2]], dict(entity)))
                self._kick()
                return

    def _kick(self) -> None:
        if self._working is None and self._queue and not self._held:
            # set before the loop starts: it may run to its end at once (reads answered from memory)
            self._working = defer.Deferred()
            defer.ensureDeferred(self._work()).chainDeferred(self._working)

    async def _work(self) -> None:
        try:
            await deferLater(reactor, GATHER_SECONDS, lambda: None)
            while self._queue:
                # what queued up meanwhile goes in one transaction: one commit for many builds' reports
                batch, self._queue = self._queue, []
                rows: list[dict[str, Any]] = []
                for event_id, buildid, state, entity in batch:
                    try:
                        rows += await self._reports(event_id, buildid, state, entity)
                    except Exception:
                        log.failure("reporters: making the reports of build {buildid} ({state}) failed",
                                    buildid=buildid, state=state)
                try:
                    new = await self._insert(rows) if rows else []
                except Exception:
                    log.failure("reporters: recording {n} report(s) failed", n=len(rows))
                    continue
                for row in new:
                    self.runners[row["reporter"]].add(row)
        finally:
            self._working = None

    async def _insert(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Insert the reports not recorded yet (an event replayed after a restart makes none); return those."""
        insert = _insert_report(self.storage.dialect_name)

        async def work(txn: Any) -> list[dict[str, Any]]:
            new = []
            for row in rows:
                inserted = await txn.fetch_all(insert, row)
                if inserted:
                    new.append({**row, "id": inserted[0]["id"]})
            return new

        return await self.storage.transaction(work)

    async def _builder(self, builderid: int) -> dict[str, Any]:
        builder = self._builders.get(builderid)
        if builder is None:
            builder = await self.data.get(("builders", str(builderid))) or {"name": "", "tags": []}
            self._builders[builderid] = builder
        return builder

    async def _reports(self, event_id: int, buildid: int, state: str, entity: dict[str, Any]) -> list[dict[str, Any]]:
        """The rows of the reports the build's *state* makes, for the reporters that select it."""
        # the build as it was at the event (a start reported after the build ended still says "running");
        # its properties as they are now (a got_revision set since is the right commit)
        properties = self._properties.get(buildid)
        if state == FINISH:
            self._properties.pop(buildid, None)
        if properties is not None:
            build = {**entity, "properties": dict(properties)}
        else:  # a build older than the listener (a restart): its properties are in the database
            read = await self.data.get(("builds", str(buildid)), query={"property": ["*"]})
            if read is None:
                return []
            build = {**read, **{key: value for key, value in entity.items() if key != "properties"}}
        builder = await self._builder(build["builderid"])
        chosen = [
            r for r in self.reporters
            if (state == FINISH or r.wants_start) and r.selects(builder.get("name", ""), builder.get("tags") or [])
        ]
        if not chosen:
            return []
        info = await self._build_info(build, builder, state, chosen)
        rows = []
        for reporter in chosen:
            try:
                report = await reporter.make_report(info, state)
            except Exception:
                log.failure("reporter {name}: making the report of build {buildid} failed", name=reporter.name,
                            buildid=buildid)
                continue
            if report is not None:
                rows.append({
                    "reporter": reporter.name, "buildid": buildid, "state": state, "masterid": self.masterid,
                    "event_id": event_id, "payload": orjson.dumps(report).decode(), "created_at": int(time.time()),
                })
        return rows

    async def _build_info(self, build: dict[str, Any], builder: dict[str, Any], state: str,
                          chosen: list[Reporter]) -> BuildInfo:
        buildid = build["buildid"]
        stamps = self._stamps.get(buildid)
        if stamps is None:
            request = await self.data.get(("buildrequests", str(build["buildrequestid"])))
            buildset = await self.data.get(("buildsets", str(request["buildsetid"]))) if request else None
            stamps = list((buildset or {}).get("sourcestamps") or [])
            if state == START:
                self._stamps[buildid] = stamps
        if state == FINISH:
            self._stamps.pop(buildid, None)
        props = Properties({name: (value, source) for name, (value, source) in (build.get("properties") or {}).items()})
        info = BuildInfo(build=build, builder=builder, sourcestamps=stamps,
                         url=build_url(self.www_url, build["builderid"], build["number"]), props=props)
        if state == FINISH and any(r.wants_steps for r in chosen):
            steps = await self.data.get(("builds", str(buildid), "steps"), query={"order": ["number"]})
            info.steps = list(steps.items)
        if state == FINISH and any(r.wants_previous for r in chosen):
            previous = await self.data.get(("builders", str(build["builderid"]), "builds"), query={
                "number__lt": [str(build["number"])], "complete": ["true"], "order": ["-number"], "limit": ["1"],
                "field": ["results"],
            })
            info.previous_results = previous.items[0]["results"] if previous.items else None
        return info

    def backlog(self) -> dict[str, int]:
        """Reports waiting for delivery, per reporter name."""
        return {name: runner.reporter.backlog() for name, runner in self.runners.items()}

    async def stop(self) -> None:
        """Stop listening; record what is queued; stop delivering (undelivered reports wait in the database)."""
        if self._remove_listener is not None:
            self._remove_listener()
            self._remove_listener = None
        if self._working is not None:
            try:
                await self._working
            except Exception:
                log.failure("reporters: recording reports while stopping")
        for runner in self.runners.values():
            await runner.stop()
        if self.runners:
            await close_pool()
