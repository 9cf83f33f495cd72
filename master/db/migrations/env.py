"""Alembic environment: runs migrations on the connection that master.db.migrate passes in."""

from alembic import context

from master.db.schema import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    version_table="alembic_version",
)
with context.begin_transaction():
    context.run_migrations()
