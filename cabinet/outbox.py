"""The outbox seen from the uploader's side: its own SQLite connection to the cabinet's database.

The controller appends records (cabinet/store.py, in the same transaction as what they record);
this module only reads them in sequence order, marks them delivered once the backend has
acknowledged them, moves the ones it refuses to the dead-letter table, thins telemetry when the
queue outgrows its disk budget, and prunes delivered records after a while. Sales, inventory,
alarms and command results are never dropped: only telemetry is thinned.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

from .store import utc_now

THINNABLE = ("telemetry",)


@dataclass(frozen=True)
class Batch:
    seqs: list[int]
    bodies: list[str]          # each record's JSON exactly as stored

    def payload(self, cabinet_id: str, max_command_bytes: int | None = None) -> bytes:
        # Joined from the stored JSON text: no decode and re-encode of 100 000 records.
        head = {"cabinet_id": cabinet_id}
        if max_command_bytes is not None:  # how much of the reply may be commands
            head["max_command_bytes"] = max_command_bytes
        head = json.dumps(head)[:-1]
        return (head + ', "records": [' + ", ".join(self.bodies) + "]}").encode()

    def __len__(self) -> int:
        return len(self.seqs)


class OutboxQueue:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._db = sqlite3.connect(self.path, isolation_level=None, timeout=10,
                                   check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=10000")

    def close(self) -> None:
        self._db.close()

    # --- reading -----------------------------------------------------------------------------------
    def next_batch(self, max_records: int, max_bytes: int) -> Batch:
        """The oldest pending records, at most `max_records` and `max_bytes` of JSON (but always
        at least one record, however large, so that one big record cannot stall the queue)."""
        seqs, bodies, size = [], [], 0
        for seq, body in self._db.execute("SELECT seq, body FROM outbox WHERE delivered_at IS NULL "
                                          "ORDER BY seq LIMIT ?", (max_records,)):
            if bodies and size + len(body) + 2 > max_bytes:
                break
            seqs.append(seq)
            bodies.append(body)
            size += len(body) + 2
        return Batch(seqs, bodies)

    # --- acknowledgements --------------------------------------------------------------------------
    def mark_delivered(self, seqs: list[int]) -> None:
        if not seqs:
            return
        now = utc_now()
        with self._transaction():
            self._db.executemany("UPDATE outbox SET delivered_at = ? WHERE seq = ?",
                                 [(now, seq) for seq in seqs])
            self._set(("sync.last_success", now))

    def dead_letter(self, seq: int, reason: str) -> dict[str, Any] | None:
        """Move one record the backend refused out of the queue, keeping it and the reason."""
        with self._transaction():
            row = self._db.execute("SELECT record_id, kind, body FROM outbox "
                                   "WHERE seq = ? AND delivered_at IS NULL", (seq,)).fetchone()
            if row is None:
                return None
            self._db.execute("INSERT OR REPLACE INTO dead_letters (seq, record_id, kind, body, "
                             "reason, at) VALUES (?, ?, ?, ?, ?, ?)",
                             (seq, row[0], row[1], row[2], reason[:1000], utc_now()))
            self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
        return {"seq": seq, "record_id": row[0], "kind": row[1], "reason": reason}

    def set_status(self, key: str, value: Any) -> None:
        with self._transaction():
            self._set((f"sync.{key}", value))

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK when the block raises."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _set(self, item: tuple[str, Any]) -> None:
        self._db.execute("INSERT INTO kv (key, value, updated_at) VALUES (?, ?, ?) "
                         "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
                         "updated_at = excluded.updated_at",
                         (item[0], json.dumps(item[1]), utc_now()))

    # --- housekeeping -----------------------------------------------------------------------------
    def pending_bytes(self) -> int:
        return self._db.execute("SELECT COALESCE(SUM(length(body)), 0) FROM outbox "
                                "WHERE delivered_at IS NULL").fetchone()[0]

    def thin_telemetry(self, budget_bytes: int) -> int:
        """While the pending queue is over budget, drop every second pending telemetry sample
        (halving its resolution, oldest and newest kept). Returns how many were dropped."""
        dropped = 0
        while self.pending_bytes() > budget_bytes:
            seqs = [s for (s,) in self._db.execute(
                "SELECT seq FROM outbox WHERE delivered_at IS NULL AND kind IN "
                f"({','.join('?' * len(THINNABLE))}) ORDER BY seq", THINNABLE)]
            victims = seqs[1:-1:2]
            if not victims:
                break
            with self._transaction():
                self._db.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in victims])
            dropped += len(victims)
        return dropped

    def prune_delivered(self, keep_days: float) -> int:
        before = (datetime.now(timezone.utc) - timedelta(days=keep_days)).isoformat(
            timespec="milliseconds").replace("+00:00", "Z")
        with self._transaction():
            return self._db.execute("DELETE FROM outbox WHERE delivered_at IS NOT NULL "
                                    "AND delivered_at < ?", (before,)).rowcount

    # --- for people --------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        pending, oldest = self._db.execute(
            "SELECT COUNT(*), MIN(created_at) FROM outbox WHERE delivered_at IS NULL").fetchone()
        kinds = dict(self._db.execute("SELECT kind, COUNT(*) FROM outbox "
                                      "WHERE delivered_at IS NULL GROUP BY kind"))
        dead = [dict(zip(("seq", "record_id", "kind", "reason", "at"), row)) for row in
                self._db.execute("SELECT seq, record_id, kind, reason, at FROM dead_letters "
                                 "ORDER BY seq")]
        status = {k.removeprefix("sync."): json.loads(v) for k, v in
                  self._db.execute("SELECT key, value FROM kv WHERE key LIKE 'sync.%'")}
        return {"pending": pending, "pending_by_kind": kinds, "oldest_pending_at": oldest,
                "pending_bytes": self.pending_bytes(), "dead_letters": dead,
                "last_success_at": status.get("last_success"),
                "last_error": status.get("last_error")}
