"""``python -m plugins.dci``: make the teams, remotecis and feeders labs need, and print their credentials.

    python -m plugins.dci remoteci-create NAME --team TEAM [--master DIR | --db URL]
    python -m plugins.dci feeder-create NAME --team TEAM [--master DIR | --db URL]

The team is created if it does not exist.  The output is the environment ``dcictl`` and
``dciclient`` read (``DCI_CLIENT_ID=remoteci/<id>`` and ``DCI_API_SECRET=<secret>``); the
secret is shown only here.  Writes go through the data API's update methods, like the master's.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from twisted.internet import defer

from master.sdk import ConfigError, HttpError, StorageError, load_config, open_data
from plugins.dci.plugin import DciPlugin
from plugins.dci.resources import Teams


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m plugins.dci", description="DCI plugin administration")
    commands = parser.add_subparsers(dest="command", required=True)
    for kind in ("remoteci", "feeder"):
        sub = commands.add_parser(f"{kind}-create", help=f"add a {kind} to a team and print its credentials")
        sub.add_argument("name", help=f"the {kind}'s name, unique in its team")
        sub.add_argument("--team", required=True, help="the team's name (created if missing)")
        where = sub.add_mutually_exclusive_group()
        where.add_argument("--master", default=".", help="the master directory whose master.cfg names the database")
        where.add_argument("--db", help="the database URL, instead of reading master.cfg")
    return parser


async def create_client(db_url: str, kind: str, name: str, team: str) -> tuple[dict[str, Any], str]:
    """Add client *name* of *kind* (``remoteci`` or ``feeder``) to *team* in *db_url*; return it and its secret."""
    async with open_data(db_url, DciPlugin()) as data:
        team_entity = await data.resource_type(Teams).dci_find_or_create_team(team)
        return await getattr(data.updates, f"dci_create_{kind}")(name, team_entity["id"])


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; 0 on success, 1 with a message on stderr otherwise."""
    args = _parser().parse_args(argv)
    kind = args.command.removesuffix("-create")
    try:
        db_url = args.db or load_config(args.master).db_url
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    outcome: dict[str, Any] = {}

    async def run() -> None:
        try:
            outcome["client"] = await create_client(db_url, kind, args.name, args.team)
        except (HttpError, StorageError) as e:
            outcome["error"] = getattr(e, "message", str(e))

    from twisted.internet import reactor

    done = defer.ensureDeferred(run())
    done.addErrback(lambda failure: outcome.setdefault("error", failure.getErrorMessage()))
    done.addBoth(lambda _: reactor.stop())
    reactor.run()
    if "error" in outcome:
        print(f"error: {outcome['error']}", file=sys.stderr)
        return 1
    entity, secret = outcome["client"]
    print(f"# {kind} {entity['name']!r} of team {args.team!r}; the secret is shown only this once")
    print(f"DCI_CLIENT_ID={kind}/{entity['id']}")
    print(f"DCI_API_SECRET={secret}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
