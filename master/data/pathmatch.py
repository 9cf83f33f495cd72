"""Typed path patterns such as ``/builders/n:builderid/builds/n:number``.

A segment is a literal, or ``T:name`` capturing an argument of type ``n`` (integer),
``i`` (identifier) or ``s`` (any non-empty string).  Patterns are matched by segment count
first; at equal length, a literal segment wins over a capture, so ``/logs/n:logid/raw`` and
``/logs/n:logid/s:name`` can live side by side.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from master.data.types import FieldType, Identifier, Integer, String

V = TypeVar("V")

_ARG_TYPES: dict[str, FieldType] = {"n": Integer(), "i": Identifier(), "s": String()}
_MAX_CANDIDATE_LISTS = 4096


@dataclass(frozen=True)
class Segment:
    """One segment: a literal (``name`` only) or a typed capture."""

    name: str
    type_code: str | None = None

    @property
    def is_capture(self) -> bool:
        """True for an argument segment."""
        return self.type_code is not None

    def spell(self) -> str:
        """The segment as written in a pattern."""
        return f"{self.type_code}:{self.name}" if self.type_code else self.name


def parse_pattern(pattern: str) -> tuple[Segment, ...]:
    """Split a pattern into segments, checking the argument types."""
    segments = []
    for part in pattern.strip("/").split("/"):
        if ":" in part:
            code, name = part.split(":", 1)
            if code not in _ARG_TYPES or not name:
                raise ValueError(f"bad path pattern segment {part!r} in {pattern!r}")
            segments.append(Segment(name, code))
        else:
            if not part:
                raise ValueError(f"empty segment in path pattern {pattern!r}")
            segments.append(Segment(part))
    return tuple(segments)


def split_path(path: str | Iterable[str]) -> tuple[str, ...]:
    """A request path as a tuple of segments (leading and trailing slashes ignored)."""
    if isinstance(path, str):
        stripped = path.strip("/")
        return tuple(stripped.split("/")) if stripped else ()
    return tuple(path)


class Matcher(Generic[V]):
    """Maps path patterns to values and matches concrete paths against them."""

    def __init__(self) -> None:
        self._by_length: dict[int, list[tuple[tuple[Segment, ...], V]]] = {}
        # (length, first segment) -> the patterns a path of that length and first segment may match,
        # in match order: those whose first segment is that literal, then those that capture it.
        # Every REST read is matched: this spares it a scan of every pattern of its length.
        self._candidates: dict[tuple[int, str], list[tuple[tuple[Segment, ...], V]]] = {}

    def add(self, pattern: str, value: V) -> None:
        """Register *pattern*; registering the same shape twice is an error naming both."""
        segments = parse_pattern(pattern)
        bucket = self._by_length.setdefault(len(segments), [])
        shape = tuple(s.type_code or s.name for s in segments)
        for existing, existing_value in bucket:
            if tuple(s.type_code or s.name for s in existing) == shape:
                raise ValueError(f"path pattern {pattern!r} clashes with one already registered for {existing_value!r}")
        bucket.append((segments, value))
        # literals before captures, segment by segment, so the most specific pattern wins
        bucket.sort(key=lambda item: tuple(s.is_capture for s in item[0]))
        self._candidates.clear()

    def remove(self, pattern: str) -> None:
        """Unregister *pattern*."""
        segments = parse_pattern(pattern)
        bucket = self._by_length.get(len(segments), [])
        bucket[:] = [item for item in bucket if item[0] != segments]
        self._candidates.clear()

    def match(self, path: tuple[str, ...]) -> tuple[V, dict[str, Any]] | None:
        """Return ``(value, arguments)`` for the first pattern matching *path*, or None."""
        if not path:
            return None
        key = (len(path), path[0])
        candidates = self._candidates.get(key)
        if candidates is None:
            candidates = [item for item in self._by_length.get(len(path), ())
                          if item[0][0].type_code is not None or item[0][0].name == path[0]]
            if len(self._candidates) < _MAX_CANDIDATE_LISTS:  # first segments are client input: bounded
                self._candidates[key] = candidates
        for segments, value in candidates:
            args: dict[str, Any] = {}
            for segment, part in zip(segments, path, strict=True):
                if segment.type_code is None:
                    if segment.name != part:
                        break
                else:
                    if not part:
                        break
                    try:
                        args[segment.name] = _ARG_TYPES[segment.type_code].from_string(part)
                    except ValueError:
                        break
            else:
                return value, args
        return None

    def patterns(self) -> list[tuple[tuple[Segment, ...], V]]:
        """All registered patterns with their values."""
        return [item for bucket in self._by_length.values() for item in bucket]
