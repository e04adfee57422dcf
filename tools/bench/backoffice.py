"""The back office at fleet size: every page's server time, with demo history of N cabinets
(tools/backoffice_demo.py) in PostgreSQL, and the sales page for a year of the whole fleet from
the rollups side by side with the same figures scanned from the sale records.

    .venv/bin/python tools/bench/backoffice.py [--cabinets 1000] [--days 120] \\
        [--sales-per-day 42] [--repeat 20]                    # about 5 million sales
    .venv/bin/python tools/bench/backoffice.py --db postgresql://… --no-fill   # an existing one

A page's server time is the sum of the requests the page makes when it opens (the same ones
backend/office/js makes), each timed on loopback against one backend worker; printed as p50 and
p95 over `--repeat` openings, with the slowest request of the page. Benchmarks measure; they
never assert. The machine's load is printed with the figures.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tools.bench.common import percentile  # noqa: E402

TZ = "Asia/Shanghai"


def pages(cabinet: str, route: list[str], now: datetime) -> dict[str, list[str]]:
    """Each page's requests as it opens (backend/office/js/*.js)."""
    def period(days: float) -> str:
        return (f"since={(now - timedelta(days=days)).isoformat()}"
                f"&until={now.isoformat()}").replace("+", "%2B")
    before = (f"since={(now - timedelta(days=14)).isoformat()}"
              f"&until={(now - timedelta(days=7)).isoformat()}").replace("+", "%2B")
    year_before = (f"since={(now - timedelta(days=730)).isoformat()}"
                   f"&until={(now - timedelta(days=365)).isoformat()}").replace("+", "%2B")
    o = "/v1/operator"
    chosen = "&".join(f"cabinet_id={c}" for c in route)
    return {
        "fleet": [f"{o}/cabinets", f"{o}/sales/summary?{period(1)}&tz={TZ}"],
        "cabinet": [f"{o}/cabinets", f"{o}/cabinets/{cabinet}/alarms?limit=30",
                    f"{o}/cabinets/{cabinet}/commands?limit=20",
                    f"{o}/sales/transactions?{period(7)}&cabinet_id={cabinet}&limit=20",
                    f"{o}/cabinets/{cabinet}/telemetry?{period(1)}"],
        "cabinet, 7 days": [f"{o}/cabinets/{cabinet}/climate?{period(7)}"],
        "planogram": [f"{o}/cabinets/{cabinet}/planogram", f"{o}/cabinets/{cabinet}/commands?limit=50"],
        "sales, 7 days": [f"{o}/cabinets", f"{o}/sales/summary?{period(7)}&tz={TZ}",
                          f"{o}/sales/summary?{before}&tz={TZ}",
                          f"{o}/sales/transactions?{period(7)}&limit=50"],
        "sales, a year": [f"{o}/sales/summary?{period(365)}&tz={TZ}",
                          f"{o}/sales/summary?{year_before}&tz={TZ}",
                          f"{o}/sales/transactions?{period(365)}&limit=50"],
        "sales, a year, one cabinet": [
            f"{o}/sales/summary?{period(365)}&tz={TZ}&cabinet_id={cabinet}",
            f"{o}/sales/transactions?{period(365)}&cabinet_id={cabinet}&limit=50"],
        "review": [f"{o}/reviews?limit=20"] + [f"{o}/stock?cabinet_id={c}" for c in route[:5]],
        "stock (route of 10)": [f"{o}/pick-list?{chosen}&days_ahead=1", f"{o}/stock?{chosen}"],
        "alerts": [f"{o}/alerts/rules", f"{o}/alerts"],
        "people": [f"{o}/users", f"{o}/audit?limit=200"],
    }


def measure(url: str, token: str, repeat: int, now: datetime) -> None:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    cabinets = session.get(url + "/v1/operator/cabinets", timeout=60).json()["cabinets"]
    ids = [c["cabinet_id"] for c in cabinets]
    print(f"{len(ids)} cabinets; each page opened {repeat} times (after one warm-up)\n")
    print(f"{'page':28} {'p50 ms':>8} {'p95 ms':>8}   slowest request (p95 ms)")
    for name, requests_ in pages(ids[0], ids[:10], now).items():
        totals, each = [], {r: [] for r in requests_}
        for n in range(repeat + 1):
            total = 0.0
            for path in requests_:
                started = time.perf_counter()
                reply = session.get(url + path, timeout=120)
                spent = time.perf_counter() - started
                if reply.status_code != 200:
                    raise SystemExit(f"{path}: HTTP {reply.status_code} {reply.text[:200]}")
                if n:
                    each[path].append(spent)
                total += spent
            if n:
                totals.append(total)
        slowest = max(each, key=lambda r: percentile(each[r], 95))
        print(f"{name:28} {percentile(totals, 50) * 1000:8.0f} {percentile(totals, 95) * 1000:8.0f}"
              f"   {slowest.split('?')[0]} ({percentile(each[slowest], 95) * 1000:.0f})")


def scan_year(db_url: str, now: datetime) -> float:
    """The year's revenue by product from the sale records themselves (what the rollups save)."""
    import sqlalchemy as sa

    engine = sa.create_engine(db_url.replace("postgresql://", "postgresql+psycopg://", 1))
    started = time.perf_counter()
    with engine.connect() as connection:
        connection.execute(sa.text("""
            SELECT line->>'sku', sum((line->>'count')::bigint), sum((line->>'amount_fen')::bigint)
            FROM records, jsonb_array_elements(record->'body'->'lines') AS line
            WHERE kind = 'sale' AND created_at >= :since AND created_at < :until
            GROUP BY 1"""), {"since": now - timedelta(days=365), "until": now}).all()
    engine.dispose()
    return time.perf_counter() - started


def vacuum(db: str) -> None:
    import psycopg

    with psycopg.connect(db, autocommit=True) as connection:
        connection.execute("VACUUM ANALYZE")


def fill_in_parallel(db: str, args, now: datetime) -> None:
    """tools/backoffice_demo.py in --jobs processes, each a share of the cabinets."""
    import subprocess

    from backend.storage.engine import migrate

    migrate(db)     # once, before the processes race to do it
    share = -(-args.cabinets // args.jobs)
    demo = Path(__file__).resolve().parents[1] / "backoffice_demo.py"
    jobs = [subprocess.Popen([sys.executable, str(demo), "--db", db, "--first", str(first),
                              "--cabinets", str(min(share, args.cabinets - first + 1)),
                              "--days", str(args.days), "--sales-per-day",
                              str(args.sales_per_day), "--until", now.isoformat()],
                             stdout=subprocess.PIPE, text=True)
            for first in range(1, args.cabinets + 1, share)]
    for job in jobs:
        out, _ = job.communicate()
        if job.returncode:
            raise SystemExit(f"demo fill failed: {out[-500:]}")
        print(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cabinets", type=int, default=1000)
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--sales-per-day", type=float, default=42.0)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--db", help="an existing PostgreSQL database (default: a private one, "
                        "removed at the end)")
    parser.add_argument("--no-fill", action="store_true", help="use --db as it is")
    parser.add_argument("--jobs", type=int, default=2, help="processes filling the demo")
    args = parser.parse_args(argv)
    print("command:", " ".join(["tools/bench/backoffice.py", *(argv or sys.argv[1:])]))
    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f} at the start")
    from backend.app import create_app
    from backend.server import ThreadedServer
    from backend.storage import Storage
    from tools.backend.postgres import PrivatePostgres

    server = None if args.db else PrivatePostgres().start()
    db = args.db or server.url
    try:
        now = datetime.now(timezone.utc)
        if not args.no_fill:
            started = time.perf_counter()
            fill_in_parallel(db, args, now)
            print(f"demo history filled in {time.perf_counter() - started:.0f} s")
            # What autovacuum would do in the next minutes anyway, done before measuring so
            # that it does not run during the measurement.
            started = time.perf_counter()
            vacuum(db)
            print(f"VACUUM ANALYZE: {time.perf_counter() - started:.0f} s")
        storage = Storage(db)
        name = f"bench-{os.getpid()}"
        storage.people.create_user(name, "admin", "bench password 1", "bench")
        token = storage.people.new_token(name, "api", "bench", None, "bench")["token"]
        backend = ThreadedServer(create_app(storage, alert_settings=None)).start()
        try:
            measure(backend.url, token, args.repeat, now)
            print(f"\nthe year's sales by product scanned from the records: "
                  f"{scan_year(db, now) * 1000:.0f} ms (the rollups answer the same)")
        finally:
            backend.close()
            storage.close()
        print(f"load at the end: {os.getloadavg()[0]:.2f}")
    finally:
        if server is not None:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
