"""HTTP byte ranges (RFC 9110 section 14) for raw downloads: one range per request, as download tools ask."""

from __future__ import annotations

UNSATISFIABLE = "unsatisfiable"


def parse_range(header: str, length: int) -> tuple[int, int] | str | None:
    """The byte range a ``Range`` header asks of content of *length* bytes.

    Returns ``(start, end)`` (end exclusive), :data:`UNSATISFIABLE` (answer 416), or None
    when the header is to be ignored and the whole content sent: not in bytes, malformed,
    or several ranges (which a server may answer with the whole content).
    """
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or not spec.strip() or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash or not (first.isdigit() or first == "") or not (last.isdigit() or last == ""):
        return None
    if first == "":
        if last == "":
            return None
        suffix = int(last)  # the last N bytes
        if suffix == 0 or length == 0:
            return UNSATISFIABLE
        return max(length - suffix, 0), length
    start = int(first)
    if last != "" and int(last) < start:
        return None
    if start >= length:
        return UNSATISFIABLE
    end = length if last == "" else min(int(last) + 1, length)
    return start, end


def path_segments(raw_path: bytes, prefix: bytes) -> tuple[str, ...] | None:
    """The segments of *raw_path* (as received, %-encoded) after *prefix*, each decoded on its own.

    So that an encoded slash (``%2F``) stays inside its segment: ``artifacts/out%2Fa.txt/raw``
    names the artifact ``out/a.txt``.  None when the path does not start with *prefix* or is
    not UTF-8.
    """
    from urllib.parse import unquote_to_bytes

    if not raw_path.startswith(prefix):
        return None
    rest = raw_path[len(prefix):].strip(b"/")
    if not rest:
        return ()
    try:
        return tuple(unquote_to_bytes(part).decode("utf-8") for part in rest.split(b"/"))
    except UnicodeDecodeError:
        return None
