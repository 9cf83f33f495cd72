"""The DCI API's errors: a status, a message and a payload, rendered as DCI renders them."""

from __future__ import annotations

from typing import Any


class DciError(Exception):
    """An error answered as ``{"status_code", "message", "payload"}`` with *status*."""

    def __init__(self, status: int, message: str, payload: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.payload = payload or {}

    def to_json(self) -> dict[str, Any]:
        """The error body."""
        return {"status_code": self.status, "message": self.message, "payload": self.payload}


def malformed(error: str) -> DciError:
    """400 ``Request malformed``: what a JSON-schema failure gives on the DCI server."""
    return DciError(400, "Request malformed", {"errors": [error], "error": error})


def not_found(singular: str) -> DciError:
    """404 ``<singular> not found``."""
    return DciError(404, f"{singular} not found")


def unauthorized() -> DciError:
    """401 ``Operation not authorized.``: DCI answers permission failures with 401, not 403."""
    return DciError(401, "Operation not authorized.")
