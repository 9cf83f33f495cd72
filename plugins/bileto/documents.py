"""Bileto's wire shapes (pure functions): tickets as Bileto lists them, and its error lines."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def ticket_document(ticket: Mapping[str, Any]) -> dict[str, Any]:
    """A ticket with its keys in the seed's order (alphabetical; the data API appends loaded fields last)."""
    return dict(sorted(ticket.items()))


def params_error(errors: Mapping[str, str]) -> str:
    """One line naming every bad field of an action's parameters, unknown ones first."""
    unknown = sorted(name for name, reason in errors.items() if reason == "unknown parameter")
    parts = [f"unknown field {name!r}" for name in unknown]
    parts += [f"{name}: {reason}" for name, reason in sorted(errors.items()) if name not in unknown]
    return "; ".join(parts)
