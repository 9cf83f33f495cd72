"""DCI's ``embed`` parameter on jobs: related objects put inside each job of a reply.

``GET /api/v1/jobs?embed=topic,components,remoteci`` (and ``/jobs/{id}?embed=...``) returns
each job with ``topic``, ``remoteci`` and ``team`` as objects (null when missing) and
``components``, ``results``, ``jobstates`` and ``files`` as lists, as the DCI server does, so
that agents may read ``job["topic"]["name"]``.  An unknown name is a 400 listing the valid
ones.  The related objects are read through ``data.get`` like any other read (one query per
kind for a page of jobs; one per job for the lists), so read rules apply to them too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from master.sdk import DataAPI, Filter, ResultSpec
from plugins.dci.errors import DciError

ONE = {"topic": ("dci_topics", "topic_id"), "remoteci": ("dci_remotecis", "remoteci_id"),
       "team": ("dci_teams", "team_id")}
"""Embeds of one object: the resource type and the job's key naming it."""
MANY = {"components": ("dci_components", "type"), "results": ("dci_results", "created_at"),
        "jobstates": ("dci_jobstates", "created_at"), "files": ("dci_files", "created_at")}
"""Embeds of a list: the resource type under ``dci_jobs/<id>`` and its order."""
VALID = sorted((*ONE, *MANY))
MAX_RELATED = 1000
"""The most objects of one list embedded in one job."""

Shape = Callable[[str, dict[str, Any]], dict[str, Any]]
"""Turns an entity of an embed (by its name) into the keys the DCI server shows."""


def parse_embed(args: Mapping[str, Sequence[str]]) -> list[str]:
    """The names of ``embed=a,b`` (repeatable), in order and without repeats; 400 for an unknown one."""
    names: list[str] = []
    for value in args.get("embed", ()):
        for name in (part.strip() for part in value.split(",")):
            if not name:
                continue
            if name not in ONE and name not in MANY:
                raise DciError(400, f'Invalid embed key: "{name}"', {"Valid embed keys": VALID})
            if name not in names:
                names.append(name)
    return names


async def embed_jobs(data: DataAPI, jobs: list[dict[str, Any]], names: Sequence[str], shape: Shape) -> None:
    """Put the related objects *names* into each of *jobs* (which carry their ``id`` and ``*_id`` keys)."""
    for name in names:
        if name in ONE:
            plural, key = ONE[name]
            wanted = tuple(sorted({job[key] for job in jobs if job.get(key)}))
            found: dict[str, dict[str, Any]] = {}
            if wanted:
                spec = ResultSpec(filters=[Filter("id", "in", wanted)], limit=len(wanted))
                found = {entity["id"]: entity for entity in (await data.get((plural,), spec=spec)).items}
            for job in jobs:
                entity = found.get(job.get(key) or "")
                job[name] = shape(name, entity) if entity is not None else None
        else:
            plural, order = MANY[name]
            for job in jobs:
                spec = ResultSpec(order=(order, "id"), limit=MAX_RELATED)
                items = (await data.get(("dci_jobs", job["id"], plural), spec=spec)).items
                job[name] = [shape(name, item) for item in items if item.get("state") != "archived"]
