"""A plugin's tables with migrations of their own: created at head, refused when old, upgraded."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa

from master.db import migrate
from master.db.interfaces import StorageError
from master.plugin import Plugin

REVISION_1 = '''
"""create ext_gadgets"""
import sqlalchemy as sa
from alembic import op

revision = "g1"
down_revision = None
branch_labels = ("gadgets",)


def upgrade():
    op.create_table("ext_gadgets", sa.Column("id", sa.Integer, primary_key=True), sa.Column("name", sa.Text))
'''

REVISION_2 = '''
"""add ext_gadgets.color"""
import sqlalchemy as sa
from alembic import op

revision = "g2"
down_revision = "g1"
branch_labels = None


def upgrade():
    with op.batch_alter_table("ext_gadgets") as batch:
        batch.add_column(sa.Column("color", sa.Text, nullable=False, server_default="red"))
'''


def gadgets_plugin(versions: Path, with_color: bool) -> Plugin:
    metadata = sa.MetaData()
    columns = [sa.Column("id", sa.Integer, primary_key=True), sa.Column("name", sa.Text)]
    if with_color:
        columns.append(sa.Column("color", sa.Text, nullable=False, server_default="red"))
    sa.Table("ext_gadgets", metadata, *columns)

    class Gadgets(Plugin):
        name = "gadgets"

        def metadata(self) -> sa.MetaData:
            return metadata

        def migrations(self) -> str:
            return str(versions)

    return Gadgets()


def columns(url: str) -> list[str]:
    engine = sa.create_engine(migrate.sqlalchemy_url(url))
    try:
        return [c["name"] for c in sa.inspect(engine).get_columns("ext_gadgets")]
    finally:
        engine.dispose()


def test_plugin_tables_are_created_at_head_then_upgraded(db_url: str, tmp_path: Path) -> None:
    versions = tmp_path / "versions"
    versions.mkdir()
    (versions / "g1.py").write_text(textwrap.dedent(REVISION_1))
    migrate.create(db_url)
    old = migrate.plugin_schemas([gadgets_plugin(versions, with_color=False)])
    migrate.prepare_plugin_tables(db_url, old)
    assert columns(db_url) == ["id", "name"]
    engine = sa.create_engine(migrate.sqlalchemy_url(db_url))
    with engine.begin() as connection:
        connection.execute(sa.text("INSERT INTO ext_gadgets (name) VALUES ('kept')"))
        stamped = connection.execute(sa.text("SELECT version_num FROM alembic_version_gadgets")).scalar()
    assert stamped == "g1"

    # a newer version of the plugin: start (prepare) refuses until upgrade-master has run
    (versions / "g2.py").write_text(textwrap.dedent(REVISION_2))
    new = migrate.plugin_schemas([gadgets_plugin(versions, with_color=True)])
    with pytest.raises(StorageError, match="plugin 'gadgets' .* at revision g1, the plugin needs g2; run 'ci-master"):
        migrate.prepare_plugin_tables(db_url, new)
    steps: list[str] = []
    migrate.upgrade_plugin_tables(db_url, new, progress=steps.append)
    assert steps[0] == "plugin gadgets: g1 -> g2" and steps[1].startswith("plugin gadgets: done in")
    assert columns(db_url) == ["id", "name", "color"]
    migrate.prepare_plugin_tables(db_url, new)  # now accepted
    with engine.begin() as connection:
        rows = connection.execute(sa.text("SELECT name, color FROM ext_gadgets")).all()
        assert [tuple(r) for r in rows] == [("kept", "red")]
    engine.dispose()
    # the core schema is untouched by the plugin's migrations
    assert migrate.current_revision(db_url) == migrate.head_revision()
