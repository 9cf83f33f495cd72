"""Errors of the data API.  Each carries a message written for the API's user."""

from __future__ import annotations


class DataError(Exception):
    """Base of data API errors; ``str(error)`` is safe to show to a client."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidPath(DataError):
    """No endpoint matches the path."""


class NotFound(DataError):
    """The path names a resource that does not exist."""


class InvalidQuery(DataError):
    """A query parameter is unknown or has a bad value; ``parameter`` names it."""

    def __init__(self, message: str, parameter: str | None = None) -> None:
        super().__init__(message)
        self.parameter = parameter


class UnknownAction(DataError):
    """The endpoint has no action of that name."""


class InvalidParams(DataError):
    """Action parameters failed validation; ``errors`` maps each bad parameter to a message."""

    def __init__(self, errors: dict[str, str]) -> None:
        detail = "; ".join(f"{name}: {msg}" for name, msg in sorted(errors.items()))
        super().__init__(f"invalid params: {detail}")
        self.errors = errors


class Conflict(DataError):
    """The action cannot be done in the resource's present state (for example, already complete)."""
