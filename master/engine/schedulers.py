"""Schedulers: what turns a form, a change, a clock or a Trigger step into a buildset.

Each scheduler has a row in ``schedulers`` (``find_scheduler_id``) whose ``enabled`` flag it
obeys: a disabled scheduler submits nothing.  Schedulers acting on their own (on changes or
timers: SingleBranchScheduler, Periodic, Nightly) run on one master at a time, the one
whose ``set_scheduler_master`` claim succeeded; the others retry the claim at each poll.
Schedulers acting when asked (ForceScheduler, Triggerable) answer on every master that has
them configured.

* ``ForceScheduler(name, builderNames, properties=[...], reason=..., username=..., priority=...,
  codebases=True, label=, buttonName=)``: a form; the ``force`` action validates each field
  (errors as InvalidParams, one message per field) and returns ``[bsid, {builderid: brid}]``.
* ``SingleBranchScheduler(name, branch, builderNames, treeStableTimer=None, fileIsImportant=None,
  repository=None, project=None, codebase=None, change_filter=None)``: builds changes of *branch*
  (or, with *change_filter* and no *branch*, the changes the filter accepts, whatever their
  branch); with a tree-stable timer, one buildset for the latest change once no important change
  came for that many seconds (changes seen are kept in memory only: a restart forgets them).
* ``ChangeFilter(project=, repository=, branch=, category=, codebase=, <name>_re=, filter_fn=)``:
  accepts a change when every criterion given matches: a value or a list of values (any of),
  a regular expression (``branch_re=r"^release/"``, searched), a function of the change.
  ``ChangeFilter(category="pull")`` selects the changes of pull and merge requests.
* ``Periodic(name, builderNames, periodicBuildTimer, branch=None)``: a buildset every
  *periodicBuildTimer* seconds, the first that long after the master starts.
* ``Nightly(name, builderNames, minute=0, hour="*", dayOfMonth="*", month="*", dayOfWeek="*",
  branch=None)``: cron-style, in local time; each field is ``"*"``, an int, or a list of ints
  (dayOfWeek 0 is Monday, as in Buildbot).
* ``Triggerable(name, builderNames)``: submits a buildset when a Trigger step asks.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from twisted.internet import defer
from twisted.logger import Logger

from master.data.errors import Conflict, InvalidParams
from master.engine.config import Configured

if TYPE_CHECKING:
    from master.data.connector import DataAPI
    from master.engine.engine import Engine

log = Logger()

_EMAIL = re.compile(r"<[^ <>@]+@[^ <>@]+>")


# -- schedulers --------------------------------------------------------------------------------


class BaseScheduler(Configured):
    """What every scheduler has: a name, the builders it submits to, properties and a priority."""

    runs_alone = True
    """Whether only the master that claimed it runs it (those acting on changes and timers)."""

    def __init__(
        self,
        name: str,
        builderNames: Sequence[str],  # noqa: N803 (Buildbot's names)
        properties: Mapping[str, Any] | None = None,
        priority: int = 0,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError("a scheduler needs a name")
        self.name = name
        self.builderNames = list(builderNames)
        self.properties = dict(properties or {})
        self.priority = priority
        self._engine: Engine | None = None
        self.schedulerid: int | None = None
        self.running = False
        # a builder's row is found by its name and never deleted: its id, once known, stays right
        self._builder_ids: dict[str, int] = {}

    @property
    def engine(self) -> Engine:
        """The engine this scheduler is attached to (RuntimeError before :meth:`attach`)."""
        if self._engine is None:
            raise RuntimeError(f"scheduler {self.name!r} is not attached to an engine")
        return self._engine

    @property
    def id(self) -> int:
        """The scheduler's id, found by :meth:`attach` (RuntimeError before)."""
        if self.schedulerid is None:
            raise RuntimeError(f"scheduler {self.name!r} is not attached: it has no id yet")
        return self.schedulerid

    @property
    def data(self) -> DataAPI:
        """The data API of the master running this scheduler."""
        return self.engine.data

    async def attach(self, engine: Engine) -> None:
        """Register with the engine (and the schedulers table) on start or reconfig."""
        self._engine = engine
        self.schedulerid = await engine.data.updates.find_scheduler_id(self.name)

    async def try_claim(self) -> bool:
        """Claim this scheduler for our master; start it when we got it.  Return whether it runs here."""
        if self.running:
            return True
        try:
            await self.data.updates.set_scheduler_master(self.id, self.engine.masterid)
        except Conflict:
            return False
        self.running = True
        await self.start()
        return True

    async def detach(self) -> None:
        """Stop (removed by a reconfig, or the master stops) and release the claim."""
        if self.running:
            self.running = False
            await self.stop()
            try:
                await self.data.updates.set_scheduler_master(self.id, None)
            except Exception:
                log.failure("could not release scheduler {name}", name=self.name)

    async def start(self) -> None:
        """Start acting (subscriptions, timers): called once this master runs the scheduler."""

    async def stop(self) -> None:
        """Stop acting."""

    async def is_enabled(self) -> bool:
        """Whether the ``enabled`` flag of our row allows submitting."""
        entity = await self.data.get(("schedulers", str(self.schedulerid)), query={"field": ["enabled"]})
        return bool(entity and entity["enabled"])

    async def builder_ids(self, names: Iterable[str]) -> dict[str, int]:
        """``{name: builderid}`` of *names* (any master's builders); an unknown name raises ValueError."""
        names = list(dict.fromkeys(names))
        known = self._builder_ids
        unknown = [name for name in names if name not in known]
        if unknown:
            query = {"name": unknown, "field": ["builderid", "name"], "limit": [str(self.data.limits.maximum)]}
            known.update({b["name"]: b["builderid"] for b in (await self.data.get("builders", query=query)).items})
        found = {name: known[name] for name in names if name in known}
        missing = [name for name in names if name not in found]
        if missing:
            raise ValueError(f"scheduler {self.name!r}: no such builder(s) {', '.join(missing)}")
        return found

    async def submit(
        self,
        sourcestamps: Sequence[int | Mapping[str, Any]],
        reason: str,
        properties: Mapping[str, tuple[Any, str]] | None = None,
        builderNames: Sequence[str] | None = None,  # noqa: N803
        priority: int | None = None,
        **kwargs: Any,
    ) -> tuple[int, dict[int, int]]:
        """Add a buildset for *builderNames* (all of ours by default); return ``(bsid, {builderid: brid})``."""
        ids = await self.builder_ids(builderNames if builderNames is not None else self.builderNames)
        props = {name: (value, "Scheduler") for name, value in self.properties.items()}
        props["scheduler"] = (self.name, "Scheduler")
        props.update(properties or {})
        bsid, brids = await self.data.updates.add_buildset(
            self.name, list(sourcestamps), reason, props, list(ids.values()),
            priority=self.priority if priority is None else priority, **kwargs,
        )
        return bsid, brids


class Triggerable(BaseScheduler):
    """Submits a buildset when a Trigger step asks (see ``master.engine.steps.Trigger``)."""

    runs_alone = False

    async def trigger(
        self, properties: Mapping[str, Any], sourcestamps: Sequence[Mapping[str, Any]],
        parent_buildid: int | None = None, waited_for: bool = False,
    ) -> tuple[int, dict[int, int]]:
        """Submit a buildset of the parent's source stamps with *properties*; return ``(bsid, brids)``."""
        if not await self.is_enabled():
            raise Conflict(f"scheduler {self.name!r} is disabled")
        stamps = [ss["ssid"] if ss.get("ssid") is not None else ss for ss in sourcestamps]
        props = {name: (value, "Trigger") for name, value in properties.items()}
        return await self.submit(
            stamps, f"The Triggerable scheduler named '{self.name}' triggered this build", props,
            parent_buildid=parent_buildid, parent_relationship="Triggered from", waited_for=waited_for,
        )


def _change_stamp(change: Mapping[str, Any]) -> int | dict[str, Any]:
    stamp = change.get("sourcestamp") or {}
    if stamp.get("ssid") is not None:
        return stamp["ssid"]
    return {key: change.get(key) for key in ("branch", "revision", "repository", "codebase", "project")}


_ANY = object()
CHANGE_FILTER_KEYS = ("project", "repository", "branch", "category", "codebase")


class ChangeFilter(Configured):
    """Which changes a scheduler takes (see the module's documentation)."""

    def __init__(
        self,
        filter_fn: Callable[[Mapping[str, Any]], bool] | None = None,
        project: Any = _ANY, repository: Any = _ANY, branch: Any = _ANY, category: Any = _ANY,
        codebase: Any = _ANY,
        project_re: str | None = None, repository_re: str | None = None, branch_re: str | None = None,
        category_re: str | None = None, codebase_re: str | None = None,
    ) -> None:
        given = {"project": project, "repository": repository, "branch": branch, "category": category,
                 "codebase": codebase}
        # a list (or tuple, set) means any of; None is a value too (a change without a branch)
        self.values = {key: (set(value) if isinstance(value, list | tuple | set | frozenset) else {value})
                       for key, value in given.items() if value is not _ANY}
        patterns = {"project": project_re, "repository": repository_re, "branch": branch_re,
                    "category": category_re, "codebase": codebase_re}
        self.patterns = {}
        for key, pattern in patterns.items():
            if pattern is not None:
                try:
                    self.patterns[key] = re.compile(pattern)
                except re.error as e:
                    raise ValueError(f"ChangeFilter: {key}_re {pattern!r} is not a regular expression: {e}") from None
        if filter_fn is not None and not callable(filter_fn):
            raise ValueError("ChangeFilter: filter_fn must be a function of the change")
        self.filter_fn = filter_fn

    def matches(self, change: Mapping[str, Any]) -> bool:
        """Whether *change* (a changes entity) passes every criterion."""
        for key, wanted in self.values.items():
            if change.get(key) not in wanted:
                return False
        for key, pattern in self.patterns.items():
            value = change.get(key)
            if value is None or not pattern.search(str(value)):
                return False
        return self.filter_fn is None or bool(self.filter_fn(change))


class SingleBranchScheduler(BaseScheduler):
    """Builds the changes of one branch, once the tree has been stable for *treeStableTimer* seconds."""

    def __init__(
        self,
        name: str,
        builderNames: Sequence[str],  # noqa: N803
        branch: str | None = None,
        treeStableTimer: float | None = None,  # noqa: N803
        fileIsImportant: Callable[[Mapping[str, Any]], bool] | None = None,  # noqa: N803
        repository: str | None = None,
        project: str | None = None,
        codebase: str | None = None,
        change_filter: ChangeFilter | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(name, builderNames, **kwargs)
        if change_filter is not None and not isinstance(change_filter, ChangeFilter):
            raise ValueError(f"SingleBranchScheduler {name!r}: change_filter must be a ChangeFilter(...)")
        if change_filter is not None and branch is not None:
            raise ValueError(f"SingleBranchScheduler {name!r}: give either branch or change_filter "
                             "(ChangeFilter(branch=...) for both)")
        self.change_filter = change_filter
        self.branch = branch
        self.treeStableTimer = treeStableTimer
        self.fileIsImportant = fileIsImportant
        self.filters = {"repository": repository, "project": project, "codebase": codebase}
        self._subscription: Any = None
        self._timer: Any = None
        self._latest: Mapping[str, Any] | None = None

    async def start(self) -> None:
        """Listen to new changes."""
        self._subscription = self.data.events.subscribe(("changes", "*", "new"), self._on_change)

    async def stop(self) -> None:
        """Stop listening; changes waiting for the tree to be stable are dropped."""
        if self._subscription is not None:
            self._subscription.cancel()
            self._subscription = None
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self._latest = None

    def matches(self, change: Mapping[str, Any]) -> bool:
        """Whether *change* is on our branch (or passes our change filter), and repository, project, codebase."""
        if self.change_filter is not None:
            if not self.change_filter.matches(change):
                return False
        elif change.get("branch") != self.branch:
            return False
        return all(wanted is None or change.get(key) == wanted for key, wanted in self.filters.items())

    async def _on_change(self, key: tuple[str, ...], change: Mapping[str, Any]) -> None:
        if not self.running or not self.matches(change):
            return
        if self.fileIsImportant is not None and not self.fileIsImportant(change):
            return
        if not self.treeStableTimer:
            await self._build(change)
            return
        self._latest = change
        if self._timer is not None and self._timer.active():
            self._timer.reset(self.treeStableTimer)
        else:
            self._timer = self.engine.clock.callLater(self.treeStableTimer, self._stable)

    def _stable(self) -> None:
        change, self._latest = self._latest, None
        if change is not None and self.running:
            defer.ensureDeferred(self._build(change)).addErrback(
                lambda f: log.failure("scheduler {name} failed", f, name=self.name)
            )

    async def _build(self, change: Mapping[str, Any]) -> None:
        if not await self.is_enabled():
            return
        props = {name: (value, "Change") for name, (value, _) in (change.get("properties") or {}).items()}
        await self.submit(
            [_change_stamp(change)], f"The SingleBranchScheduler scheduler named '{self.name}' triggered this build",
            props,
        )


class _Timed(BaseScheduler):
    """A scheduler submitting a buildset of *branch* at times it computes."""

    def __init__(self, name: str, builderNames: Sequence[str], branch: str | None = None,  # noqa: N803
                 **kwargs: Any) -> None:
        super().__init__(name, builderNames, **kwargs)
        self.branch = branch
        self._timer: Any = None

    def next_delay(self) -> float:
        """Seconds until the next buildset."""
        raise NotImplementedError

    async def start(self) -> None:
        """Arm the timer."""
        self._arm()

    async def stop(self) -> None:
        """Disarm the timer."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _arm(self) -> None:
        self._timer = self.engine.clock.callLater(self.next_delay(), self._fire)

    def _fire(self) -> None:
        if not self.running:
            return
        self._arm()
        defer.ensureDeferred(self.fire()).addErrback(lambda f: log.failure("scheduler {name} failed", f,
                                                                            name=self.name))

    async def fire(self) -> None:
        """Submit a buildset now (if enabled)."""
        if await self.is_enabled():
            reason = f"The {type(self).__name__} scheduler named '{self.name}' triggered this build"
            await self.submit([{"branch": self.branch}], reason)


class Periodic(_Timed):
    """A buildset every *periodicBuildTimer* seconds."""

    def __init__(self, name: str, builderNames: Sequence[str], periodicBuildTimer: float,  # noqa: N803
                 **kwargs: Any) -> None:
        super().__init__(name, builderNames, **kwargs)
        if not periodicBuildTimer or periodicBuildTimer <= 0:
            raise ValueError("Periodic: periodicBuildTimer must be a positive number of seconds")
        self.periodicBuildTimer = periodicBuildTimer

    def next_delay(self) -> float:
        """The period."""
        return float(self.periodicBuildTimer)


CronField = str | int | Sequence[int]


def _cron_set(value: CronField, low: int, high: int, label: str) -> set[int] | None:
    """The allowed values of a cron field, or None for any."""
    if value == "*" or value is None:
        return None
    values: list[object] = [value] if isinstance(value, int) else list(value)
    for item in values:
        if not isinstance(item, int) or not low <= item <= high:
            raise ValueError(f"Nightly: {label} must be '*', or integers from {low} to {high}; got {value!r}")
    return {item for item in values if isinstance(item, int)}  # all are, as checked above


class Nightly(_Timed):
    """A buildset at the times matching cron-style fields (local time)."""

    def __init__(
        self,
        name: str,
        builderNames: Sequence[str],  # noqa: N803
        minute: CronField = 0,
        hour: CronField = "*",
        dayOfMonth: CronField = "*",  # noqa: N803
        month: CronField = "*",
        dayOfWeek: CronField = "*",  # noqa: N803
        **kwargs: Any,
    ) -> None:
        super().__init__(name, builderNames, **kwargs)
        self.minutes = _cron_set(minute, 0, 59, "minute")
        self.hours = _cron_set(hour, 0, 23, "hour")
        self.days = _cron_set(dayOfMonth, 1, 31, "dayOfMonth")
        self.months = _cron_set(month, 1, 12, "month")
        self.weekdays = _cron_set(dayOfWeek, 0, 6, "dayOfWeek")

    def next_time(self, after: datetime.datetime) -> datetime.datetime:
        """The first matching minute strictly after *after* (naive local time)."""
        t = after.replace(second=0, microsecond=0) + datetime.timedelta(minutes=1)
        limit = t + datetime.timedelta(days=5 * 366)
        while t < limit:
            if self.months is not None and t.month not in self.months:
                t = (t.replace(day=1, hour=0, minute=0) + datetime.timedelta(days=32)).replace(day=1)
                continue
            day_ok = self.days is None or t.day in self.days
            weekday_ok = self.weekdays is None or t.weekday() in self.weekdays
            if not (day_ok and weekday_ok):
                t = t.replace(hour=0, minute=0) + datetime.timedelta(days=1)
                continue
            if self.hours is not None and t.hour not in self.hours:
                t = t.replace(minute=0) + datetime.timedelta(hours=1)
                continue
            if self.minutes is not None and t.minute not in self.minutes:
                t += datetime.timedelta(minutes=1)
                continue
            return t
        raise ValueError(f"Nightly {self.name!r}: its fields match no date")

    def next_delay(self) -> float:
        """Seconds until the next matching minute (local time, by the engine's clock)."""
        now = datetime.datetime.fromtimestamp(self.engine.clock.seconds())
        return max((self.next_time(now) - now).total_seconds(), 0.0)


# -- force schedulers and their parameters ------------------------------------------------------


class BaseParameter(Configured):
    """A field of a force form: its JSON description for the UI and the parsing of its value."""

    type = "text"

    def __init__(
        self,
        name: str,
        label: str | None = None,
        default: Any = "",
        required: bool = False,
        hide: bool = False,
        tablabel: str | None = None,
        tooltip: str = "",
        maxsize: int | None = None,
        regex: str | None = None,
        autopopulate: Any = None,
        size: int = 10,
    ) -> None:
        self.name = name
        self.label = name if label is None else label
        self.default = default
        self.required = required
        self.hide = hide
        self.tablabel = self.label if tablabel is None else tablabel
        self.tooltip = tooltip
        self.maxsize = maxsize
        self.regex = regex
        self.autopopulate = autopopulate
        self.size = size

    def describe(self) -> dict[str, Any]:
        """The field as Buildbot's ``all_fields`` shows it."""
        return {
            "autopopulate": self.autopopulate, "default": self.default, "fullName": self.name, "hide": self.hide,
            "label": self.label, "maxsize": self.maxsize, "multiple": False, "name": self.name,
            "regex": self.regex, "required": self.required, "size": self.size, "tablabel": self.tablabel,
            "tooltip": self.tooltip, "type": self.type,
        }

    def fields(self) -> list[BaseParameter]:
        """The leaf parameters (itself, or a nested group's)."""
        return [self]

    def parse(self, raw: Any) -> Any:
        """The value of the field from what the form sent; raise ValueError with the message for the user."""
        if raw is None or raw == "":
            if self.required:
                raise ValueError("required")
            return self.default
        value = self.convert(raw)
        if self.maxsize is not None and len(str(value)) > self.maxsize:
            raise ValueError(f"longer than {self.maxsize} characters")
        if self.regex is not None and not re.fullmatch(self.regex, str(value)):
            raise ValueError(f"does not match {self.regex}")
        return value

    def convert(self, raw: Any) -> Any:
        """The typed value of a non-empty *raw*."""
        if not isinstance(raw, str | int | float):
            raise ValueError(f"expected a string, got {type(raw).__name__}")
        return str(raw)


class StringParameter(BaseParameter):
    """A line of text."""

    type = "text"


class UserNameParameter(StringParameter):
    """Who forces the build: ``Name <email>`` when *need_email*."""

    type = "username"

    def __init__(self, name: str = "username", label: str = "Your name:", need_email: bool = True,
                 size: int = 30, **kwargs: Any) -> None:
        super().__init__(name, label=label, size=size, **kwargs)
        self.need_email = need_email

    def describe(self) -> dict[str, Any]:
        """With ``need_email``."""
        return {**super().describe(), "need_email": self.need_email}

    def convert(self, raw: Any) -> Any:
        """A name, with an email address in <> when need_email."""
        value = super().convert(raw)
        if self.need_email and not _EMAIL.search(value):
            raise ValueError(f"{value}: please fill in email address")
        return value


class IntParameter(BaseParameter):
    """An integer."""

    type = "int"

    def __init__(self, name: str, default: int = 0, **kwargs: Any) -> None:
        super().__init__(name, default=default, **kwargs)

    def convert(self, raw: Any) -> Any:
        """int(raw); booleans and fractions are refused."""
        if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
            raise ValueError(f"expected an integer, got {raw!r}")
        if isinstance(raw, int | float):
            return int(raw)
        return int(str(raw).strip())  # ValueError says "invalid literal for int() ...", as Buildbot does


class BooleanParameter(BaseParameter):
    """A checkbox."""

    type = "bool"

    def __init__(self, name: str, default: bool = False, **kwargs: Any) -> None:
        super().__init__(name, default=default, **kwargs)

    def parse(self, raw: Any) -> Any:
        """true/false, on/off, yes/no, 1/0 (an empty or missing value is the default)."""
        if raw is None or raw == "":
            return self.default
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("true", "on", "yes", "1"):
            return True
        if text in ("false", "off", "no", "0"):
            return False
        raise ValueError(f"expected a boolean, got {raw!r}")


class ChoiceStringParameter(BaseParameter):
    """One of *choices* (any string when not *strict*); several when *multiple*."""

    type = "list"

    def __init__(self, name: str, choices: Sequence[str], strict: bool = True, multiple: bool = False,
                 default: Any = None, **kwargs: Any) -> None:
        choices = list(choices)
        if default is None:
            default = [] if multiple else (choices[0] if choices else "")
        super().__init__(name, default=default, **kwargs)
        self.choices = choices
        self.strict = strict
        self.multiple = multiple

    def describe(self) -> dict[str, Any]:
        """With ``choices`` and ``strict``."""
        return {**super().describe(), "choices": self.choices, "strict": self.strict, "multiple": self.multiple}

    def parse(self, raw: Any) -> Any:
        """A choice (a list of them when multiple)."""
        if self.multiple:
            values = raw if isinstance(raw, list) else ([] if raw in (None, "") else [raw])
            if not values:
                if self.required:
                    raise ValueError("required")
                return self.default
            return [self._check(value) for value in values]
        if isinstance(raw, list):
            raise ValueError("expected one choice, got a list")
        if raw is None or raw == "":
            if self.required:
                raise ValueError("required")
            return self.default
        return self._check(raw)

    def _check(self, value: Any) -> str:
        value = str(value)
        if self.strict and value not in self.choices:
            raise ValueError(f"{value!r} is not one of: {', '.join(self.choices)}")
        return value


class NestedParameter(BaseParameter):
    """A group of fields laid out together (``name`` is usually empty)."""

    type = "nested"

    def __init__(self, name: str, fields: Sequence[BaseParameter], label: str = "", columns: int | None = None,
                 layout: str = "vertical", **kwargs: Any) -> None:
        super().__init__(name, label=label, **kwargs)
        self.children = list(fields)
        self.columns = columns if columns is not None else (2 if len(self.children) in (2, 4) else 1)
        self.layout = layout

    def describe(self) -> dict[str, Any]:
        """With its fields, columns and layout (and no size), as Buildbot shows groups."""
        out = super().describe()
        out.pop("size")
        out.update({"fullName": None, "fields": [f.describe() for f in self.children], "columns": self.columns,
                    "layout": self.layout})
        return out

    def fields(self) -> list[BaseParameter]:
        """The leaves of the group."""
        return [leaf for child in self.children for leaf in child.fields()]


CODEBASE_FIELDS = ("branch", "project", "repository", "revision")


class ForceScheduler(BaseScheduler):
    """A form that starts builds by hand (see the module's documentation)."""

    runs_alone = False

    def __init__(
        self,
        name: str,
        builderNames: Sequence[str],  # noqa: N803
        properties: Sequence[BaseParameter] = (),
        reason: BaseParameter | None = None,
        username: BaseParameter | None = None,
        priority: BaseParameter | None = None,
        codebases: bool = True,
        label: str | None = None,
        buttonName: str | None = None,  # noqa: N803
        reasonString: str = "A build was forced by '%(owner)s': %(reason)s",  # noqa: N803
    ) -> None:
        super().__init__(name, builderNames)
        if not self.builderNames:
            raise ValueError(f"ForceScheduler {name!r}: builderNames is empty")
        self.reason = reason or StringParameter("reason", label="reason", default="force build", size=20)
        self.username = username or UserNameParameter()
        self.priority_field = priority or IntParameter("priority", label="priority", default=0)
        self.codebase_fields = (
            [StringParameter(f, label=f"{f.capitalize()}:") for f in CODEBASE_FIELDS] if codebases else []
        )
        self.forced = list(properties)
        self.label = label or name
        self.button_name = buttonName or name
        self.reason_string = reasonString
        self.all_fields: list[BaseParameter] = [
            NestedParameter("", [self.username, self.reason, self.priority_field], columns=1)
        ]
        if self.codebase_fields:
            self.all_fields.append(NestedParameter("", self.codebase_fields, columns=2))
        self.all_fields.extend(self.forced)
        names = [leaf.name for field in self.all_fields for leaf in field.fields()]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates or "builderid" in names:
            taken = ", ".join(duplicates or ["builderid"])
            raise ValueError(f"ForceScheduler {name!r}: field name(s) used twice or reserved: {taken}")

    async def attach(self, engine: Engine) -> None:
        """Register, and publish the form through ``update_forcescheduler``."""
        await super().attach(engine)
        await engine.data.updates.update_forcescheduler(
            self.name, self.label, self.button_name, self.builderNames, [f.describe() for f in self.all_fields]
        )

    async def force(self, params: Mapping[str, Any], user: Any = None) -> list[Any]:
        """Validate the form's *params* and submit a buildset; return ``[bsid, {builderid: brid}]``."""
        errors: dict[str, str] = {}
        values: dict[str, Any] = {}
        for field in self.all_fields:
            for leaf in field.fields():
                try:
                    values[leaf.name] = leaf.parse(params.get(leaf.name))
                except ValueError as e:
                    errors[leaf.name] = str(e)
        known = {leaf.name for field in self.all_fields for leaf in field.fields()} | {"builderid"}
        for name in params:
            if name not in known:
                errors[name] = "unknown field"
        ids = await self.builder_ids(self.builderNames)
        builder_names = self.builderNames
        raw = params.get("builderid")
        if raw not in (None, ""):
            try:
                builderid = int(raw)
                if isinstance(raw, bool) or builderid not in ids.values():
                    raise ValueError
                builder_names = [name for name, i in ids.items() if i == builderid]
            except (TypeError, ValueError):
                errors["builderid"] = f"{raw!r} is not a builder of this scheduler"
        if errors:
            raise InvalidParams(errors)
        if not await self.is_enabled():
            raise Conflict(f"force scheduler {self.name!r} is disabled")
        owner = values[self.username.name] or _user_name(user) or "anonymous"
        reason_text = values[self.reason.name]
        reason = self.reason_string % {"owner": owner, "reason": reason_text}
        props = {"owner": (owner, "Force Build Form"), "reason": (reason_text, "Force Build Form")}
        for field in self.forced:
            for leaf in field.fields():
                props[leaf.name] = (values[leaf.name], "Force Build Form")
        stamps: list[dict[str, Any]] = []
        if self.codebase_fields:
            stamps.append({
                "codebase": "", "branch": values["branch"] or None, "revision": values["revision"] or None,
                "repository": values["repository"] or "", "project": values["project"] or "",
            })
        bsid, brids = await self.submit(stamps, reason, props, builder_names, priority=values[self.priority_field.name])
        return [bsid, {str(builderid): brid for builderid, brid in brids.items()}]


def _user_name(user: Any) -> str | None:
    if user is None:
        return None
    for attribute in ("username", "name"):
        value = getattr(user, attribute, None)
        if isinstance(value, str):
            return value
    return None if not isinstance(user, str) else user


__all__ = [
    "BaseParameter", "BaseScheduler", "BooleanParameter", "ChoiceStringParameter", "ForceScheduler", "IntParameter",
    "NestedParameter", "Nightly", "Periodic", "SingleBranchScheduler", "StringParameter", "Triggerable",
    "UserNameParameter",
]
