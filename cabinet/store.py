"""The cabinet's durable state in one SQLite file: session journal, sales, alarms and the outbox.

Durability rules (see FINDINGS): WAL with synchronous=FULL so that a committed sale survives a power
cut; autocommit mode with explicit `BEGIN IMMEDIATE ... COMMIT` so nothing is ever half-written by an
implicit transaction; one connection per thread (the controller's here; the uploader opens its own).
The schema is versioned with PRAGMA user_version and migrated forward at start, after
`PRAGMA quick_check`. A software update may be rolled back (docs/updates.md), so a database
migrated by a newer version is opened as it is when its `schema_floor` says this version can read
it: a migration that only adds (a table, a column with a default) leaves the floor where it is, one
that changes what older code reads raises it to its own number (and the installer then refuses
the release, since its rollback could not read the database).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

MIGRATIONS: list[str] = [
    # 1: the foundation's tables
    """
    CREATE TABLE outbox (
        seq          INTEGER PRIMARY KEY AUTOINCREMENT,  -- cabinet-wide, never reused
        record_id    TEXT NOT NULL UNIQUE,
        kind         TEXT NOT NULL,
        body         TEXT NOT NULL,                      -- JSON: the whole record as sent
        created_at   TEXT NOT NULL,
        delivered_at TEXT
    );
    CREATE INDEX outbox_pending ON outbox (seq) WHERE delivered_at IS NULL;
    CREATE TABLE alarms (
        alarm_id   TEXT PRIMARY KEY,
        kind       TEXT NOT NULL,
        detail     TEXT NOT NULL,
        raised_at  TEXT NOT NULL,
        cleared_at TEXT
    );
    CREATE INDEX alarms_active ON alarms (kind) WHERE cleared_at IS NULL;
    CREATE TABLE sessions (                              -- the journal, written before unlocking
        session_id TEXT PRIMARY KEY,
        state      TEXT NOT NULL,                        -- authorised, open, settling, ended
        body       TEXT NOT NULL,                        -- JSON: authorisation, before_grams, times
        outcome    TEXT,                                 -- sale, inventory, no_sale (when ended)
        updated_at TEXT NOT NULL
    );
    CREATE INDEX sessions_open ON sessions (state) WHERE state != 'ended';
    CREATE TABLE sales (
        session_id TEXT PRIMARY KEY REFERENCES sessions (session_id),
        total_fen  INTEGER NOT NULL,
        body       TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE TABLE inventory (
        session_id TEXT PRIMARY KEY REFERENCES sessions (session_id),
        body       TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE TABLE planogram (                             -- the live planogram, stock included
        id         INTEGER PRIMARY KEY CHECK (id = 1),
        body       TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    """,
    # 2: small named values that must survive a power cut (the cold chain's state)
    """
    CREATE TABLE kv (
        key        TEXT PRIMARY KEY,
        value      TEXT NOT NULL,                        -- JSON
        updated_at TEXT NOT NULL
    );
    """,
    # 3: access codes already used, kept until they expire
    """
    CREATE TABLE used_codes (
        code_id    TEXT PRIMARY KEY,
        expires_at INTEGER NOT NULL,                     -- Unix seconds
        session_id TEXT NOT NULL
    );
    CREATE INDEX used_codes_expiry ON used_codes (expires_at);
    """,
    # 4: sync: records the backend refused, and the commands it sent (each runs at most once)
    """
    CREATE TABLE dead_letters (
        seq        INTEGER PRIMARY KEY,                  -- the record's outbox sequence
        record_id  TEXT NOT NULL,
        kind       TEXT NOT NULL,
        body       TEXT NOT NULL,                        -- the record as it was sent
        reason     TEXT NOT NULL,                        -- the backend's words
        at         TEXT NOT NULL
    );
    CREATE TABLE commands (
        command_id  TEXT PRIMARY KEY,
        type        TEXT NOT NULL,
        state       TEXT NOT NULL,                       -- running, then done/rejected/failed/interrupted
        received_at TEXT NOT NULL,
        finished_at TEXT,
        result      TEXT                                 -- JSON: the result record's body
    );
    CREATE INDEX commands_running ON commands (state) WHERE state = 'running';
    """,
    # 5: face checkout: members' embeddings, sealed with a key kept outside the database
    """
    CREATE TABLE face_members (
        member_id   TEXT PRIMARY KEY,
        sealed      BLOB NOT NULL,                       -- AES-GCM nonce + ciphertext (access/face_vault.py)
        embeddings  INTEGER NOT NULL,
        enrolled_at TEXT NOT NULL
    );
    """,
    # 6: the lowest schema version whose software can still read this database (see above)
    """
    CREATE TABLE schema_floor (readable_from INTEGER NOT NULL);
    INSERT INTO schema_floor VALUES (6);
    """,
]


class StoreError(Exception):
    """The database cannot be used as it is (corrupt, from a newer version, unwritable)."""


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Store:
    def __init__(self, path: str | Path, *, cabinet_id: str, software_version: str):
        self.path = Path(path)
        self.cabinet_id = cabinet_id
        self.software_version = software_version
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Opened by whoever starts the daemon, then used by the controller thread alone
            # (never by two threads at once); the uploader opens its own connection.
            self._db = sqlite3.connect(self.path, isolation_level=None, timeout=10,
                                       check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"{self.path}: cannot open database: {exc}") from None
        self._in_transaction = False
        self._added_records = False
        # Called after a transaction that added outbox records commits (the uploader's wake-up).
        self.on_records: Any = None
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            # Deleted rows are overwritten with zeros, not left in free pages: a member whose face
            # is deleted must leave nothing behind in the file (see checkpoint()).
            self._db.execute("PRAGMA secure_delete=ON")
            result = self._db.execute("PRAGMA quick_check").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise StoreError(f"{self.path}: not a usable SQLite database: {exc}") from None
        if result != "ok":
            self._db.close()
            raise StoreError(f"{self.path}: integrity check failed: {result}")
        self._migrate()

    # --- schema ------------------------------------------------------------------------------------
    @property
    def schema_version(self) -> int:
        return self._db.execute("PRAGMA user_version").fetchone()[0]

    def _migrate(self) -> None:
        current = self.schema_version
        if current > len(MIGRATIONS):
            floor = self._floor()
            if floor is None or floor > len(MIGRATIONS):
                raise StoreError(f"{self.path}: schema version {current} is newer than this "
                                 f"software knows ({len(MIGRATIONS)}) and not readable by it "
                                 f"(floor {floor}); refusing to touch it")
            return   # a newer version's additions: this version reads what it knows (a rollback)
        for version in range(current + 1, len(MIGRATIONS) + 1):
            with self.transaction():
                for statement in _statements(MIGRATIONS[version - 1]):
                    self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version = {version}")

    def _floor(self) -> int | None:
        try:
            return self._db.execute("SELECT max(readable_from) FROM schema_floor").fetchone()[0]
        except sqlite3.Error:
            return None

    # --- transactions ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any exception. Not re-entrant by design:
        one piece of work is one transaction."""
        if self._in_transaction:
            raise RuntimeError("nested transaction")
        self._db.execute("BEGIN IMMEDIATE")
        self._in_transaction = True
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        else:
            self._db.execute("COMMIT")
            if self._added_records and self.on_records is not None:
                self.on_records()
        finally:
            self._in_transaction = False
            self._added_records = False

    def _require_transaction(self) -> None:
        if not self._in_transaction:
            raise RuntimeError("must be called inside Store.transaction()")

    # --- outbox ------------------------------------------------------------------------------------
    def add_outbox(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        """Append a record to the outbox, inside the caller's transaction, so that the record and
        what it records commit together. Returns the record as it will be sent."""
        self._require_transaction()
        self._added_records = True
        record_id = str(uuid.uuid4())
        created_at = utc_now()
        cursor = self._db.execute(
            "INSERT INTO outbox (record_id, kind, body, created_at) VALUES (?, ?, '', ?)",
            (record_id, kind, created_at))
        record = {"record_id": record_id, "seq": cursor.lastrowid, "kind": kind,
                  "cabinet_id": self.cabinet_id, "software_version": self.software_version,
                  "created_at": created_at, "body": body}
        self._db.execute("UPDATE outbox SET body = ? WHERE seq = ?",
                         (json.dumps(record, ensure_ascii=False, sort_keys=True), cursor.lastrowid))
        return record

    def pending_outbox(self, limit: int = 100) -> list[dict[str, Any]]:
        rows = self._db.execute("SELECT body FROM outbox WHERE delivered_at IS NULL "
                                "ORDER BY seq LIMIT ?", (limit,)).fetchall()
        return [json.loads(body) for (body,) in rows]

    def outbox_counts(self) -> dict[str, int]:
        # The pending count walks the partial index only; the last sequence stands for the total
        # (delivered records are pruned, so COUNT(*) would not mean "ever recorded" anyway).
        pending = self._db.execute(
            "SELECT COUNT(*) FROM outbox WHERE delivered_at IS NULL").fetchone()[0]
        last = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
        return {"pending": pending, "last_seq": last[0] if last else 0}

    # --- alarms ------------------------------------------------------------------------------------
    def raise_alarm(self, kind: str, detail: str) -> dict[str, Any]:
        """Record an alarm and its outbox record in one transaction; an alarm of a kind that is
        already active is not raised twice."""
        with self.transaction():
            active = self._db.execute("SELECT alarm_id, raised_at FROM alarms "
                                      "WHERE kind = ? AND cleared_at IS NULL", (kind,)).fetchone()
            if active:
                return {"alarm_id": active[0], "kind": kind, "detail": detail,
                        "raised_at": active[1], "new": False}
            alarm = {"alarm_id": str(uuid.uuid4()), "kind": kind, "detail": detail,
                     "raised_at": utc_now()}
            self._db.execute("INSERT INTO alarms (alarm_id, kind, detail, raised_at) "
                             "VALUES (:alarm_id, :kind, :detail, :raised_at)", alarm)
            self.add_outbox("alarm", {**alarm, "state": "raised"})
        return {**alarm, "new": True}

    def clear_alarm(self, kind: str, by: str | None = None) -> bool:
        """Clear the active alarm of `kind`; `by` names the technician who acknowledged it."""
        with self.transaction():
            row = self._db.execute("SELECT alarm_id, detail FROM alarms "
                                   "WHERE kind = ? AND cleared_at IS NULL", (kind,)).fetchone()
            if not row:
                return False
            now = utc_now()
            self._db.execute("UPDATE alarms SET cleared_at = ? WHERE alarm_id = ?", (now, row[0]))
            record = {"alarm_id": row[0], "kind": kind, "detail": row[1], "cleared_at": now,
                      "state": "cleared"}
            if by is not None:
                record["cleared_by"] = by
            self.add_outbox("alarm", record)
        return True

    def active_alarms(self) -> list[dict[str, Any]]:
        rows = self._db.execute("SELECT alarm_id, kind, detail, raised_at FROM alarms "
                                "WHERE cleared_at IS NULL ORDER BY raised_at").fetchall()
        return [dict(zip(("alarm_id", "kind", "detail", "raised_at"), row)) for row in rows]

    # --- sessions, sales, inventory, planogram ------------------------------------------------------
    def begin_session(self, session: dict[str, Any]) -> None:
        """Journal a new session (committed before the caller opens the lock). A session opened
        by an access code marks the code used in the same transaction: a replay is refused
        even after a power cut that came right after the lock opened."""
        with self.transaction():
            auth = session["authorisation"]
            if auth.get("code_expires_at") is not None:
                self._db.execute("INSERT INTO used_codes (code_id, expires_at, session_id) "
                                 "VALUES (?, ?, ?)", (auth["code_id"], auth["code_expires_at"],
                                                      session["session_id"]))
            self._db.execute("INSERT INTO sessions (session_id, state, body, updated_at) "
                             "VALUES (?, 'authorised', ?, ?)",
                             (session["session_id"], json.dumps(session, ensure_ascii=False),
                              utc_now()))

    def update_session(self, session: dict[str, Any], state: str) -> None:
        with self.transaction():
            self._db.execute("UPDATE sessions SET state = ?, body = ?, updated_at = ? "
                             "WHERE session_id = ? AND state != 'ended'",
                             (state, json.dumps({**session, "state": state}, ensure_ascii=False),
                              utc_now(), session["session_id"]))

    def finish_session(self, session: dict[str, Any], outcome: str,
                       record: dict[str, Any] | None, planogram_json: str | None) -> dict | None:
        """End a session with its one outcome, in one transaction: the sale or inventory row, its
        outbox record, the new stock and the journal's end. A session already ended is left alone
        (returns None), so a replay can never make a second sale. One that was never journaled
        (a forced opening while the disk was full: weighed all the same) is journaled here."""
        with self.transaction():
            row = self._db.execute("SELECT state FROM sessions WHERE session_id = ?",
                                   (session["session_id"],)).fetchone()
            if row is not None and row[0] == "ended":
                return None
            if row is None:
                self._db.execute("INSERT INTO sessions (session_id, state, body, updated_at) "
                                 "VALUES (?, 'settling', ?, ?)",
                                 (session["session_id"], json.dumps(session, ensure_ascii=False),
                                  utc_now()))
            now = utc_now()
            out = None
            if outcome == "sale":
                self._db.execute("INSERT INTO sales (session_id, total_fen, body, created_at) "
                                 "VALUES (?, ?, ?, ?)",
                                 (session["session_id"], record["total_fen"],
                                  json.dumps(record, ensure_ascii=False), now))
                out = self.add_outbox("sale", record)
            elif outcome == "inventory":
                self._db.execute("INSERT INTO inventory (session_id, body, created_at) "
                                 "VALUES (?, ?, ?)",
                                 (session["session_id"], json.dumps(record, ensure_ascii=False), now))
                out = self.add_outbox("inventory", record)
            else:
                out = self.add_outbox("session", {"session_id": session["session_id"],
                                                  "outcome": outcome,
                                                  "authorisation": session["authorisation"],
                                                  "authorised_at": session["authorised_at"]})
            if planogram_json is not None:
                self._save_planogram(planogram_json)
            self._db.execute("UPDATE sessions SET state = 'ended', outcome = ?, updated_at = ? "
                             "WHERE session_id = ?", (outcome, now, session["session_id"]))
        return out

    def unfinished_session(self) -> dict[str, Any] | None:
        row = self._db.execute("SELECT body, state FROM sessions WHERE state != 'ended' "
                               "ORDER BY updated_at DESC LIMIT 1").fetchone()
        return None if row is None else {**json.loads(row[0]), "state": row[1]}

    def planogram_json(self) -> str | None:
        row = self._db.execute("SELECT body FROM planogram WHERE id = 1").fetchone()
        return None if row is None else row[0]

    def save_planogram(self, planogram_json: str) -> None:
        with self.transaction():
            self._save_planogram(planogram_json)

    def _save_planogram(self, planogram_json: str) -> None:
        self._db.execute("INSERT INTO planogram (id, body, updated_at) VALUES (1, ?, ?) "
                         "ON CONFLICT (id) DO UPDATE SET body = excluded.body, "
                         "updated_at = excluded.updated_at", (planogram_json, utc_now()))

    def code_used(self, code_id: str) -> bool:
        return self._db.execute("SELECT 1 FROM used_codes WHERE code_id = ?",
                                (code_id,)).fetchone() is not None

    def forget_codes_expired_before(self, unix_seconds: int) -> int:
        with self.transaction():
            return self._db.execute("DELETE FROM used_codes WHERE expires_at < ?",
                                    (unix_seconds,)).rowcount

    def get_value(self, key: str) -> Any:
        row = self._db.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def set_value(self, key: str, value: Any, record: tuple[str, dict] | None = None) -> None:
        """Set a named value, with an outbox record (kind, body) in the same transaction."""
        with self.transaction():
            self._db.execute("INSERT INTO kv (key, value, updated_at) VALUES (?, ?, ?) "
                             "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
                             "updated_at = excluded.updated_at",
                             (key, json.dumps(value, ensure_ascii=False), utc_now()))
            if record is not None:
                self.add_outbox(*record)

    def report_planogram(self, planogram_json: str, reason: str) -> bool:
        """Send the planogram (products, prices, shelves, stock) to the backend as a `planogram`
        record, unless this very planogram was the last one sent: at every start (so the
        backend learns the stock the cabinet believes) and when it is replaced."""
        return self._report_changed("planogram", {"reason": reason,
                                                  "planogram": json.loads(planogram_json)},
                                    planogram_json)

    def report_layout(self, layout: dict[str, Any]) -> bool:
        """Send the cabinet's doors and zones (what the config says) as a `layout` record, at a
        start when they differ from the last sent: the back office shows them."""
        return self._report_changed("layout", layout, json.dumps(layout, sort_keys=True))

    def _report_changed(self, kind: str, body: dict[str, Any], identity: str) -> bool:
        digest = hashlib.sha256(identity.encode()).hexdigest()
        if self.get_value(f"{kind}.reported") == digest:
            return False
        self.set_value(f"{kind}.reported", digest, (kind, body))
        return True

    def add_record(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        """An outbox record on its own (telemetry)."""
        with self.transaction():
            return self.add_outbox(kind, body)

    # --- commands from the backend ----------------------------------------------------------------
    def claim_command(self, command_id: str, kind: str) -> bool:
        """Mark a command as running before it runs; False when it was seen before (it then
        never runs again, whatever the backend resends)."""
        with self.transaction():
            return self._db.execute(
                "INSERT INTO commands (command_id, type, state, received_at) "
                "VALUES (?, ?, 'running', ?) ON CONFLICT (command_id) DO NOTHING",
                (command_id, kind, utc_now())).rowcount == 1

    def finish_command(self, command_id: str, kind: str, status: str, detail: str,
                       result: dict[str, Any]) -> dict[str, Any]:
        """The command's result and its outbox record, in one transaction."""
        body = {"command_id": command_id, "type": kind, "status": status, "detail": detail,
                "result": result}
        with self.transaction():
            self._db.execute("UPDATE commands SET state = ?, finished_at = ?, result = ? "
                             "WHERE command_id = ?",
                             (status, utc_now(), json.dumps(body, ensure_ascii=False), command_id))
            return self.add_outbox("command_result", body)

    def interrupted_commands(self) -> list[str]:
        """Commands a crash or power cut caught running: reported as interrupted, never rerun
        (a remote unlock that might have opened the door must not open it twice)."""
        ids = [(i, t) for i, t in self._db.execute(
            "SELECT command_id, type FROM commands WHERE state = 'running'")]
        for command_id, kind in ids:
            self.finish_command(command_id, kind, "interrupted",
                                "the cabinet restarted while this command ran", {})
        return [i for i, _ in ids]

    def checkpoint(self) -> bool:
        """Copy the WAL into the database and truncate it to nothing, so that old versions of
        deleted rows do not linger in the -wal file; False when a reader kept it from finishing."""
        busy, _, _ = self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        return busy == 0

    def quick_check(self) -> str:
        return self._db.execute("PRAGMA quick_check").fetchone()[0]

    def sales(self) -> list[dict[str, Any]]:
        return [json.loads(b) for (b,) in
                self._db.execute("SELECT body FROM sales ORDER BY created_at")]

    def close(self) -> None:
        self._db.close()


def _statements(script: str) -> list[str]:
    """Split a migration into statements (executescript() would COMMIT our transaction)."""
    out, buffer = [], ""
    for line in script.splitlines():
        buffer += line.split("--", 1)[0] + "\n"
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                out.append(buffer.strip())
            buffer = ""
    return out
