"""BuildAPI's wire shapes (pure functions): job objects and the HTML page around a JSON answer."""

from __future__ import annotations

import html
from typing import Any


def job_object(job: dict[str, Any]) -> dict[str, Any]:
    """BuildAPI's job object (plus ``request_id``, the job's id, to link to it)."""
    return {
        "request_id": job["jobid"],
        "action": job["action"],
        "who": job["who"],
        "when": job["when"],
        "what": job["what"],
        "completed_at": job["completed_at"],
        "complete_data": job["complete_data"],
    }


def page(title: str, body_html: str) -> bytes:
    """A small HTML page."""
    return (
        f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title></head>"
        f"<body><h1>{html.escape(title)}</h1>\n{body_html}\n</body></html>\n"
    ).encode()
