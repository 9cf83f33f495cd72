"""Alembic migrations of the core schema (linear history, one file per revision)."""
