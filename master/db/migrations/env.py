"""Alembic environment: runs migrations on the connection that master.db.migrate passes in."""

from alembic import context

from master.db.schema import metadata

# master.db.migrate runs plugins' revisions through this same environment, with the
# plugin's own version table and metadata in the config's attributes
attributes = context.config.attributes
connection = attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=attributes.get("metadata", metadata),
    render_as_batch=connection.dialect.name == "sqlite",
    version_table=attributes.get("version_table", "alembic_version"),
)
with context.begin_transaction():
    context.run_migrations()
