"""The few statements that differ between PostgreSQL and SQLite, chosen by the connection: the
upsert construct (both speak ON CONFLICT) and the two-argument min and max."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite


def insert(connection: sa.Connection, table: sa.Table):
    module = postgresql if connection.dialect.name == "postgresql" else sqlite
    return module.insert(table)


def least(connection: sa.Connection, a, b):
    # NULL-safe: an hour's first sample has no minimum yet.
    if connection.dialect.name == "postgresql":
        return sa.func.least(a, b)  # LEAST ignores NULLs
    return sa.func.coalesce(sa.func.min(a, b), a, b)


def greatest(connection: sa.Connection, a, b):
    if connection.dialect.name == "postgresql":
        return sa.func.greatest(a, b)
    return sa.func.coalesce(sa.func.max(a, b), a, b)
