"""The SQLite store: durability settings, migrations, integrity check, transactions, outbox, alarms."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys

import pytest

from cabinet.store import MIGRATIONS, Store, StoreError


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "cabinet.db", cabinet_id="c-1", software_version="9.9")
    yield s
    s.close()


def test_wal_and_full_sync(store):
    assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert store._db.isolation_level is None  # no implicit transactions


def test_schema_is_migrated_once_and_kept(tmp_path):
    s = Store(tmp_path / "c.db", cabinet_id="c", software_version="1")
    assert s.schema_version == len(MIGRATIONS)
    s.raise_alarm("forced_open", "x")
    s.close()
    again = Store(tmp_path / "c.db", cabinet_id="c", software_version="1")
    assert [a["kind"] for a in again.active_alarms()] == ["forced_open"]
    again.close()


def test_a_newer_schema_is_refused(tmp_path):
    db = sqlite3.connect(tmp_path / "c.db")
    db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    db.close()
    with pytest.raises(StoreError, match="newer than this software"):
        Store(tmp_path / "c.db", cabinet_id="c", software_version="1")


def test_not_a_database(tmp_path):
    (tmp_path / "c.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a usable SQLite database"):
        Store(tmp_path / "c.db", cabinet_id="c", software_version="1")


def test_corruption_is_found_by_quick_check(tmp_path):
    path = tmp_path / "c.db"
    s = Store(path, cabinet_id="c", software_version="1")
    for i in range(300):
        s.raise_alarm(f"kind-{i}", "x" * 200)
    s._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    s.close()
    data = bytearray(path.read_bytes())
    page = 4096
    for number in range(2, len(data) // page):  # break the b-tree page headers
        data[(number - 1) * page] = 0x07
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError):
        Store(path, cabinet_id="c", software_version="1")


def test_transaction_rolls_back_everything_on_error(store):
    with pytest.raises(ZeroDivisionError):
        with store.transaction():
            store.add_outbox("sale", {"total_fen": 500})
            1 / 0
    assert store.outbox_counts() == {"pending": 0, "last_seq": 0}


def test_outbox_needs_a_transaction_and_no_nesting(store):
    with pytest.raises(RuntimeError, match="inside Store.transaction"):
        store.add_outbox("sale", {})
    with store.transaction():
        with pytest.raises(RuntimeError, match="nested"):
            with store.transaction():
                pass


def test_outbox_records_are_complete_and_sequenced(store):
    with store.transaction():
        a = store.add_outbox("sale", {"total_fen": 500, "名": "酥油茶"})
        b = store.add_outbox("telemetry", {"celsius": 4.1})
    assert b["seq"] == a["seq"] + 1
    assert a["cabinet_id"] == "c-1" and a["software_version"] == "9.9"
    assert a["created_at"].endswith("Z") and len(a["record_id"]) == 36
    assert store.pending_outbox() == [a, b]


def test_alarm_raised_once_and_cleared_with_records(store):
    first = store.raise_alarm("forced_open", "door opened while locked")
    second = store.raise_alarm("forced_open", "again")
    assert first["new"] and not second["new"] and first["alarm_id"] == second["alarm_id"]
    assert store.clear_alarm("forced_open") and not store.clear_alarm("forced_open")
    assert store.active_alarms() == []
    states = [r["body"]["state"] for r in store.pending_outbox()]
    assert states == ["raised", "cleared"]


CHILD = """
import os, signal, sys
from cabinet.store import Store
s = Store(sys.argv[1], cabinet_id="c", software_version="1")
with s.transaction():
    s.add_outbox("sale", {"total_fen": 1234})
print("committed", flush=True)
with s.transaction():
    s.add_outbox("sale", {"total_fen": 99})
    os.kill(os.getpid(), signal.SIGKILL)   # the power goes mid-transaction
"""


def test_killed_mid_transaction_keeps_the_commit_and_drops_the_half(tmp_path):
    path = tmp_path / "c.db"
    result = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == -signal.SIGKILL and "committed" in result.stdout
    s = Store(path, cabinet_id="c", software_version="1")
    assert [r["body"]["total_fen"] for r in s.pending_outbox()] == [1234]
    s.close()
