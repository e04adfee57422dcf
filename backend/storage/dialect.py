"""The few statements that differ between PostgreSQL and SQLite, chosen by the dialect's name
(`connection.dialect.name`): the upsert construct (both speak ON CONFLICT) and the two-argument
min and max."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite


def insert(dialect: str, table: sa.Table):
    module = postgresql if dialect == "postgresql" else sqlite
    return module.insert(table)


def least(dialect: str, a, b):
    # NULL-safe: an hour's first sample has no minimum yet.
    if dialect == "postgresql":
        return sa.func.least(a, b)  # LEAST ignores NULLs
    return sa.func.coalesce(sa.func.min(a, b), a, b)


def greatest(dialect: str, a, b):
    if dialect == "postgresql":
        return sa.func.greatest(a, b)
    return sa.func.coalesce(sa.func.max(a, b), a, b)
