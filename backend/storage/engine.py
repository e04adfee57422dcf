"""The database connection: one SQLAlchemy engine for PostgreSQL (psycopg 3, pooled) or SQLite
(a file), chosen by URL, and the small helpers every storage module shares (times, dialect).

    sqlite:///var/lib/cabinet-backend/backend.db      one small server (the default)
    postgresql://user:password@host/db                 a fleet; several instances may share it
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timezone
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def make_engine(url: str, *, pool_size: int = 10) -> sa.Engine:
    if url.startswith("sqlite:///"):
        # The path is absolute however many slashes lead it: sqlite:///var/x.db and
        # sqlite:////var/x.db are both /var/x.db (a service has no working directory to be
        # relative to).
        path = url[len("sqlite://"):]
        if path != "/:memory:":
            path = "/" + path.lstrip("/")
            # Device-token hashes and every sale: private to the backend's user (SQLite gives
            # its -wal and -shm files the database file's mode).
            try:
                os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
            except FileExistsError:
                pass
        target = sa.engine.URL.create("sqlite", database=path.lstrip("/") if path ==
                                      "/:memory:" else path)
        engine = sa.create_engine(target, connect_args={"timeout": 30,
                                                        "check_same_thread": False},
                                  pool_size=pool_size, max_overflow=pool_size,
                                  poolclass=sa.QueuePool)
        _sqlite_transactions(engine)
        return engine
    if url.startswith(("postgresql://", "postgres://")):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    elif not url.startswith("postgresql+psycopg://"):
        raise ValueError(f"database URL {url!r}: use sqlite:///PATH or postgresql://...")
    # No pre-ping (a round trip on every checkout, 8 % of an upload's cost): a connection that
    # PostgreSQL dropped fails its request with 503 (backend/app.py), and SQLAlchemy then
    # replaces every connection the pool holds. The service runs at most pool_size statements
    # at once (its thread limit), so connections are never opened and closed per request.
    # No JIT: it compiled the back office's few-millisecond queries for 10-20 ms each (a year
    # of the fleet's sales, the review queue), every time, and never paid that back. Times in
    # UTC: psycopg then hands them over with datetime's own UTC, which iso() formats at once
    # (a zoneinfo zone made the fleet list's 3 000 conversions a quarter of its time).
    return sa.create_engine(url, pool_size=pool_size, max_overflow=pool_size,
                            connect_args={"options": "-c jit=off -c TimeZone=UTC"})


def _sqlite_transactions(engine: sa.Engine) -> None:
    """pysqlite begins transactions late and never for reads; a batch must hold the write lock
    from its first statement (BEGIN IMMEDIATE), or two writers deadlock instead of queueing."""

    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")  # an acknowledgement means it is on disk
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def migrate(url: str, revision: str = "head") -> None:
    """Bring the database to `revision` with Alembic (what `cabinet-backend migrate` runs)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["url"] = url
    command.upgrade(config, revision)


def current_revision(engine: sa.Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(config).get_current_head()


# --- times: aware UTC in, ISO-8601 with milliseconds and Z out ------------------------------------

def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def from_unix(at: float | None = None) -> datetime:
    return datetime.fromtimestamp(time.time() if at is None else at, timezone.utc)


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:  # SQLite hands back what it was given, without the zone
        value = value.replace(tzinfo=timezone.utc)
    elif value.tzinfo is not timezone.utc:
        value = value.astimezone(timezone.utc)
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def aware(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


def hour_of(value: datetime) -> datetime:
    return aware(value).astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)


def parse_time(value) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if parsed.tzinfo is None:
            return None
        parsed.astimezone(timezone.utc)  # 0001-01-01T00:30+01:00 has no UTC
    except (ValueError, OverflowError):
        return None
    return parsed
