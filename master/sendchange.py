"""``ci-master sendchange``: record a change on a running master from a script (a post-receive hook...).

It calls the JSON-RPC ``add`` action of ``/api/v2/changes`` with :mod:`urllib` (no reactor), so
it works from any Python program as well as from the command line.  With ``auth`` enabled on
the master the caller needs an API token whose user a ``ControlRule`` allows ``add`` on
``changes``; give it with ``--token`` or, to keep it out of process listings, ``CI_MASTER_TOKEN``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

DEFAULT_MASTER = "http://127.0.0.1:8010/"
MASTER_ENV = "CI_MASTER_URL"
TOKEN_ENV = "CI_MASTER_TOKEN"


class SendChangeError(Exception):
    """The change was not recorded; the message says why."""


def sendchange(master_url: str, token: str | None = None, *, timeout: float = 30.0, **fields: Any) -> int:
    """Record a change on the master at *master_url*; return its id.

    *fields* are the ``add`` action's parameters (``author`` is required; ``comments``,
    ``files``, ``branch``, ``revision``, ``repository``, ``project``, ``codebase``,
    ``category``, ``revlink``, ``when_timestamp``, ``properties``, ``committer``); None
    values are left out.  Raises SendChangeError when the master cannot be reached or
    refuses the change.
    """
    parts = urlsplit(master_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SendChangeError(f"the master URL must be http:// or https://, like {DEFAULT_MASTER}; got {master_url!r}")
    url = master_url.rstrip("/") + "/api/v2/changes"
    params = {name: value for name, value in fields.items() if value is not None}
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "add", "params": params}).encode()
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310 (scheme checked)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as e:  # the master's JSON-RPC errors come with 4xx/5xx statuses
        status, raw = e.code, e.read()
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise SendChangeError(f"cannot reach the master at {url}: {reason}") from None
    try:
        answer = json.loads(raw)
    except ValueError:
        raise SendChangeError(f"{url} answered HTTP {status} with something other than JSON: is it a ci-master?") \
            from None
    if not isinstance(answer, dict):
        raise SendChangeError(f"{url} answered HTTP {status} with an unexpected body")
    if "error" in answer:
        error = answer["error"]
        message = error.get("message", error) if isinstance(error, dict) else error
        if status == 401:
            message = f"{message} (give a token with --token or {TOKEN_ENV})"
        raise SendChangeError(f"the master refused the change (HTTP {status}): {message}")
    result = answer.get("result")
    changeid = result.get("changeid") if isinstance(result, dict) else None
    if not isinstance(changeid, int):
        raise SendChangeError(f"{url} answered HTTP {status} without a change id: is it a ci-master?")
    return changeid


# -- the command line ------------------------------------------------------------------------------


def _property(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def _when(text: str) -> int:
    """Seconds since the epoch, or an ISO 8601 time (UTC when it has no offset)."""
    try:
        return int(float(text))
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds since the epoch or an ISO 8601 time, got {text!r}") \
            from None
    return int((when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``ci-master sendchange``."""
    parser.add_argument("--master", "-m", default=os.environ.get(MASTER_ENV, DEFAULT_MASTER),
                        help=f"the master's URL (default ${MASTER_ENV} or {DEFAULT_MASTER})")
    parser.add_argument("--token", default=os.environ.get(TOKEN_ENV),
                        help=f"an API token (default ${TOKEN_ENV}; needed when the master has auth)")
    parser.add_argument("--author", "-W", required=True, help="who wrote it, e.g. 'Jane <jane@example.org>'")
    parser.add_argument("--committer", help="who committed it")
    message = parser.add_mutually_exclusive_group()
    message.add_argument("--comments", "-c", help="the commit message")
    message.add_argument("--logfile", "-F", help="read the commit message from this file ('-' for stdin)")
    parser.add_argument("--branch", "-b", help="the branch")
    parser.add_argument("--revision", "-r", help="the revision")
    parser.add_argument("--repository", "-R", help="the repository URL")
    parser.add_argument("--project", "-P", help="the project")
    parser.add_argument("--codebase", help="the codebase")
    parser.add_argument("--category", "-C", help="a free category")
    parser.add_argument("--revlink", "-L", help="a link to a web view of the revision")
    parser.add_argument("--when", "-w", type=_when, help="when it was made: epoch seconds or ISO 8601 (default now)")
    parser.add_argument("--property", "-p", type=_property, action="append", default=[], metavar="NAME=VALUE",
                        help="a change property (repeatable)")
    parser.add_argument("files", nargs="*", metavar="FILE", help="the files it touches")


def run(args: argparse.Namespace) -> int:
    """Run ``ci-master sendchange``: print the new change's id, or the error on standard error."""
    comments = args.comments
    try:
        if args.logfile == "-":
            comments = sys.stdin.read()
        elif args.logfile:
            with open(args.logfile, encoding="utf-8") as f:
                comments = f.read()
    except OSError as e:
        print(f"ci-master: cannot read {args.logfile}: {e.strerror}", file=sys.stderr)
        return 1
    try:
        changeid = sendchange(
            args.master, args.token, author=args.author, committer=args.committer, comments=comments,
            files=args.files, branch=args.branch, revision=args.revision, repository=args.repository,
            project=args.project, codebase=args.codebase, category=args.category, revlink=args.revlink,
            when_timestamp=args.when, properties=dict(args.property) or None,
        )
    except SendChangeError as e:
        print(f"ci-master: {e}", file=sys.stderr)
        return 1
    print(f"change {changeid} added")
    return 0
