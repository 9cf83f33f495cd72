"""Alembic revisions of the Bileto plugin's tables (stamped in ``alembic_version_bileto``)."""
