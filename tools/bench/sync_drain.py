"""Drain of a queued outbox into the backend on loopback: records per second and the time to
drain 100 000 from one cabinet, side by side: today's backend (backend/) and the one it replaced
(tools/bench/backends.py), on SQLite and PostgreSQL, for batch sizes.

Each backend runs as its own process, as it would in production; the uploader is the cabinet's own
(cabinet.sync.Uploader over its own SQLite connection), draining a copy of the same queue.

    .venv/bin/python tools/bench/sync_drain.py [--records 100000] [--batches 500,2000]
        [--no-postgres] [--only new|old]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from cabinet.outbox import OutboxQueue  # noqa: E402
from cabinet.store import Store  # noqa: E402
from cabinet.sync import Backoff, Transport, Uploader  # noqa: E402
from tools.bench.backends import NewBackend, OldBackend, pg_database  # noqa: E402


def queue_records(path: Path, n: int) -> None:
    """n sale-sized records, committed in chunks (how they got there does not matter here)."""
    store = Store(path, cabinet_id="cabinet-0001", software_version="bench")
    for start in range(0, n, 5000):
        with store.transaction():
            for i in range(start, min(n, start + 5000)):
                store.add_outbox("sale", {
                    "session_id": str(uuid.uuid4()), "total_fen": 550,
                    "lines": [{"sku": "water-550ml", "count": 1, "unit_price_fen": 200, "amount_fen": 200},
                              {"sku": "tea-500ml", "count": 1, "unit_price_fen": 350, "amount_fen": 350}],
                    "flags": [], "authorisation": {"method": "qr", "subject": f"acct-{i}",
                                                   "role": "shopper"}})
    store.close()


def drain(db_path: Path, backend, batch: int, limit: int | None = None) -> tuple[int, float]:
    token = backend.register(["cabinet-0001"])["cabinet-0001"]
    transport = Transport(backend.url, "cabinet-0001", token, read_timeout=60)
    up = Uploader(OutboxQueue(db_path), transport, lambda e: None, cabinet_id="cabinet-0001",
                  max_records=batch, max_bytes=4 << 20, backoff=Backoff(base=0.01, cap=0.1))
    up._housekept = time.monotonic() + 1e9  # housekeeping is not what is measured
    sent = 0
    started = time.perf_counter()
    while limit is None or sent < limit:
        before = up.outbox.stats()["pending"] if limit else None
        if up.step() == up.idle_seconds:
            break
        if limit:
            sent += before - up.outbox.stats()["pending"]
    elapsed = time.perf_counter() - started
    pending = up.outbox.stats()["pending"]
    up.outbox.close()
    transport.close()
    if pending and limit is None:
        raise RuntimeError(f"{pending} records not delivered")
    return sent, elapsed


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=100_000)
    p.add_argument("--batches", default="500,2000", help="batch sizes, comma-separated")
    p.add_argument("--no-postgres", action="store_true")
    p.add_argument("--only", choices=("new", "old"))
    args = p.parse_args()
    n = args.records
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        queued = folder / "queued.db"
        queue_records(queued, n)
        backends = [("SQLite", lambda i: f"sqlite://{folder}/backend-{i}.db")]
        pg = None
        if not args.no_postgres:
            from tools.backend.postgres import PrivatePostgres
            pg = PrivatePostgres().start()
            backends.append(("PostgreSQL", lambda i: pg_database(pg, f"bench{i}")))
        kinds = [k for k in (OldBackend, NewBackend)
                 if args.only is None or (k is NewBackend) == (args.only == "new")]
        try:
            case = 0
            for name, url_for in backends:
                for batch in (int(b) for b in args.batches.split(",")):
                    for kind in kinds:
                        case += 1
                        db = folder / f"cabinet-{case}.db"
                        shutil.copy(queued, db)  # the same queue for every backend
                        backend = kind(url_for(case))
                        try:
                            _, seconds = drain(db, backend, batch)
                        finally:
                            backend.close()
                        rows.append((f"{name}, batches of {batch}, {kind.label.split(' (')[0]}",
                                     n / seconds, seconds))
        finally:
            if pg is not None:
                pg.stop()
    print(f"drain of {n} queued sale records from one cabinet to the backend on loopback "
          f"(backend in its own process, synchronous=FULL on both sides; {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.1f}); old = {OldBackend.label}, new = {NewBackend.label}")
    print(f"{'uploader':<58}{'records/s':>12}{'time for ' + str(n):>18}")
    for label, rate, seconds in rows:
        print(f"{label:<58}{rate:>12,.0f}{seconds:>17.1f}s")
    print(json.dumps({label: round(seconds, 2) for label, _, seconds in rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
