"""Bileto's tables and its Alembic revisions on both backends, and the plugin in a real ``ci-master``."""

from __future__ import annotations

import json
import os
import textwrap
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from cliutil import free_port, http_get, run, use_port

from master.db import migrate
from plugins.bileto import BiletoPlugin

pytestmark = pytest.mark.slow  # real ci-master processes


def schema_of(url: str) -> dict[str, object]:
    """Each bileto table's columns (name, nullable) and index names."""
    engine = sa.create_engine(migrate.sqlalchemy_url(url))
    try:
        inspector = sa.inspect(engine)
        return {
            table: (
                [(c["name"], c["nullable"]) for c in inspector.get_columns(table)],
                sorted(i["name"] for i in inspector.get_indexes(table)),
                [fk["referred_table"] for fk in inspector.get_foreign_keys(table)],
            )
            for table in ("bileto_tickets", "bileto_comments")
        }
    finally:
        engine.dispose()


def revision_of(url: str) -> str | None:
    engine = sa.create_engine(migrate.sqlalchemy_url(url))
    try:
        with engine.connect() as connection:
            return connection.execute(sa.text("SELECT version_num FROM alembic_version_bileto")).scalar()
    finally:
        engine.dispose()


def test_tables_made_at_head_match_what_the_revisions_build(
    backend: str, db_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    plugin = BiletoPlugin()
    schemas = migrate.plugin_schemas([plugin])
    assert schemas[0].head() == "bileto_0001"
    migrate.create(db_url)
    migrate.prepare_plugin_tables(db_url, schemas)  # what start does for a database new to the plugin
    assert revision_of(db_url) == "bileto_0001"
    made_at_head = schema_of(db_url)
    assert made_at_head["bileto_comments"][2] == ["bileto_tickets"]

    # the same schema built by running the revisions, as upgrade-master would, in a second database
    if backend == "sqlite":
        other = f"sqlite:///{tmp_path}/other.sqlite"
    else:
        other = request.getfixturevalue("pg_server").create_database(f"bileto_revisions_{os.getpid()}_{id(tmp_path)}")
    engine = sa.create_engine(migrate.sqlalchemy_url(other))
    with engine.connect() as connection:
        config = Config()
        config.set_main_option("script_location", migrate.MIGRATIONS)
        config.set_main_option("path_separator", "os")
        config.set_main_option("version_locations", plugin.migrations())
        config.attributes.update(connection=connection, version_table="alembic_version_bileto",
                                 metadata=plugin.metadata())
        command.upgrade(config, "head")
        connection.commit()
    engine.dispose()
    assert schema_of(other) == made_at_head
    assert revision_of(other) == "bileto_0001"
    migrate.prepare_plugin_tables(other, schemas)  # at head: accepted as is


@pytest.fixture
def master_dir(tmp_path: Path) -> Iterator[Path]:
    done = run("create-master", "m", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    directory = tmp_path / "m"
    yield directory
    run("stop", str(directory), cwd=tmp_path)


def send(port: int, method: str, path: str, body: object = None) -> tuple[int, dict]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def test_a_real_master_serves_bileto_at_v1(master_dir: Path) -> None:
    port = free_port()
    use_port(master_dir, port)
    cfg = master_dir / "master.cfg"
    cfg.write_text(cfg.read_text() + textwrap.dedent("""
        from plugins.bileto import BiletoPlugin
        config.plugins = [BiletoPlugin(api_token="s3cret")]
        config.workers, config.builders, config.schedulers = [], [], []  # no builds here: a quick stop
    """))
    listed = run("plugins", str(master_dir), cwd=master_dir)
    assert listed.returncode == 0, listed.stderr
    assert "resource types: tickets, ticket_comments; tables: bileto_comments, bileto_tickets" in listed.stdout
    started = run("start", str(master_dir), cwd=master_dir)
    assert started.returncode == 0, started.stderr + started.stdout

    assert http_get(port, "/v1/tickets") == {"requests": []}
    code, body = send(port, "POST", "/v1/tickets?token=wrong", {"description": "nope"})
    assert code == 401 and body == {"error": "invalid token"}
    code, body = send(port, "POST", "/v1/tickets?token=s3cret",
                      {"description": "real master", "landers": "robru", "siloname": "ubuntu/landing-042"})
    assert code == 201, body
    rid = body["requests"][0]["request_id"]
    code, body = send(port, "POST", "/v1/tickets?token=s3cret",
                      {"request_id": rid, "author": "jenkins", "status": "Packages built"})
    assert code == 200 and body["requests"][0]["comments"][0]["text"] == "status changed from New to Packages built"
    assert http_get(port, "/v1/silo/042")["requests"][0]["request_id"] == rid
    assert http_get(port, "/v1/user/robru")["requests"][0]["search"].startswith(f"{rid}\nreal master\n")
    assert http_get(port, f"/api/v2/tickets/{rid}")["tickets"][0]["status"] == "Packages built"
    assert "tickets" in [link["name"] for link in http_get(port, "/api/v2")["rootlinks"]]
    assert revision_of(f"sqlite:///{master_dir}/state.sqlite") == "bileto_0001"


def test_a_real_masters_users_post_to_v1_with_their_tokens(master_dir: Path) -> None:
    port = free_port()
    use_port(master_dir, port)
    cfg = master_dir / "master.cfg"
    cfg.write_text(cfg.read_text() + textwrap.dedent("""
        from master.www.auth import Auth, ControlRule
        from plugins.bileto import BiletoPlugin
        config.plugins = [BiletoPlugin()]
        config.auth = Auth(rules=[ControlRule(roles=["bileto"], resources=["tickets"])])
        config.workers, config.builders, config.schedulers = [], [], []
    """))
    assert run("user", "add", str(master_dir), "jenkins", "--role", "bileto", "--no-password",
               cwd=master_dir).returncode == 0
    token = run("user", "token", str(master_dir), "jenkins", cwd=master_dir).stdout.splitlines()[-1]
    assert run("start", str(master_dir), cwd=master_dir).returncode == 0
    code, body = send(port, "POST", "/v1/tickets", {"description": "x"})
    assert code == 401
    code, body = send(port, "POST", f"/v1/tickets?token={token}", {"description": "x"})
    assert code == 201, body
    rid = body["requests"][0]["request_id"]
    code, body = send(port, "POST", f"/v1/tickets?token={token}", {"request_id": rid, "status": "Landed"})
    assert code == 200 and body["requests"][0]["comments"][0]["author"] == "jenkins"
