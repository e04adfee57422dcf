"""Drain of a queued outbox into the reference backend on loopback: records per second and the
time to drain 100 000, side by side for batch sizes and for the backend on SQLite and PostgreSQL.

The backend runs as its own process (`cabinet-backend serve`), as it would in production;
the uploader is the cabinet's own (cabinet.sync.Uploader over its own SQLite connection). The one
record per request row is measured on a slice and extrapolated; it is the naive design the batch
protocol replaces.

    .venv/bin/python tools/bench/sync_drain.py [--records 100000] [--no-postgres]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from cabinet.outbox import OutboxQueue  # noqa: E402
from cabinet.store import Store  # noqa: E402
from cabinet.sync import Backoff, Transport, Uploader  # noqa: E402


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


class BackendProcess:
    """`cabinet-backend serve` as its own process, its database migrated, one cabinet registered
    and an operator's API token (`operator_token`)."""

    def __init__(self, folder: Path, db_url: str):
        root = Path(__file__).resolve().parents[2]

        def cli(*args: str, stdin: str | None = None) -> str:
            return subprocess.run([sys.executable, "-m", "backend", "--db", db_url, *args],
                                  cwd=root, capture_output=True, text=True, check=True,
                                  input=stdin).stdout.strip()
        cli("migrate")
        cli("create-user", "bench", "--role", "operator", stdin="bench password\n")
        self.operator_token = cli("api-token", "bench", "--name", "bench")
        self.device_token = cli("add-cabinet", "cabinet-0001")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "backend", "--db", db_url, "serve", "--port", "0"],
            cwd=root, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        self.url = re.search(r"(http://\S+)", line).group(1)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def drain(db_path: Path, backend: BackendProcess, batch: int, limit: int | None = None) -> tuple[int, float]:
    transport = Transport(backend.url, "cabinet-0001", backend.device_token, read_timeout=60)
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
    p.add_argument("--no-postgres", action="store_true")
    args = p.parse_args()
    n = args.records
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        backends = [("SQLite", lambda i: f"sqlite://{folder}/backend-{i}.db")]
        pg = None
        if not args.no_postgres:
            from tools.backend.postgres import PrivatePostgres
            pg = PrivatePostgres().start()
            backends.append(("PostgreSQL", lambda i: _pg_db(pg, f"bench{i}")))
        try:
            case = 0
            for name, url_for in backends:
                for batch in (100, 500, 2000):
                    case += 1
                    db = folder / f"cabinet-{case}.db"
                    queue_records(db, n)
                    backend = BackendProcess(folder, url_for(case))
                    try:
                        _, seconds = drain(db, backend, batch)
                    finally:
                        backend.close()
                    rows.append((f"{name}, batches of {batch}", n / seconds, seconds))
                case += 1
                db = folder / f"cabinet-{case}.db"
                queue_records(db, 2000)
                backend = BackendProcess(folder, url_for(case))
                try:
                    sent, seconds = drain(db, backend, 1, limit=1000)
                finally:
                    backend.close()
                rows.append((f"{name}, one record per request", sent / seconds,
                             n * seconds / sent))
        finally:
            if pg is not None:
                pg.stop()
    print(f"drain of {n} queued sale records to the reference backend on loopback "
          f"(backend in its own process, synchronous=FULL on both sides)")
    print(f"{'uploader':<42}{'records/s':>12}{'time for ' + str(n):>18}")
    for label, rate, seconds in rows:
        print(f"{label:<42}{rate:>12,.0f}{seconds:>17.1f}s")
    print(json.dumps({label: round(seconds, 2) for label, _, seconds in rows}))
    return 0


def _pg_db(pg, name: str) -> str:
    import psycopg

    with psycopg.connect(pg.url, autocommit=True) as db:
        db.execute(f"CREATE DATABASE {name}")
    return pg.url.rsplit("/", 1)[0] + "/" + name


if __name__ == "__main__":
    sys.exit(main())
