"""Fill a backend with simulated cabinets and months of plausible history, so that the back
office can be seen and measured at fleet size:

    .venv/bin/python tools/backoffice_demo.py --db sqlite:///demo.db --cabinets 20 --days 90
    .venv/bin/python tools/backoffice_demo.py --db postgresql://… --cabinets 1000 --days 120 \\
        --sales-per-day 42                                  # about 5 million sales

Each cabinet sends what a real one would (backend/protocol.py's records, through the backend's
own ingest, so the rollups are the ones real traffic makes): sales with a daily rhythm (breakfast,
lunch, the evening; a hospital cabinet also at night) and a weekly one (government buildings
quiet at weekends), one to three lines each from config/planogram.toml; a restock every few days;
hourly temperature around the setpoint with door openings and compressor duty; now and then a
held-open or forced-open alarm, and a sale flagged for review; the planogram reported at the
start, and par levels at its stock. The same seed gives the same
history. The database is migrated first; cabinets are registered if new (their device tokens
are not printed: `cabinet-backend add-cabinet` replaces one).
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
import tomllib
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from backend.storage import Storage  # noqa: E402
from backend.storage.engine import migrate  # noqa: E402

PLANOGRAM = Path(__file__).resolve().parents[1] / "config" / "planogram.toml"
# The share of a day's sales in each hour, before noise: office (government buildings) and
# hospital (open all night) cabinets.
OFFICE_HOURS = [0, 0, 0, 0, 0, 0, 1, 6, 9, 5, 3, 4, 7, 5, 2, 3, 3, 2, 2, 1, 1, 0, 0, 0]
HOSPITAL_HOURS = [2, 1, 1, 1, 1, 1, 2, 4, 5, 4, 3, 4, 5, 4, 3, 3, 3, 3, 4, 4, 3, 3, 2, 2]
BATCH = 500


def iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class DemoCabinet:
    """One cabinet's history, record by record, in time order."""

    def __init__(self, cabinet_id: str, products: list[dict], rng: random.Random,
                 sales_per_day: float):
        self.cabinet_id, self.products, self.rng = cabinet_id, products, rng
        self.hospital = rng.random() < 0.3
        self.rhythm = HOSPITAL_HOURS if self.hospital else OFFICE_HOURS
        self.sales_per_day = sales_per_day * rng.uniform(0.6, 1.4)
        self.setpoint = rng.choice([4.0, 4.0, 5.0, 3.0])
        self.seq = 0
        self.weights = [rng.uniform(0.3, 3.0) for _ in products]

    def record(self, kind: str, at: datetime, body: dict) -> dict:
        self.seq += 1
        return {"record_id": str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
                "seq": self.seq, "kind": kind, "cabinet_id": self.cabinet_id,
                "software_version": "0.1.0", "created_at": iso(at), "body": body}

    def day(self, start: datetime) -> list[dict]:
        """The records of the day starting at `start` (local midnight, as a UTC time)."""
        out: list[dict] = []
        rng = self.rng
        weekend = start.astimezone(timezone(timedelta(hours=8))).weekday() >= 5
        expected = self.sales_per_day * (0.45 if weekend and not self.hospital else 1.0)
        total = sum(self.rhythm)
        doors_by_hour = [0] * 24
        for hour in range(24):
            mean = expected * self.rhythm[hour] / total
            for _ in range(_poisson(rng, mean)):
                at = start + timedelta(hours=hour, seconds=rng.uniform(0, 3599))
                doors_by_hour[hour] += 1
                out.append(self.sale(at))
            if hour == 10 and rng.random() < 0.35:
                out.append(self.restock(start + timedelta(hours=hour, minutes=rng.uniform(0, 50))))
        for hour in range(24):
            at = start + timedelta(hours=hour, minutes=rng.uniform(0, 2))
            opened = doors_by_hour[hour] > 0
            celsius = self.setpoint + rng.gauss(0, 0.4) + (0.6 * min(doors_by_hour[hour], 4) / 4)
            out.append(self.record("telemetry", at, {
                "celsius": round(celsius, 2), "setpoint_celsius": self.setpoint,
                "compressor": rng.random() < 0.4, "heater": False,
                "compressor_duty": round(min(1.0, 0.25 + 0.08 * doors_by_hour[hour]
                                             + rng.uniform(-0.05, 0.05)), 3),
                "compressor_on_seconds_total": 0.0, "compressor_starts": 0,
                "door_open": opened, "sampled_at": iso(at)}))
        if rng.random() < 0.03:
            out.extend(self.alarm(start + timedelta(hours=rng.uniform(7, 20)),
                                  rng.choice(["held_open", "forced_open"])))
        out.sort(key=lambda r: r["created_at"])
        for n, r in enumerate(out):
            r["seq"] = self.seq - len(out) + n + 1
        return out

    def sale(self, at: datetime) -> dict:
        rng = self.rng
        chosen = rng.choices(range(len(self.products)), weights=self.weights,
                             k=rng.choice([1, 1, 1, 2, 2, 3]))
        lines = []
        for index in sorted(set(chosen)):
            p = self.products[index]
            count = chosen.count(index)
            lines.append({"sku": p["sku"], "shelf": index % 4 + 1, "count": count,
                          "name_zh": p["name_zh"], "name_bo": p.get("name_bo"),
                          "name_en": p["name_en"], "unit_price_fen": p["price_fen"],
                          "amount_fen": p["price_fen"] * count})
        grams = {line["shelf"]: 0.0 for line in lines}
        for line in lines:
            grams[line["shelf"]] += self.products[[p["sku"] for p in self.products]
                                                  .index(line["sku"])]["unit_grams"] * line["count"]
        shelves = []
        for shelf, taken in sorted(grams.items()):
            before = round(rng.uniform(3000, 9000), 1)
            shelves.append({"shelf": shelf, "before_grams": before,
                            "after_grams": round(before - taken + rng.gauss(0, 1), 1),
                            "difference_grams": round(-taken, 1), "status": "explained"})
        flags = []
        if rng.random() < 0.01:
            flags.append({"kind": "ambiguous", "shelf": shelves[0]["shelf"],
                          "detail": "two ways to explain the weight"})
        opened = at - timedelta(seconds=rng.uniform(10, 60))
        return self.record("sale", at, {
            "session_id": str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
            "authorisation": {"method": rng.choice(["qr", "qr", "face", "phone"]),
                              "subject": f"acct-{rng.randrange(1, 4000)}", "role": "shopper"},
            "authorised_at": iso(opened - timedelta(seconds=3)), "door_opened_at": iso(opened),
            "door_closed_at": iso(at - timedelta(seconds=1)), "settled_at": iso(at),
            "shelves": shelves, "flags": flags, "planogram_version": "example-1",
            "lines": lines, "total_fen": sum(line["amount_fen"] for line in lines)})

    def restock(self, at: datetime) -> dict:
        stock = {str(s): {p["sku"]: self.rng.randrange(4, 12) for i, p in
                          enumerate(self.products) if i % 4 + 1 == s} for s in range(1, 5)}
        return self.record("inventory", at, {
            "session_id": str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
            "authorisation": {"method": "qr", "subject": "tech-dawa", "role": "technician"},
            "mode": "restock", "shelves": [], "flags": [], "stock": stock,
            "door_opened_at": iso(at), "door_closed_at": iso(at + timedelta(minutes=6)),
            "settled_at": iso(at + timedelta(minutes=6))})

    def alarm(self, at: datetime, kind: str) -> list[dict]:
        alarm_id = f"{kind}-{self.seq}"
        detail = {"held_open": "door open for over 60 s",
                  "forced_open": "door opened while locked"}[kind]
        raised = self.record("alarm", at, {"alarm_id": alarm_id, "kind": kind, "state": "raised",
                                           "detail": detail, "raised_at": iso(at)})
        cleared_at = at + timedelta(minutes=self.rng.uniform(1, 90))
        cleared = self.record("alarm", cleared_at, {
            "alarm_id": alarm_id, "kind": kind, "state": "cleared", "detail": detail,
            "cleared_at": iso(cleared_at)})
        return [raised, cleared]


def _poisson(rng: random.Random, mean: float) -> int:
    if mean <= 0:
        return 0
    if mean > 30:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, k, p = math.exp(-mean), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def fill(db_url: str, cabinets: int, days: int, sales_per_day: float, seed: int = 1,
         until: datetime | None = None, out=sys.stdout, first_cabinet: int = 1
         ) -> dict[str, int]:
    """Send `days` days of history, ending at `until` (now), from `cabinets` cabinets
    (demo-NNNN from `first_cabinet` on)."""
    migrate(db_url)
    storage = Storage(db_url)
    planogram = tomllib.loads(PLANOGRAM.read_text())
    products = planogram["product"]
    par = {sku: n for shelf in planogram["shelf"] for sku, n in shelf["stock"].items()}
    until = until or datetime.now(timezone.utc)
    # Days start at midnight in China (UTC+8), where these cabinets stand.
    first = (until.astimezone(timezone(timedelta(hours=8))).replace(
        hour=0, minute=0, second=0, microsecond=0) - timedelta(days=days - 1))
    known = {c["cabinet_id"] for c in storage.fleet.cabinets()}
    counts = {"sale": 0, "inventory": 0, "telemetry": 0, "alarm": 0, "planogram": 0}
    started = time.monotonic()
    try:
        for n in range(first_cabinet, first_cabinet + cabinets):
            cabinet_id = f"demo-{n:04d}"
            if cabinet_id not in known:
                storage.fleet.add_cabinet(cabinet_id, actor="demo")
            cabinet = DemoCabinet(cabinet_id, products, random.Random(f"{seed}-{cabinet_id}"),
                                  sales_per_day)
            # As a real cabinet does at its start: its planogram, stock included.
            pending: list[dict] = [cabinet.record("planogram", first, {
                "reason": "start", "planogram": planogram})]
            for d in range(days):
                start = first + timedelta(days=d)
                pending.extend(r for r in cabinet.day(start) if r["created_at"] <= iso(until))
                while len(pending) >= BATCH:
                    _send(storage, cabinet_id, pending[:BATCH], counts)
                    del pending[:BATCH]
            if pending:
                _send(storage, cabinet_id, pending, counts)
            storage.stock.set_par(cabinet_id, par, "demo")
            if n % 10 == 0 or n == first_cabinet + cabinets - 1:
                rate = sum(counts.values()) / (time.monotonic() - started)
                print(f"{n - first_cabinet + 1}/{cabinets} cabinets, {counts['sale']} sales, "
                      f"{sum(counts.values())} records ({rate:,.0f}/s)", file=out, flush=True)
    finally:
        storage.close()
    return counts


def _send(storage: Storage, cabinet_id: str, records: list[dict], counts: dict) -> None:
    rejected, _ = storage.receive(cabinet_id, records, None)
    if rejected:
        raise SystemExit(f"the backend refused demo records: {rejected[:3]}")
    for r in records:
        counts[r["kind"]] += 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", required=True, help="the backend's database URL "
                        "(sqlite:///FILE or postgresql://…)")
    parser.add_argument("--cabinets", type=int, default=20)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--sales-per-day", type=float, default=40.0,
                        help="a cabinet's mean sales on a weekday (each cabinet varies)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--first", type=int, default=1,
                        help="the first cabinet's number (to fill in several processes)")
    parser.add_argument("--until", type=datetime.fromisoformat, default=None,
                        help="the history's end, with its zone (default: now)")
    args = parser.parse_args(argv)
    if args.cabinets < 1 or args.days < 1 or args.sales_per_day < 0:
        parser.error("--cabinets and --days must be at least 1, --sales-per-day not negative")
    counts = fill(args.db, args.cabinets, args.days, args.sales_per_day, args.seed,
                  until=args.until, first_cabinet=args.first)
    print(f"done: {counts['sale']} sales, {counts['inventory']} restocks, "
          f"{counts['telemetry']} temperature samples, {counts['alarm']} alarm records")
    return 0


if __name__ == "__main__":
    sys.exit(main())
