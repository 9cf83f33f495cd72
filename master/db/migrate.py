"""Create, check and upgrade a database schema (run synchronously, outside the reactor).

A new database is created from :mod:`master.db.schema` and stamped at the newest Alembic
revision; an older one is upgraded by running the revisions it lacks.  Plugin tables are
created from the plugins' own metadata when missing.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from master.db import counters, revisions
from master.db.interfaces import StorageError
from master.db.schema import metadata

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

MIGRATIONS = str(Path(__file__).parent / "migrations")


# Alembic is imported when schema work runs: a process that only serves never loads it (memory).


def _new_config() -> Config:
    from alembic.config import Config

    return Config()


def _script_directory(config: Config | None = None) -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(config) if config is not None else ScriptDirectory(MIGRATIONS)


def _migration_context(connection: sa.engine.Connection, opts: dict[str, Any] | None = None) -> MigrationContext:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection, opts=opts)


def _stamp(config: Config, revision: str) -> None:
    from alembic import command

    command.stamp(config, revision)


def _upgrade(config: Config, revision: str) -> None:
    from alembic import command

    command.upgrade(config, revision)


def masked_url(url: str) -> str:
    """Return *url* with its password replaced by ``***``, for messages."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL has no password we could find either
        return url


def sqlalchemy_url(url: str) -> sa.engine.URL:
    """Parse *url* for SQLAlchemy, naming the psycopg2 driver for a bare ``postgresql://`` URL.

    SQLAlchemy 2.1 takes ``postgresql://`` to mean psycopg 3, which ci-master does not use;
    ``postgres://`` (as Heroku and libpq write it) means the same database.
    """
    parsed = sa.engine.make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg2")
    return parsed


def _engine(url: str) -> sa.engine.Engine:
    try:
        return sa.create_engine(sqlalchemy_url(url), poolclass=sa.pool.NullPool)
    except Exception as e:
        raise StorageError(f"bad database URL {masked_url(url)}: {e}") from None


def _alembic_config(
    connection: sa.engine.Connection, plugin: PluginSchema | None = None, progress: Callable[[str], None] = print
) -> Config:
    config = _new_config()
    config.set_main_option("script_location", MIGRATIONS)
    config.attributes["connection"] = connection
    config.attributes["progress"] = progress  # revisions that take long say how far they are
    if plugin is not None:
        config.set_main_option("path_separator", "os")
        config.set_main_option("version_locations", str(plugin.versions))
        config.attributes["version_table"] = plugin.version_table
        config.attributes["metadata"] = plugin.metadata
    return config


@dataclass
class PluginSchema:
    """A plugin's tables: its metadata and, when it has migrations, the folder of its Alembic revisions.

    A plugin's revisions are stamped in a version table of its own, so its schema moves
    independently of the core's and of other plugins'.
    """

    name: str
    metadata: sa.MetaData
    versions: Path | None = None

    @property
    def version_table(self) -> str:
        """The table holding this plugin's schema revision."""
        return f"alembic_version_{self.name}"

    def head(self) -> str | None:
        """The newest revision of this plugin's migrations, or None without migrations."""
        if self.versions is None:
            return None
        found = revisions.head(self.versions)
        if found is not revisions.UNKNOWN:
            return found
        config = _new_config()
        config.set_main_option("script_location", MIGRATIONS)
        config.set_main_option("path_separator", "os")
        config.set_main_option("version_locations", str(self.versions))
        return _script_directory(config).get_current_head()


def plugin_schemas(plugins: Iterable[Any]) -> list[PluginSchema]:
    """The schemas of the plugins that have tables."""
    schemas = []
    for plugin in plugins:
        metadata = plugin.metadata()
        if metadata is None:
            continue
        versions = plugin.migrations() if hasattr(plugin, "migrations") else None
        schemas.append(PluginSchema(plugin.name, metadata, Path(versions) if versions else None))
    return schemas


def head_revision() -> str:
    """The newest schema revision this version of ci-master knows."""
    found = revisions.head(Path(MIGRATIONS) / "versions")
    if found is not revisions.UNKNOWN and found is not None:
        return found
    head = _script_directory().get_current_head()
    if head is None:
        raise StorageError(f"no schema revisions in {MIGRATIONS}: the installation is incomplete")
    return head


def _connect(url: str) -> sa.engine.Connection:
    try:
        return _engine(url).connect()
    except sa.exc.OperationalError as e:
        reason = str(e.orig).strip().splitlines()[0] if e.orig else str(e)
        raise StorageError(f"database unreachable at {masked_url(url)}: {reason}") from None


def current_revision(url: str) -> str | None:
    """The revision a database is stamped at, or None for an empty database."""
    with _connect(url) as connection:
        found = revisions.stamped(connection)
        if found is not revisions.UNKNOWN:
            return found
        return _migration_context(connection).get_current_revision()


def _copy(source: sa.MetaData) -> sa.MetaData:
    """A private copy of *source* to run DDL from.

    On PostgreSQL create_all adds the buildsets <-> builds foreign keys (use_alter) with
    ALTER TABLE, and SQLAlchemy then marks those constraint objects as never to be written
    inline: a later create_all on SQLite, which has no ALTER ADD CONSTRAINT, would silently
    leave them out.  Working on a copy keeps the shared metadata untouched.
    """
    copy = sa.MetaData(naming_convention=source.naming_convention)
    for table in source.sorted_tables:
        table.to_metadata(copy)
    return copy


def create(url: str, extra_metadata: Iterable[sa.MetaData] = ()) -> None:
    """Create the schema in an empty database and stamp it at the newest revision."""
    with _connect(url) as connection:
        if _migration_context(connection).get_current_revision() is not None:
            raise StorageError(f"database {masked_url(url)} already has a schema; use upgrade-master")
        _copy(metadata).create_all(connection)
        for statement in counters.trigger_ddl(connection.dialect.name):
            connection.exec_driver_sql(statement)
        for extra in extra_metadata:
            extra.create_all(connection)
        connection.commit()
        _stamp(_alembic_config(connection), "head")
        connection.commit()


def create_plugin_tables(url: str, extra_metadata: Iterable[sa.MetaData]) -> None:
    """Create plugin tables that do not exist yet (for plugins without migrations)."""
    with _connect(url) as connection:
        for extra in extra_metadata:
            extra.create_all(connection, checkfirst=True)
        connection.commit()


def _plugin_revision(connection: sa.engine.Connection, schema: PluginSchema) -> str | None:
    found = revisions.stamped(connection, schema.version_table)
    if found is not revisions.UNKNOWN:
        return found
    opts = {"version_table": schema.version_table}
    context = _migration_context(connection, opts)
    return context.get_current_revision()


def prepare_plugin_tables(url: str, schemas: Iterable[PluginSchema]) -> None:
    """Make plugin tables ready: create those missing (stamped at the plugin's newest revision).

    Raises StorageError, saying to run upgrade-master, when a plugin's tables are at an older
    revision than the plugin's migrations reach.
    """
    with _connect(url) as connection:
        for schema in schemas:
            head = schema.head()
            current = _plugin_revision(connection, schema) if head else None
            if head and current is None and not _any_table_exists(connection, schema.metadata):
                schema.metadata.create_all(connection)
                connection.commit()
                _stamp(_alembic_config(connection, schema), "head")
                connection.commit()
            elif head and current != head:
                raise StorageError(
                    f"the tables of plugin {schema.name!r} in {masked_url(url)} are at revision {current}, "
                    f"the plugin needs {head}; run 'ci-master upgrade-master'"
                )
            else:
                schema.metadata.create_all(connection, checkfirst=True)
                connection.commit()


def _any_table_exists(connection: sa.engine.Connection, metadata: sa.MetaData) -> bool:
    inspector = sa.inspect(connection)
    return any(inspector.has_table(name) for name in metadata.tables)


def upgrade_plugin_tables(url: str, schemas: Iterable[PluginSchema], progress: Callable[[str], None] = print) -> None:
    """Run the revisions each plugin's tables lack; create the tables of plugins new to this database."""
    with _connect(url) as connection:
        for schema in schemas:
            head = schema.head()
            current = _plugin_revision(connection, schema) if head else None
            if head is None or current == head:
                continue
            if current is None and not _any_table_exists(connection, schema.metadata):
                continue  # new plugin: prepare_plugin_tables creates it at head below
            config = _alembic_config(connection, schema)
            progress(f"plugin {schema.name}: {current or 'unversioned'} -> {head}")
            began = time.monotonic()
            _upgrade(config, "head")
            connection.commit()
            progress(f"plugin {schema.name}: done in {time.monotonic() - began:.1f}s")
    prepare_plugin_tables(url, schemas)


def check(url: str) -> None:
    """Raise StorageError with what to do unless the database is at the newest revision."""
    current = current_revision(url)
    head = head_revision()
    if current is None:
        raise StorageError(
            f"database {masked_url(url)} has no ci-master schema; run 'ci-master create-master'"
        )
    if current != head:
        raise StorageError(
            f"database {masked_url(url)} is at schema {current}, this ci-master needs {head}; "
            "run 'ci-master upgrade-master'"
        )


def upgrade(url: str, progress: Callable[[str], None] = print, target: str = "head") -> str | None:
    """Migrate a database to *target*, backing up a SQLite file first.  Return the backup path."""
    backup = None
    db_url = sa.engine.make_url(url)
    if db_url.get_backend_name() == "sqlite" and db_url.database and Path(db_url.database).exists():
        backup = f"{db_url.database}.{time.strftime('%Y%m%d-%H%M%S')}.bak"
        shutil.copy2(db_url.database, backup)
        progress(f"backed up {db_url.database} to {backup}")
    with _connect(url) as connection:
        start = _migration_context(connection).get_current_revision()
        script = _script_directory()
        steps = [rev for rev in script.iterate_revisions(target, start)][::-1]
        config = _alembic_config(connection, progress=progress)
        for number, rev in enumerate(steps, 1):
            began = time.monotonic()
            progress(f"[{number}/{len(steps)}] {rev.revision}: {rev.doc}")
            _upgrade(config, rev.revision)
            connection.commit()
            progress(f"[{number}/{len(steps)}] done in {time.monotonic() - began:.1f}s")
        if not steps:
            progress(f"schema already at {start}")
    return backup
