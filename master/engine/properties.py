"""Build properties and the renderables that read them.

A build's properties are ``name -> (value, source)``: the source says who set the value
("Force Build Form", "Scheduler", "Build", "SetPropertyFromCommand Step", ...).  Step
arguments may hold *renderables*, rendered against the build's properties when the step
starts:

* ``Property("name", default=None)``: the value of property *name*, or *default* when unset.
* ``Interpolate(format, **kwargs)``: *format* with ``%(...)s`` placeholders filled in:

  ``%(prop:name)s``
      property *name*; an empty string when unset.
  ``%(prop:name:-text)s``
      property *name*, or *text* when it is unset.
  ``%(prop:name:~text)s``
      property *name*, or *text* when it is unset or false ("", 0, None, False).
  ``%(prop:name:+text)s``
      *text* when property *name* is set, else an empty string.
  ``%(kw:key)s`` (and the same ``:-``, ``:~``, ``:+`` forms)
      keyword argument *key* given to ``Interpolate`` (itself rendered first).
  ``%(src:codebase:attr)s`` (and the same ``:-``, ``:~``, ``:+`` forms)
      attribute *attr* (``revision``, ``branch``, ``repository``, ``project``, ``codebase``) of
      the build's source stamp of *codebase*; ``%(src::revision)s`` is the default (empty)
      codebase's.  Unset when the build has no such source stamp or the attribute is null.

  ``%(secret:name)s``
      secret *name* (see :mod:`master.secrets`): in the command only, never stored.

  Any ``%`` conversion may follow the parentheses (``%(prop:jobs)d``); a literal ``%`` is
  written ``%%``, as in Python's ``%`` formatting, which this uses.

Lists, tuples and dicts are rendered element by element; other values stay as they are.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from master.engine.config import Configured


class Properties:
    """Named values with the source of each; ``props["x"]`` reads a value, ``props.set`` writes one."""

    def __init__(self, initial: Mapping[str, tuple[Any, str]] | None = None) -> None:
        self._values: dict[str, tuple[Any, str]] = dict(initial or {})
        # the build's source stamps (set by the build), read by %(src:codebase:attr)s
        self.sourcestamps: Sequence[Mapping[str, Any]] = []

    def set(self, name: str, value: Any, source: str) -> None:
        """Set property *name* to *value*, recording who set it."""
        self._values[name] = (value, source)

    def get(self, name: str, default: Any = None) -> Any:
        """The value of *name*, or *default* when unset."""
        found = self._values.get(name)
        return default if found is None else found[0]

    def source(self, name: str) -> str | None:
        """Who set *name*, or None when unset."""
        found = self._values.get(name)
        return None if found is None else found[1]

    def has(self, name: str) -> bool:
        """Whether *name* is set."""
        return name in self._values

    def as_dict(self) -> dict[str, tuple[Any, str]]:
        """A copy: ``{name: (value, source)}``."""
        return dict(self._values)

    def update(self, values: Mapping[str, Any], source: str) -> None:
        """Set every ``name: value`` of *values* with the same *source*."""
        for name, value in values.items():
            self.set(name, value, source)

    def render(self, value: Any) -> Any:
        """*value* with every renderable in it rendered against these properties."""
        return render(value, self)

    def __getitem__(self, name: str) -> Any:
        if name not in self._values:
            raise KeyError(name)
        return self._values[name][0]

    def __contains__(self, name: object) -> bool:
        return name in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Properties({self._values!r})"


class Renderable(Configured):
    """Something rendered against a build's properties when a step starts."""

    def render(self, props: Properties) -> Any:
        """The value for these properties."""
        raise NotImplementedError


def render(value: Any, props: Properties) -> Any:
    """Render *value* (renderables, and containers of them) against *props*."""
    if isinstance(value, Renderable):
        return value.render(props)
    if isinstance(value, list):
        return [render(item, props) for item in value]
    if isinstance(value, tuple):
        return tuple(render(item, props) for item in value)
    if isinstance(value, dict):
        return {render(key, props): render(item, props) for key, item in value.items()}
    return value


class Property(Renderable):
    """The value of property *name*, or *default* (itself rendered) when unset."""

    def __init__(self, name: str, default: Any = None) -> None:
        self.name = name
        self.default = default

    def render(self, props: Properties) -> Any:
        """The property's value or the default."""
        if props.has(self.name):
            return props.get(self.name)
        return render(self.default, props)

    def __repr__(self) -> str:
        return f"Property({self.name!r}, default={self.default!r})"


SOURCESTAMP_ATTRIBUTES = ("revision", "branch", "repository", "project", "codebase")
"""What ``%(src:codebase:attr)s`` may read of a source stamp."""


class _Lookup(Mapping[str, Any]):
    """The mapping ``%`` formatting reads ``%(prop:x)s`` keys from."""

    def __init__(self, props: Properties, kwargs: Mapping[str, Any]) -> None:
        self.props = props
        self.kwargs = kwargs

    def __getitem__(self, key: str) -> Any:
        kind, sep, rest = key.partition(":")
        if kind == "secret" and sep:
            # read when the build started (master.secrets); never a property
            secrets = getattr(self.props, "secrets", None) or {}
            if rest not in secrets:
                raise KeyError(f"Interpolate: secret {rest!r} was not read when the build started")
            return secrets[rest]
        if not sep or kind not in ("prop", "kw", "src"):
            raise KeyError(f"Interpolate: unknown placeholder %({key})s: use prop:NAME, kw:NAME or src:CODEBASE:ATTR")
        codebase = ""
        if kind == "src":
            codebase, sep, rest = rest.partition(":")
            if not sep:
                raise KeyError(f"Interpolate: %({key})s needs src:CODEBASE:ATTR "
                               "(src::revision for the default codebase)")
        name, op, alt = rest, "", ""
        for candidate in (":-", ":~", ":+"):
            at = rest.find(candidate)
            if at != -1:
                name, op, alt = rest[:at], candidate, rest[at + 2 :]
                break
        if kind == "prop":
            present, value = self.props.has(name), self.props.get(name)
        elif kind == "src":
            if name not in SOURCESTAMP_ATTRIBUTES:
                raise KeyError(f"Interpolate: %({key})s: no source stamp attribute {name!r} "
                               f"(known: {', '.join(SOURCESTAMP_ATTRIBUTES)})")
            stamp = next((ss for ss in self.props.sourcestamps if (ss.get("codebase") or "") == codebase), None)
            value = None if stamp is None else stamp.get(name)
            present = value is not None
        else:
            present, value = name in self.kwargs, render(self.kwargs.get(name), self.props)
        if op == ":-":
            return value if present else alt
        if op == ":~":
            return value if present and value else alt
        if op == ":+":
            return alt if present else ""
        return value if present else ""

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


class Interpolate(Renderable):
    """A string with ``%(prop:name)s``, ``%(kw:key)s`` and ``%(src:cb:attr)s`` placeholders (see the module)."""

    def __init__(self, fmt: str, **kwargs: Any) -> None:
        self.fmt = fmt
        self.kwargs = kwargs

    def render(self, props: Properties) -> str:
        """The string with its placeholders filled in."""
        return self.fmt % _Lookup(props, self.kwargs)

    def __repr__(self) -> str:
        return f"Interpolate({self.fmt!r})"
