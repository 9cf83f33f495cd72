"""Logs of steps, and their contents: line ranges as JSON, or the whole text streamed raw.

A log's lines are stored in ``logchunks`` rows of whole lines (each ending in a newline),
at most :data:`MAX_CHUNK_BYTES` bytes and :data:`MAX_CHUNK_LINES` lines, numbered from 0
by ``first_line``/``last_line``; ``compress_log`` merges and zlib-compresses them.  Reads
touch only the chunks a line range overlaps, found through the (logid, first_line) key.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from twisted.internet import threads

from master.data.base import Declaration, Endpoint, Field, Kind, RawContent, ResourceType, update_method
from master.data.errors import Conflict, NotFound
from master.data.resources.livecache import LiveEntities
from master.data.resources.steps import build_arg_columns, build_id_of, build_paths, no_condition
from master.data.resultspec import ResultSpec, one_int
from master.data.types import Boolean, Integer, String
from master.db import schema
from master.db.interfaces import IntegrityError, ITransaction, Prepared

if TYPE_CHECKING:
    from master.data.connector import DataAPI

t = schema.logs
lc = schema.logchunks

MAX_CHUNK_BYTES = 65536
"""Largest stored chunk, in bytes of UTF-8 (a longer single line is truncated to fit)."""
MAX_CHUNK_LINES = 1000
"""Most lines in one stored chunk, so that a short line range never decodes much more."""
RAW_PAGE = 50
"""Chunks read per query while streaming a raw log (at most ~3 MiB in memory)."""
LOG_TYPES = {"s": "stdio: each line starts with its stream, o, e, h or i", "t": "text", "h": "html"}
SLUG_LENGTH = 50
PLAIN, ZLIB = 0, 1  # logchunks.compressed
DELETED = "d"  # logs.type of a log whose content retention removed

_NOT_IN_SLUG = re.compile(r"[^a-zA-Z0-9._-]")
# the first character of each line, one whole UTF-8 sequence (never the newline of an empty line)
_STREAM_CHAR = re.compile(rb"^(?:[^\n\x80-\xff]|[\xc0-\xff][\x80-\xbf]*)", re.MULTILINE)


def slugify(name: str) -> str:
    """An identifier made from a log name (reachable as ``i:log_slug``): other characters become '_'."""
    slug = _NOT_IN_SLUG.sub("_", name)
    if not slug or not (slug[0].isalpha() or slug[0] in "_-"):
        slug = "_" + slug
    return slug[:SLUG_LENGTH]


def _unique_slug(slug: str, taken: set[str]) -> str:
    candidate, number = slug, 2
    while candidate in taken:
        suffix = f"_{number}"
        candidate = slug[: SLUG_LENGTH - len(suffix)] + suffix
        number += 1
    return candidate


def split_chunks(data: bytes) -> Iterator[tuple[bytes, int]]:
    """Cut whole lines of UTF-8 into ``(chunk, line count)`` pieces within the chunk bounds.

    A line longer than a chunk is cut at a character boundary and keeps its newline: the
    line count never changes, only that line's tail is lost.
    """
    pos, size = 0, len(data)
    while pos < size:
        limit = pos + MAX_CHUNK_BYTES
        if limit >= size:
            cut = size
        else:
            newline = data.rfind(b"\n", pos, limit)
            if newline == -1:
                kept = data[pos : limit - 1].decode("utf-8", "ignore").encode()  # drops a split character
                yield kept + b"\n", 1
                pos = data.index(b"\n", limit - 1) + 1
                continue
            cut = newline + 1
        lines = data.count(b"\n", pos, cut)
        if lines > MAX_CHUNK_LINES:
            cut = pos
            for _ in range(MAX_CHUNK_LINES):
                cut = data.index(b"\n", cut) + 1
            lines = MAX_CHUNK_LINES
        yield data[pos:cut], lines
        pos = cut


def _chunk_bytes(row: dict[str, Any]) -> bytes:
    content = bytes(row["content"])
    return zlib.decompress(content) if row["compressed"] == ZLIB else content


def _lines_from(text: bytes, chunk_first: int, first: int, last: int | None = None) -> bytes:
    """The lines *first*..*last* (all from *first* if None) of a chunk starting at line *chunk_first*."""
    start = max(first - chunk_first, 0)
    if start == 0 and last is None:
        return text
    lines = text.split(b"\n")[:-1]  # each line ends in a newline: the last piece is empty
    stop = len(lines) if last is None else min(last - chunk_first + 1, len(lines))
    if start == 0 and stop == len(lines):
        return text
    return b"".join(line + b"\n" for line in lines[start:stop])


def _chunks_from(first: sa.ColumnElement[Any]) -> sa.Select[Any]:
    """Chunks of log ``:logid`` from the one holding line *first* on, by first_line (the primary key)."""
    holding = (
        sa.select(lc.c.first_line)
        .where(lc.c.logid == sa.bindparam("logid"), lc.c.first_line <= first)
        .order_by(lc.c.first_line.desc())
        .limit(1)
        .scalar_subquery()
    )
    columns = (lc.c.first_line, lc.c.last_line, lc.c.content, lc.c.compressed)
    query = sa.select(*columns).where(lc.c.logid == sa.bindparam("logid"))
    return query.where(lc.c.first_line >= sa.func.coalesce(holding, 0)).order_by(lc.c.first_line)


_RANGE = Prepared(("logchunks", "range"), lambda: _chunks_from(sa.bindparam("first")).where(
    lc.c.first_line <= sa.bindparam("last")))
_PAGE = Prepared(("logchunks", "page"), lambda: _chunks_from(sa.bindparam("first")).limit(sa.bindparam("page")))
_PLAIN_PAGE = Prepared(("logchunks", "plain-page"), lambda: (
    sa.select(lc.c.first_line, lc.c.last_line, lc.c.content)
    .where(lc.c.logid == sa.bindparam("logid"), lc.c.compressed == PLAIN, lc.c.first_line >= sa.bindparam("first"))
    .order_by(lc.c.first_line).limit(sa.bindparam("page"))
))
_DELETE_PLAIN = Prepared(("logchunks", "delete-plain"), lambda: sa.delete(lc).where(
    lc.c.logid == sa.bindparam("logid"), lc.c.compressed == PLAIN,
    lc.c.first_line.in_(sa.bindparam("firsts", expanding=True)),
))
_INSERT_CHUNK = Prepared(("logchunks", "insert"), lambda: sa.insert(lc).values(
    logid=sa.bindparam("logid"), first_line=sa.bindparam("first_line"), last_line=sa.bindparam("last_line"),
    content=sa.bindparam("content"), compressed=sa.bindparam("compressed"),
))


async def read_lines(data: DataAPI, logid: int, first: int, last: int) -> str:
    """Lines *first*..*last* of a log joined, reading only the chunks that hold them."""
    if last < first:
        return ""
    rows = await data.storage.fetch_all(_RANGE, {"logid": logid, "first": first, "last": last})
    text = b"".join(_lines_from(_chunk_bytes(row), row["first_line"], first, last) for row in rows)
    return text.decode("utf-8", "replace")


async def iter_chunks(data: DataAPI, logid: int, page: int = RAW_PAGE) -> AsyncIterator[bytes]:
    """The UTF-8 text of a log chunk by chunk, *page* chunks per query, from line 0 to the end."""
    next_line = 0
    while True:
        rows = await data.storage.fetch_all(_PAGE, {"logid": logid, "first": next_line, "page": page})
        for row in rows:
            if row["last_line"] < next_line:
                continue  # chunks were merged by compress_log between two pages
            yield _lines_from(_chunk_bytes(row), row["first_line"], next_line)
            next_line = row["last_line"] + 1
        if len(rows) < page:
            return


def _log_paths() -> list[tuple[str, dict[str, Any]]]:
    """Every path naming one log, with the ``arg_columns`` that find it."""
    slug = {"log_slug": t.c.slug}
    paths: list[tuple[str, dict[str, Any]]] = [
        ("/logs/n:logid", {}),
        ("/steps/n:stepid/logs/i:log_slug", slug),
    ]
    return paths + [(f"{prefix}/i:log_slug", {**columns, **slug}) for prefix, columns in _step_log_paths()]


def _step_log_paths() -> list[tuple[str, dict[str, Any]]]:
    """``.../steps/<step>/logs`` under a build path, with ``arg_columns`` finding the step."""
    steps = schema.steps
    found = []
    for prefix, builder in build_paths():
        for arg, column in (("n:step_number", steps.c.number), ("i:step_name", steps.c.name)):
            name = arg.split(":")[1]

            def condition(builder: str | None = builder, column: Any = column, name: str = name) -> Any:
                step = sa.select(steps.c.id).where(
                    steps.c.buildid == build_id_of(builder), column == sa.bindparam(f"arg_{name}")
                )
                return t.c.stepid == step.scalar_subquery()

            columns = {**build_arg_columns(builder, condition), name: no_condition}
            found.append((f"{prefix}/steps/{arg}/logs", columns))
    return found


# prepared once: building statements with SQLAlchemy costs more than running them
_COUNT_LINES = Prepared(("logs", "count-lines"), lambda: sa.update(t).where(
    t.c.id == sa.bindparam("logid"), t.c.complete == sa.false()).values(
    num_lines=t.c.num_lines + sa.bindparam("count", type_=sa.Integer)).returning(t.c.num_lines))
_APPEND_CHUNK = Prepared(("logs", "append-chunk"), lambda: sa.insert(lc).values(
    {name: sa.bindparam(name) for name in ("logid", "first_line", "last_line", "content")}))
_FINISH = Prepared(("logs", "finish"), lambda: sa.update(t).where(
    t.c.id == sa.bindparam("logid"), t.c.complete == sa.false()).values(complete=True))


class Logs(ResourceType):
    """``/steps/N/logs``: the logs of steps, by slug; their lines are at ``.../contents`` and ``.../raw``."""

    name = "log"
    plural = "logs"
    id_field = "logid"
    event_paths = (
        "logs/:logid",
        "steps/:stepid/logs/:slug",
    )

    def declare(self) -> Declaration:
        """Fields and endpoints of logs."""
        fields = {
            "logid": Field(Integer(), t.c.id, "the log's id"),
            "name": Field(String(), t.c.name, "the log's name"),
            "slug": Field(String(), t.c.slug, "the name as an identifier, unique within the step"),
            "stepid": Field(Integer(), t.c.stepid, "the step it belongs to"),
            "complete": Field(Boolean(), t.c.complete, "whether it is finished (no more lines)"),
            "num_lines": Field(Integer(), t.c.num_lines, "how many lines it has"),
            "type": Field(String(), t.c.type, "s (stdio), t (text) or h (html)"),
        }
        endpoints = [Endpoint("/steps/n:stepid/logs", Kind.COLLECTION)]
        endpoints += [Endpoint(pattern, Kind.COLLECTION, arg_columns=cols) for pattern, cols in _step_log_paths()]
        endpoints += [Endpoint(pattern, arg_columns=cols) for pattern, cols in _log_paths()]
        return t, fields, endpoints, {}

    def attach(self, data: DataAPI) -> None:
        """Remember the DataAPI; start the cache of the logs this master writes."""
        super().attach(data)
        self.live = LiveEntities(self, ("logid", "name", "slug", "stepid", "complete", "num_lines", "type"))

    async def _publish(self, logid: int, event: str, entity: dict[str, Any] | None = None) -> None:
        """Publish *event* of the log: *entity* when known here, else the log read back."""
        if entity is None:
            entity = await self.get_entity(logid)
        if entity is None:
            raise NotFound(f"no log {logid}")
        await self.produce_event(entity, event)

    @update_method
    async def add_log(self, stepid: int, name: str, type: str) -> int:
        """Add an empty log *name* of *type* ('s', 't' or 'h') to a step; return its id.

        Its slug is the name made an identifier, with ``_2``, ``_3``... appended when the
        step has that slug already.
        """
        if type not in LOG_TYPES:
            raise ValueError(f"log type must be one of {', '.join(LOG_TYPES)}, not {type!r}")
        slug = slugify(name)

        async def work(txn: ITransaction) -> tuple[int, str]:
            steps = schema.steps
            if not await txn.fetch_all(sa.select(steps.c.id).where(steps.c.id == stepid)):
                raise NotFound(f"no step {stepid}")
            rows = await txn.fetch_all(sa.select(t.c.slug).where(t.c.stepid == stepid))
            unique = _unique_slug(slug, {row["slug"] for row in rows})
            inserted = await txn.fetch_all(
                sa.insert(t).values(name=name, slug=unique, stepid=stepid, type=type).returning(t.c.id)
            )
            return inserted[0]["id"], unique

        for attempt in range(5):
            try:
                logid, unique = await self.data.storage.transaction(work)
                break
            except IntegrityError:
                # another log of the same slug was added to the step at the same moment
                if attempt == 4:
                    raise
        entity = self.live.put(logid, {"logid": logid, "name": name, "slug": unique, "stepid": stepid,
                                       "complete": False, "num_lines": 0, "type": type})
        await self._publish(logid, "new", entity)
        return logid

    @update_method
    async def append_log(self, logid: int, content: str) -> tuple[int, int]:
        """Append whole lines (each ending in a newline) to an unfinished log; return their line range.

        The chunks and the new line count are written in one transaction, so readers never
        see lines that ``num_lines`` does not count.
        """
        if not content.endswith("\n"):
            raise ValueError("log content must be whole lines, ending in a newline")
        chunks = list(split_chunks(content.encode("utf-8", "replace")))
        count = sum(lines for _, lines in chunks)

        async def work(txn: ITransaction) -> tuple[int, int]:
            # the UPDATE takes the log's row lock, so appends to one log queue up behind it
            rows = await txn.fetch_all(_COUNT_LINES, {"logid": logid, "count": count})
            if not rows:
                if await txn.fetch_all(sa.select(t.c.id).where(t.c.id == logid)):
                    raise Conflict(f"log {logid} is finished: no more lines can be appended")
                raise NotFound(f"no log {logid}")
            first = line = rows[0]["num_lines"] - count
            for chunk, lines in chunks:
                await txn.execute(
                    _APPEND_CHUNK, {"logid": logid, "first_line": line, "last_line": line + lines - 1, "content": chunk}
                )
                line += lines
            return first, line - 1

        first, last = await self.data.storage.transaction(work)
        # appends to one log are serialised by its row lock, but their events may be published in
        # another order: the line count is what this append made it, as a read-back would not say
        entity = self.live.update(logid, num_lines=last + 1)
        if entity is None:
            entity = await self.get_entity(logid)
        if entity is None:
            raise NotFound(f"no log {logid}")
        # subscribers to a log get the lines themselves, not only a new line count
        await self.produce_event({**entity, "appended": {"firstline": first, "lastline": last, "content": content}},
                                 "append")
        return first, last

    def journal_entity(self, entity: dict[str, Any]) -> dict[str, Any]:
        """What the event journal keeps of a log event: the lines of an append are in the log already."""
        appended = entity.get("appended")
        if appended is None:
            return entity
        return {**entity, "appended": {"firstline": appended["firstline"], "lastline": appended["lastline"]}}

    async def expand_journaled(self, entity: dict[str, Any]) -> dict[str, Any]:
        """A journaled log event made whole again: an append gets its lines read back."""
        appended = entity.get("appended")
        if appended is None or "content" in appended:
            return entity
        content = await read_lines(self.data, entity["logid"], appended["firstline"], appended["lastline"])
        return {**entity, "appended": {**appended, "content": content}}

    @update_method
    async def finish_log(self, logid: int) -> None:
        """Mark a log finished: it gets no more lines (finishing it again does nothing)."""
        changed = await self.data.storage.execute(_FINISH, {"logid": logid})
        if changed:
            await self._publish(logid, "finished", self.live.finish(logid, complete=True))
            return
        self.live.forget(logid)
        if await self.get_entity(logid) is None:
            raise NotFound(f"no log {logid}")

    @update_method
    async def compress_log(self, logid: int) -> int:
        """Merge a log's plain chunks into chunks as big as allowed, zlib-compressed; return how many rows it saved.

        Works through the log a page of chunks at a time: groups of adjacent chunks are
        compressed off the reactor thread, then a page's groups are replaced in one short
        transaction, so a big log never sits in memory nor holds the database long.
        Readers see each page's chunks either all before or all after.
        """
        saved = 0
        group: list[dict[str, Any]] = []
        ready: list[tuple[list[int], int, bytes, int]] = []  # (first lines, last line, content, compressed)

        async def pack() -> None:
            rows = group[:]
            group.clear()
            if not rows:
                return
            plain = b"".join(bytes(row["content"]) for row in rows)
            packed = await threads.deferToThread(zlib.compress, plain, 6)
            if len(rows) == 1 and len(packed) >= len(plain):
                return  # nothing to gain
            content, compressed = (packed, ZLIB) if len(packed) < len(plain) else (plain, PLAIN)
            ready.append(([row["first_line"] for row in rows], rows[-1]["last_line"], content, compressed))

        async def write() -> None:
            nonlocal saved
            if not ready:
                return
            batch = ready[:]
            ready.clear()

            async def work(txn: ITransaction) -> None:
                for firsts, last, content, compressed in batch:
                    params = {"logid": logid, "firsts": firsts}
                    if await txn.execute(_DELETE_PLAIN, params) != len(firsts):
                        raise _Raced()
                    await txn.execute(_INSERT_CHUNK, {
                        "logid": logid, "first_line": firsts[0], "last_line": last, "content": content,
                        "compressed": compressed,
                    })

            try:
                await self.data.storage.transaction(work)
                saved += sum(len(firsts) - 1 for firsts, *_ in batch)
            except _Raced:
                pass  # another compress_log got there first: its rows stand

        next_line = 0
        while True:
            params = {"logid": logid, "first": next_line, "page": RAW_PAGE}
            rows = await self.data.storage.fetch_all(_PLAIN_PAGE, params)
            for row in rows:
                if group and (
                    group[-1]["last_line"] + 1 != row["first_line"]
                    or sum(len(r["content"]) for r in group) + len(row["content"]) > MAX_CHUNK_BYTES
                    or row["last_line"] - group[0]["first_line"] + 1 > MAX_CHUNK_LINES
                ):
                    await pack()
                group.append(row)
            # the group still open may grow on the next page; it is written with that page
            await write()
            if len(rows) < RAW_PAGE:
                break
            next_line = rows[-1]["last_line"] + 1
        await pack()
        await write()
        return saved

    @update_method
    async def delete_log_contents_before(self, when: int, batch: int = 200) -> int:
        """Remove the content of logs of builds that completed before *when*; return how many logs.

        The log rows stay (with their line counts), typed ``d``, so that steps still list them;
        their contents read as empty.  Batches of short transactions, as for builds.
        """
        logs, steps, builds, chunks = schema.logs, schema.steps, schema.builds, schema.logchunks
        old = (
            sa.select(logs.c.id)
            .join(steps, steps.c.id == logs.c.stepid)
            .join(builds, builds.c.id == steps.c.buildid)
            .where(builds.c.complete_at < when, logs.c.type != DELETED)
            .order_by(logs.c.id)
            .limit(batch)
        )
        emptied = 0
        while True:

            async def work(txn: ITransaction) -> int:
                ids = [row["id"] for row in await txn.fetch_all(old)]
                if ids:
                    await txn.execute(sa.delete(chunks).where(chunks.c.logid.in_(ids)))
                    await txn.execute(sa.update(logs).where(logs.c.id.in_(ids)).values(type=DELETED))
                return len(ids)

            count = await self.data.storage.transaction(work)
            emptied += count
            if count < batch:
                return emptied


class _Raced(Exception):
    """A group of chunks changed under compress_log."""


def _line_option(spec: ResultSpec, name: str) -> int | None:
    values = spec.options.get(name)
    return None if values is None else one_int(name, values, 0, None)


class _LogLinesEndpoint(Endpoint):
    """A getter of a log's lines at ``<log path>/<suffix>``; the log is found as the logs endpoint finds it."""

    def __init__(self, log_pattern: str, suffix: str, kind: Kind, options: tuple[str, ...] = (), doc: str = "") -> None:
        super().__init__(f"{log_pattern}/{suffix}", kind, options=options, doc=doc)
        self.log_pattern = log_pattern

    async def find_log(self, data: DataAPI, args: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any] | None:
        """The log this path names, with *fields*, or None."""
        logs = data.rtypes["logs"]
        log: dict[str, Any] | None = await logs.endpoint_at(self.log_pattern).get(data, ResultSpec(fields=fields), args)
        return log


class ContentsEndpoint(_LogLinesEndpoint):
    """``.../contents``: one logchunk holding lines ``offset`` to ``offset + limit - 1`` (all by default).

    ``offset`` and ``limit`` count lines here, not entities (as in Buildbot), so they are
    endpoint options rather than paging; a range past the end gives empty content.
    """

    def __init__(self, log_pattern: str) -> None:
        super().__init__(log_pattern, "contents", Kind.SINGLE, options=("offset", "limit"),
                         doc="lines offset..offset+limit-1 of a log as one logchunk")

    async def get(self, data: DataAPI, spec: ResultSpec, args: dict[str, Any]) -> dict[str, Any] | None:
        """The logchunk of the asked line range, or None when there is no such log."""
        first = _line_option(spec, "offset") or 0
        limit = _line_option(spec, "limit")
        log = await self.find_log(data, args, ("logid", "num_lines"))
        if log is None:
            return None
        # no further than the log's end, which also keeps offset + limit within what SQL can bind
        last = log["num_lines"] - 1 if limit is None else min(first + limit, log["num_lines"]) - 1
        content = await read_lines(data, log["logid"], first, last)
        chunk = {"logid": log["logid"], "firstline": first, "content": content}
        return {name: chunk[name] for name in spec.fields} if spec.fields else chunk


_ORIGIN = Prepared(("logs", "origin"), lambda: sa.select(
    schema.builders.c.name.label("builder"),
    schema.builds.c.number.label("build_number"),
    schema.steps.c.name.label("step"),
    schema.workers.c.name.label("worker"),
).select_from(
    schema.steps.join(schema.builds, schema.builds.c.id == schema.steps.c.buildid)
    .join(schema.builders, schema.builders.c.id == schema.builds.c.builderid)
    .outerjoin(schema.workers, schema.workers.c.id == schema.builds.c.workerid)
).where(schema.steps.c.id == sa.bindparam("stepid")))


class RawEndpoint(_LogLinesEndpoint):
    """``.../raw`` (a download) and ``.../raw_inline`` (shown in the browser): the whole log as text.

    As in Buildbot, stdio logs lose the stream character of each line and start with
    ``Builder:``, ``Build number:`` and ``Worker name:`` lines; html logs are ``text/html``.
    """

    def __init__(self, log_pattern: str, inline: bool) -> None:
        suffix = "raw_inline" if inline else "raw"
        super().__init__(log_pattern, suffix, Kind.RAW, doc=f"the whole log as text ({suffix})")
        self.inline = inline

    async def get(self, data: DataAPI, spec: ResultSpec, args: dict[str, Any]) -> RawContent:
        """A RawContent streaming the log; NotFound when there is no such log."""
        log = await self.find_log(data, args, ("logid", "slug", "stepid", "type"))
        if log is None:
            raise NotFound("no such log")
        rows = await data.storage.fetch_all(_ORIGIN, {"stepid": log["stepid"]})
        origin = rows[0] if rows else {"builder": None, "build_number": None, "step": None, "worker": None}
        stdio = log["type"] == "s"
        header = ""
        if stdio:
            for label, key in (("Builder", "builder"), ("Build number", "build_number"), ("Worker name", "worker")):
                if origin[key] is not None:
                    header += f"{label}: {origin[key]}\n"
        filename = None
        if not self.inline:
            parts = []
            if origin["builder"] is not None:
                parts += [origin["builder"], "build", str(origin["build_number"]), "step", origin["step"]]
            filename = "_".join([*parts, "log", log["slug"]])
        content_type = "text/html; charset=utf-8" if log["type"] == "h" else "text/plain; charset=utf-8"
        return RawContent(content_type, _raw_body(data, log["logid"], header, stdio), filename)


async def _raw_body(data: DataAPI, logid: int, header: str, stdio: bool) -> AsyncIterator[bytes]:
    if header:
        yield header.encode()
    async for text in iter_chunks(data, logid):
        yield _STREAM_CHAR.sub(b"", text) if stdio else text


class LogChunks(ResourceType):
    """``/logs/N/contents``: lines of a log by range; ``/logs/N/raw`` and ``raw_inline``: the whole text."""

    name = "logchunk"
    plural = "logchunks"
    id_field = "logid"
    event_paths = ()  # no events: a log's "append" event says there are new lines to fetch

    def declare(self) -> Declaration:
        """Fields and endpoints of log contents."""
        fields = {
            "logid": Field(Integer(), lc.c.logid, "the log"),
            "firstline": Field(Integer(), lc.c.first_line, "number of the first line, from 0"),
            "content": Field(String(), None, "the lines, each ending in a newline"),
        }
        endpoints: list[Endpoint] = []
        for pattern, _ in _log_paths():
            endpoints += [ContentsEndpoint(pattern), RawEndpoint(pattern, False), RawEndpoint(pattern, True)]
        return lc, fields, endpoints, {}
