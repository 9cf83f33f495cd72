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

from twisted.internet import defer, threads

from master.config import ConfigError, load_config
from master.data.connector import DataAPI
from master.db import migrate
from master.db.backends import make_storage
from master.db.interfaces import StorageError
from plugins.dci import resources, tables
from plugins.dci.errors import DciError


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
    await threads.deferToThread(migrate.create_plugin_tables, db_url, [tables.metadata])
    storage = make_storage(db_url)
    await storage.start()
    try:
        data = DataAPI(storage)
        for rtype in resources.resource_types():
            data.add_resource_type(rtype)
        team_entity = await data.updates.dci_find_or_create_team(team)
        return await getattr(data.updates, f"dci_create_{kind}")(name, team_entity["id"])
    finally:
        await storage.stop()


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
        except (DciError, StorageError) as e:
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
