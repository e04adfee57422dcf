"""The reference backend's storage: one schema on SQLite (a file, the default) or PostgreSQL (a
fleet), chosen by a connection URL: `sqlite:///var/lib/backend.db` or `postgresql://user@host/db`.

The SQL is written once with `?` placeholders and the few dialect differences (auto-increment,
upserts are the same) are kept in DDL. Records are unique on (cabinet_id, record_id): storing a
batch again changes nothing, which is what makes the cabinet's resends harmless.
"""

from __future__ import annotations

import contextlib
import os
import queue
import sqlite3
import threading
from typing import Any, Iterator

SCHEMA = """
CREATE TABLE IF NOT EXISTS cabinets (
    cabinet_id   TEXT PRIMARY KEY,
    token_sha256 TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    last_seen_at TEXT,
    last_seq     BIGINT NOT NULL DEFAULT 0,
    lag_seconds  DOUBLE PRECISION,
    temperature_celsius DOUBLE PRECISION,
    temperature_at TEXT
);
CREATE TABLE IF NOT EXISTS records (
    cabinet_id  TEXT NOT NULL,
    record_id   TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    kind        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    received_at TEXT NOT NULL,
    body        TEXT NOT NULL,
    PRIMARY KEY (cabinet_id, record_id)
);
CREATE INDEX IF NOT EXISTS records_by_kind ON records (cabinet_id, kind, seq);
CREATE TABLE IF NOT EXISTS alarms (
    cabinet_id TEXT NOT NULL,
    alarm_id   TEXT NOT NULL,
    kind       TEXT NOT NULL,
    detail     TEXT NOT NULL,
    raised_at  TEXT,
    cleared_at TEXT,
    PRIMARY KEY (cabinet_id, alarm_id)
);
CREATE TABLE IF NOT EXISTS commands (
    command_seq {serial},
    command_id  TEXT NOT NULL UNIQUE,
    cabinet_id  TEXT NOT NULL,
    type        TEXT NOT NULL,
    args        TEXT NOT NULL,
    issued_at   TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    status      TEXT NOT NULL,
    detail      TEXT,
    result      TEXT,
    finished_at TEXT
);
CREATE INDEX IF NOT EXISTS commands_pending ON commands (cabinet_id, status, command_seq);
CREATE TABLE IF NOT EXISTS enrolments (
    token_sha256 TEXT PRIMARY KEY,
    cabinet_id   TEXT NOT NULL,
    expires_at   TEXT NOT NULL,
    used_at      TEXT
);
"""


class Database:
    """A small pool of connections; `with db.transaction() as tx: tx.execute(sql, params)`."""

    def __init__(self, url: str):
        self.url = url
        if url.startswith("sqlite:///"):
            self.dialect = "sqlite"
            self._path = url[len("sqlite://"):]  # sqlite:///var/lib/x.db -> /var/lib/x.db
            # It holds device-token hashes and every sale: private to the backend's user. SQLite
            # gives its -wal and -shm files the database file's mode.
            try:
                os.close(os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
            except FileExistsError:
                pass
        elif url.startswith(("postgresql://", "postgres://")):
            self.dialect = "postgresql"
        else:
            raise ValueError(f"database URL {url!r}: use sqlite:///PATH or postgresql://...")
        self._pool: queue.LifoQueue = queue.LifoQueue()
        self._lock = threading.Lock()
        with self.transaction() as tx:
            serial = ("INTEGER PRIMARY KEY AUTOINCREMENT" if self.dialect == "sqlite"
                      else "BIGSERIAL PRIMARY KEY")
            for statement in SCHEMA.format(serial=serial).split(";"):
                if statement.strip():
                    tx.execute(statement)

    def _connect(self):
        if self.dialect == "sqlite":
            db = sqlite3.connect(self._path, isolation_level=None, timeout=30,
                                 check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")  # an acknowledgement means it is on disk
            return db
        import psycopg
        return psycopg.connect(self.url, autocommit=True)

    @contextlib.contextmanager
    def transaction(self) -> Iterator["Tx"]:
        try:
            connection = self._pool.get_nowait()
        except queue.Empty:
            connection = self._connect()
        tx = Tx(connection, self.dialect)
        try:
            tx.execute("BEGIN IMMEDIATE" if self.dialect == "sqlite" else "BEGIN")
            try:
                yield tx
            except BaseException:
                tx.execute("ROLLBACK")
                raise
            tx.execute("COMMIT")
        except BaseException:
            connection.close()
            raise
        self._pool.put(connection)

    def close(self) -> None:
        while True:
            try:
                self._pool.get_nowait().close()
            except queue.Empty:
                return


class Tx:
    def __init__(self, connection, dialect: str):
        self.connection, self.dialect = connection, dialect

    def execute(self, sql: str, params: tuple | list = ()) -> Any:
        if self.dialect == "postgresql":
            sql = sql.replace("?", "%s")
        return self.connection.execute(sql, params)

    def rows(self, sql: str, params: tuple | list = ()) -> list[tuple]:
        return list(self.execute(sql, params).fetchall())

    def one(self, sql: str, params: tuple | list = ()) -> tuple | None:
        return self.execute(sql, params).fetchone()
