"""DCI's wire shapes: which keys of each entity the DCI server shows, and how (pure functions, no I/O)."""

from __future__ import annotations

from typing import Any

IDENTITY_KEYS = ("email", "etag", "fullname", "id", "name", "teams", "timezone")
TOPIC_KEYS = ("component_types", "created_at", "data", "etag", "export_control", "id", "name", "next_topic_id",
              "product_id", "state", "updated_at")
COMPONENT_KEYS = ("canonical_project_name", "created_at", "data", "etag", "id", "message", "name", "state", "title",
                  "topic_id", "type", "updated_at", "url")
JOB_CREATED_KEYS = ("client_version", "comment", "created_at", "duration", "etag", "id", "previous_job_id",
                    "product_id", "remoteci_id", "state", "status", "team_id", "topic_id", "topic_id_secondary",
                    "update_previous_job_id", "updated_at", "user_agent")
JOB_KEYS = (*JOB_CREATED_KEYS, "name", "configuration", "url", "tags", "data", "status_reason")
JOBSTATE_KEYS = ("comment", "created_at", "id", "job_id", "status")
FILE_KEYS = ("created_at", "etag", "id", "job_id", "jobstate_id", "md5", "mime", "name", "size", "state", "team_id",
             "updated_at")
RESULT_KEYS = ("created_at", "errors", "failures", "file_id", "id", "job_id", "name", "regressions", "skips",
               "success", "successfixes", "time", "total", "updated_at")
TEAM_KEYS = ("created_at", "etag", "has_pre_release_access", "id", "name", "state", "updated_at")
CLIENT_KEYS = ("created_at", "data", "etag", "id", "name", "state", "team_id", "updated_at")
KV_KEYS = ("job_id", "key", "value")


def only(entity: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """*entity* with *keys* only, in that order."""
    return {key: entity[key] for key in keys}


def file_document(entity: dict[str, Any]) -> dict[str, Any]:
    """A file as DCI shows it: the DCI server's file replies give the size as a string."""
    return {**only(entity, FILE_KEYS), "size": str(entity["size"])}


EMBED_KEYS = {"topic": TOPIC_KEYS, "remoteci": CLIENT_KEYS, "team": TEAM_KEYS, "components": COMPONENT_KEYS,
              "results": RESULT_KEYS, "jobstates": JOBSTATE_KEYS}


def embedded(name: str, entity: dict[str, Any]) -> dict[str, Any]:
    """An embedded object with the keys its own route shows (a remoteci's secret never)."""
    return file_document(entity) if name == "files" else only(entity, EMBED_KEYS[name])


def created_job(job: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """A job just made: the DCI server answers with the values it inserted, its own keys plus those the client sent."""
    keys = JOB_CREATED_KEYS + tuple(k for k in JOB_KEYS if k in body and k not in JOB_CREATED_KEYS)
    return only(job, keys)


def identity_document(kind: str, identity_id: str, name: str | None, teams: dict[str, Any]) -> dict[str, Any]:
    """``/identity``: the caller, with its teams' names (a remoteci's or feeder's name is not shown)."""
    return {"email": None, "etag": None, "fullname": None, "id": identity_id,
            "name": name if kind == "user" else None,
            "teams": {team_id: {"team_name": team["name"]} for team_id, team in teams.items()}, "timezone": None}
