"""The DCI API's errors: HttpErrors whose body is ``{"status_code", "message", "payload"}``, as DCI renders them."""

from __future__ import annotations

from typing import Any

from master.sdk import HttpError


class DciError(HttpError):
    """An HttpError with DCI's body: ``{"status_code", "message", "payload"}`` with *status*."""

    def __init__(self, status: int, message: str, payload: dict[str, Any] | None = None) -> None:
        super().__init__(status, error_document(status, message, payload), message=message)


def error_document(status: int, message: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
    """The body of a DCI error."""
    return {"status_code": status, "message": message, "payload": payload or {}}


def malformed(error: str) -> DciError:
    """400 ``Request malformed``: what a JSON-schema failure gives on the DCI server."""
    return DciError(400, "Request malformed", {"errors": [error], "error": error})


def not_found(singular: str) -> DciError:
    """404 ``<singular> not found``."""
    return DciError(404, f"{singular} not found")


def unauthorized() -> DciError:
    """401 ``Operation not authorized.``: DCI answers permission failures with 401, not 403."""
    return DciError(401, "Operation not authorized.")
