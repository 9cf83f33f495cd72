"""Storage: the schema, its migrations and the two backends (SQLite and PostgreSQL).

Storage knows tables and SQL, never resource types: the data API builds SQLAlchemy Core
statements against the tables declared in :mod:`master.db.schema` and hands them to a
backend providing :class:`master.db.interfaces.IStorage`.
"""
