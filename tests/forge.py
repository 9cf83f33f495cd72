"""A stand-in forge for the reporters' tests: the documented subset of GitHub's and GitLab's status APIs.

It listens on 127.0.0.1 (a free port) in a thread of the test process and implements:

* GitHub: ``POST /repos/{owner}/{repo}/statuses/{sha}`` (``Authorization: token T`` or
  ``Bearer T``; a JSON body with ``state`` in pending/success/failure/error and optional string
  ``target_url``, ``description``, ``context``), answering 201 with the status;
* GitLab: ``GET /api/v4/projects/{id or url-encoded path}`` and ``POST /api/v4/projects/{id}/statuses/{sha}``
  (``PRIVATE-TOKEN: T``; ``state`` in pending/running/success/failed/canceled, optional ``name``,
  ``target_url``, ``description``, ``ref``), answering 201;
* ``POST /hook`` (any JSON body, recorded as is) for HttpStatusPush;
* ``GET /_forge/statuses``: what it accepted and refused, for a process that runs it apart
  (``python tests/forge.py`` prints its URL, then serves until killed; the benchmark does).

A wrong token gets 401, a bad body 422, an unknown path or project 404, as the forges do.
``fail(status, seconds)`` makes every request answer *status* for a while, ``drop(seconds)``
makes it close connections without an answer.  Accepted statuses are in ``statuses``, HTTP
pushes in ``hooks``; ``attempts`` counts every request.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

GITHUB_STATES = ("pending", "success", "failure", "error")
GITLAB_STATES = ("pending", "running", "success", "failed", "canceled")
_SHA = re.compile(r"^[0-9a-f]{7,40}$")


@dataclass
class Status:
    """One accepted commit status."""

    forge: str
    repo: str
    sha: str
    state: str
    context: str | None
    target_url: str | None
    description: str | None


@dataclass
class Forge:
    """The server's state; start() binds it, stop() ends it."""

    github_token: str = "ghp_" + "A" * 36
    gitlab_token: str = "glpat-" + "B" * 20
    projects: dict[str, int] = field(default_factory=dict)  # GitLab path -> id
    statuses: list[Status] = field(default_factory=list)
    hooks: list[dict[str, Any]] = field(default_factory=list)
    attempts: int = 0
    refused: list[tuple[int, str]] = field(default_factory=list)  # (status, why) of the 4xx answered
    _fail_until: float = 0.0
    _fail_status: int = 500
    _drop_until: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        """The base URL, without a trailing slash."""
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> Forge:
        """Listen on a free port of 127.0.0.1, serving from a thread."""
        forge = self

        class Handler(_Handler):
            pass

        Handler.forge = forge
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="forge", daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def fail(self, status: int = 500, seconds: float = 3600.0) -> None:
        """Answer *status* to every request for *seconds* (``recover()`` ends it sooner)."""
        self._fail_status, self._fail_until = status, time.monotonic() + seconds

    def drop(self, seconds: float = 3600.0) -> None:
        """Close every connection without an answer for *seconds*."""
        self._drop_until = time.monotonic() + seconds

    def recover(self) -> None:
        """Answer normally again."""
        self._fail_until = self._drop_until = 0.0

    def states(self, sha: str | None = None, forge: str | None = None) -> list[str]:
        """The states accepted so far (for *sha*, of *forge*), in order."""
        with self._lock:
            return [s.state for s in self.statuses if (sha is None or s.sha == sha) and (forge in (None, s.forge))]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the forges and the reporters' pool use
    forge: Forge

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self._serve("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._serve("POST")

    def _serve(self, method: str) -> None:
        forge = self.forge
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        with forge._lock:
            forge.attempts += 1
        now = time.monotonic()
        if now < forge._drop_until:
            self.close_connection = True
            self.connection.shutdown(2)  # the peer sees the connection closed without an answer
            return
        if now < forge._fail_until:
            self._answer(forge._fail_status, {"message": "Server Error (stand-in forge told to fail)"})
            return
        path = self.path.split("?", 1)[0]
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            self._refuse(400, "Problems parsing JSON")
            return
        if method == "GET" and path == "/_forge/statuses":
            with forge._lock:
                self._answer(200, {"statuses": [s.__dict__ for s in forge.statuses], "refused": forge.refused})
            return
        if method == "POST" and path == "/hook":
            with forge._lock:
                forge.hooks.append(body)
            self._answer(200, {"ok": True})
            return
        github = re.fullmatch(r"/repos/([^/]+)/([^/]+)/statuses/([^/]+)", path)
        if method == "POST" and github:
            self._github(f"{github.group(1)}/{github.group(2)}", github.group(3), body)
            return
        project = re.fullmatch(r"/api/v4/projects/([^/]+)", path)
        if method == "GET" and project:
            self._gitlab_project(unquote(project.group(1)))
            return
        status = re.fullmatch(r"/api/v4/projects/([^/]+)/statuses/([^/]+)", path)
        if method == "POST" and status:
            self._gitlab_status(unquote(status.group(1)), status.group(2), body)
            return
        self._refuse(404, "Not Found")

    def _github(self, repo: str, sha: str, body: Any) -> None:
        forge = self.forge
        auth = self.headers.get("Authorization") or ""
        if auth not in (f"token {forge.github_token}", f"Bearer {forge.github_token}"):
            self._refuse(401, "Bad credentials")
            return
        problem = _check_body(body, "state", GITHUB_STATES, ("target_url", "description", "context"))
        if problem or not _SHA.match(sha):
            self._refuse(422, problem or f"No commit found for SHA: {sha}")
            return
        status = Status("github", repo, sha, body["state"], body.get("context"), body.get("target_url"),
                        body.get("description"))
        with forge._lock:
            forge.statuses.append(status)
        self._answer(201, {"id": len(forge.statuses), **body})

    def _gitlab_token_ok(self) -> bool:
        if self.headers.get("PRIVATE-TOKEN") != self.forge.gitlab_token:
            self._refuse(401, "401 Unauthorized")
            return False
        return True

    def _gitlab_project(self, key: str) -> None:
        if not self._gitlab_token_ok():
            return
        forge = self.forge
        ids = {str(i): (path, i) for path, i in forge.projects.items()}
        found = ids.get(key) or ((key, forge.projects[key]) if key in forge.projects else None)
        if found is None:
            self._refuse(404, "404 Project Not Found")
            return
        self._answer(200, {"id": found[1], "path_with_namespace": found[0]})

    def _gitlab_status(self, key: str, sha: str, body: Any) -> None:
        if not self._gitlab_token_ok():
            return
        forge = self.forge
        by_id = {str(i): path for path, i in forge.projects.items()}
        if key not in by_id:
            self._refuse(404, "404 Project Not Found")
            return
        problem = _check_body(body, "state", GITLAB_STATES, ("target_url", "description", "name", "ref"))
        if problem or not _SHA.match(sha):
            self._refuse(400, problem or f"invalid sha {sha}")
            return
        status = Status("gitlab", by_id[key], sha, body["state"], body.get("name"), body.get("target_url"),
                        body.get("description"))
        with forge._lock:
            forge.statuses.append(status)
        self._answer(201, {"id": len(forge.statuses), "status": body["state"], "sha": sha})

    def _refuse(self, status: int, message: str) -> None:
        with self.forge._lock:
            self.forge.refused.append((status, message))
        self._answer(status, {"message": message})

    def _answer(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _check_body(body: Any, key: str, states: tuple[str, ...], optional: tuple[str, ...]) -> str | None:
    """Why *body* is not a valid status, or None."""
    if not isinstance(body, dict):
        return "a JSON object is required"
    if body.get(key) not in states:
        return f"state: must be one of {', '.join(states)}, not {body.get(key)!r}"
    for name in optional:
        if name in body and not isinstance(body[name], str):
            return f"{name}: must be a string"
    return None


if __name__ == "__main__":
    import sys

    served = Forge().start()
    print(served.url, flush=True)
    try:
        threading.Event().wait()
    finally:
        sys.exit(0)
