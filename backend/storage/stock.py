"""What each cabinet holds: a row per product (shelf, names, price, count, par) kept from the
records as they are stored, and the reads the stock page and pick lists make.

Counts come from the newest stock snapshot (the planogram the cabinet reports at every start
and when it is replaced, a restock's or an unauthorised removal's inventory record), less the
units sold and adjusted since. A product
never counted has no count (null), not zero: the pick list says so instead of guessing. Sale
lines also keep the product's name, shelf and price current, which is where the review page
finds a price for lines the cabinet could not work out.
"""

from __future__ import annotations

import functools
from datetime import datetime, timedelta
from typing import Any, Iterable

import sqlalchemy as sa

from ..protocol import MAX_COUNT, MAX_FEN, Record
from . import audit
from .dialect import insert
from .engine import hour_of, iso, utc_now
from .errors import NotFound
from .schema import cabinet_products as products
from .schema import cabinets, planograms, sales_hourly

VELOCITY_DAYS = 14   # the sales a pick list's velocity is measured over
MAX_SHELF = 10 ** 6  # wider than any real shelf number, narrower than the column


def on_batch(connection: sa.Connection, cabinet_id: str, new: Iterable[Record]) -> None:
    """Stock effects of the records stored for the first time, in seq order, as two statements
    of many rows: a snapshot then later sales make a count; sales alone move one."""
    counted: dict[str, dict[str, Any]] = {}     # sku -> snapshot row (count after later sales)
    sold: dict[str, dict[str, Any]] = {}        # sku -> {delta, product facts}
    for record in sorted(new, key=lambda r: r.seq):
        body = record.body
        if record.kind.value == "planogram":     # the cabinet's own products and stock
            for row in planogram_rows(body.get("planogram"), record.created_at):
                counted[row["sku"]] = row
                sold.pop(row["sku"], None)
        snapshot = body.get("stock") if record.kind.value == "inventory" else None
        if isinstance(snapshot, dict):
            for shelf, items in snapshot.items():
                text = str(shelf)
                number = (int(text) if text.isascii() and text.isdigit() and len(text) < 7
                          else None)
                if not (isinstance(items, dict) and _bounded(number, MAX_SHELF)):
                    continue
                for sku, n in items.items():
                    if _bounded(n, MAX_COUNT) and isinstance(sku, str):
                        counted[sku[:64]] = {"sku": sku[:64], "shelf": number, "count": n,
                                             "counted_at": record.created_at}
                        sold.pop(sku[:64], None)
        if record.kind.value == "sale":
            for line in body.get("lines") or ():
                sku = str(line["sku"])[:64]
                facts = _facts(line)
                if sku in counted:
                    if counted[sku]["count"] is not None:
                        counted[sku]["count"] -= line["count"]
                    counted[sku].update({k: v for k, v in facts.items() if v is not None})
                else:
                    entry = sold.setdefault(sku, {"sku": sku, "delta": 0, **facts})
                    entry["delta"] -= line["count"]
                    entry.update({k: v for k, v in facts.items() if v is not None})
    statements = _statements(connection.dialect.name)
    reported = [r for r in new if r.kind.value == "planogram"
                and isinstance(r.body.get("planogram"), dict)]
    if reported:
        newest = max(reported, key=lambda r: r.seq)
        document = newest.body["planogram"]
        connection.execute(statements.planogram, {
            "cabinet_id": cabinet_id, "version": str(document.get("version", ""))[:200],
            "document": document, "reason": str(newest.body.get("reason", ""))[:32],
            "reported_at": newest.created_at})
    if counted:
        connection.execute(statements.count, [
            {"cabinet_id": cabinet_id, "shelf": None, "name_zh": None, "name_en": None,
             "price_fen": None, **row} for row in counted.values()])
    if sold:
        connection.execute(statements.sell, [
            {"cabinet_id": cabinet_id, "shelf": None, "name_zh": None, "name_en": None,
             "price_fen": None, **row} for row in sold.values()])


def _facts(line: dict[str, Any]) -> dict[str, Any]:
    """A product's facts from a sale line or a planogram: what does not fit is left out (a
    cabinet's number too wide for its column must not fail the batch it came in)."""
    shelf, price = line.get("shelf"), line.get("unit_price_fen")
    return {"shelf": shelf if _bounded(shelf, MAX_SHELF) else None,
            "name_zh": str(line["name_zh"])[:200] if line.get("name_zh") else None,
            "name_en": str(line["name_en"])[:200] if line.get("name_en") else None,
            "price_fen": price if _bounded(price, MAX_FEN) else None}


def _bounded(value: Any, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= high


class _Statements:
    def __init__(self, dialect: str):
        c = products.c
        counted = insert(dialect, products).values(
            cabinet_id=sa.bindparam("cabinet_id"), sku=sa.bindparam("sku"),
            shelf=sa.bindparam("shelf"), name_zh=sa.bindparam("name_zh"),
            name_en=sa.bindparam("name_en"), price_fen=sa.bindparam("price_fen"),
            count=sa.bindparam("count"), counted_at=sa.bindparam("counted_at"))
        keep = {"shelf": sa.func.coalesce(counted.excluded.shelf, c.shelf),
                "name_zh": sa.func.coalesce(counted.excluded.name_zh, c.name_zh),
                "name_en": sa.func.coalesce(counted.excluded.name_en, c.name_en),
                "price_fen": sa.func.coalesce(counted.excluded.price_fen, c.price_fen)}
        self.count = counted.on_conflict_do_update(
            index_elements=["cabinet_id", "sku"],
            set_={**keep, "count": counted.excluded.count,
                  "counted_at": counted.excluded.counted_at})
        sold = insert(dialect, products).values(
            cabinet_id=sa.bindparam("cabinet_id"), sku=sa.bindparam("sku"),
            shelf=sa.bindparam("shelf"), name_zh=sa.bindparam("name_zh"),
            name_en=sa.bindparam("name_en"), price_fen=sa.bindparam("price_fen"))
        self.sell = sold.on_conflict_do_update(
            index_elements=["cabinet_id", "sku"],
            set_={**{k: sa.func.coalesce(getattr(sold.excluded, k), getattr(c, k)) for k in keep},
                  "count": c.count + sa.bindparam("delta", type_=sa.BigInteger)})


        reported = insert(dialect, planograms)
        newer = reported.excluded.reported_at >= planograms.c.reported_at
        self.planogram = reported.on_conflict_do_update(
            index_elements=["cabinet_id"],
            set_={k: sa.case((newer, getattr(reported.excluded, k)),
                             else_=getattr(planograms.c, k))
                  for k in ("version", "document", "reason", "reported_at")})


@functools.cache
def _statements(dialect: str) -> _Statements:
    return _Statements(dialect)


def move(connection: sa.Connection, cabinet_id: str, deltas: dict[str, int]) -> None:
    """Counts moved by an adjustment (a product never counted stays uncounted)."""
    for sku, delta in deltas.items():
        if delta:
            connection.execute(sa.update(products).values(count=products.c.count + delta).where(
                products.c.cabinet_id == cabinet_id, products.c.sku == sku))


def planogram_rows(planogram: Any, at: datetime) -> list[dict[str, Any]]:
    """A planogram document's products as rows: names, price, shelf and count (the shelves'
    stock, counted at `at`). Takes the TOML form (product, shelf) and the cabinet's stored form
    (products, shelves)."""
    if not isinstance(planogram, dict):
        return []
    shelf_of, count_of = {}, {}
    shelves = planogram.get("shelf", planogram.get("shelves"))
    products = planogram.get("product", planogram.get("products"))
    for shelf in shelves if isinstance(shelves, list) else ():
        if isinstance(shelf, dict) and isinstance(shelf.get("stock"), dict):
            for sku, n in shelf["stock"].items():
                shelf_of[sku], count_of[sku] = shelf.get("id"), n
    rows = []
    for p in products if isinstance(products, list) else ():
        if not isinstance(p, dict) or not isinstance(p.get("sku"), str):
            continue
        n = count_of.get(p["sku"])
        counted = _bounded(n, MAX_COUNT)
        rows.append({"sku": p["sku"][:64], **_facts(
            {**p, "shelf": shelf_of.get(p["sku"]), "unit_price_fen": p.get("price_fen")}),
            "count": n if counted else None, "counted_at": at if counted else None})
    return rows


class Stock:
    def __init__(self, engine: sa.Engine):
        self.engine = engine

    def products(self, cabinet_ids: list[str] | None = None) -> list[dict[str, Any]]:
        """Every product at the cabinets (all when None), with its sales velocity (units a day
        over the last VELOCITY_DAYS)."""
        since = hour_of(utc_now()) - timedelta(days=VELOCITY_DAYS)
        h = sales_hourly.c
        recent = [h.hour >= since]
        if cabinet_ids is not None:
            recent.append(h.cabinet_id.in_(cabinet_ids))
        velocity = (sa.select(h.cabinet_id, h.sku, sa.func.sum(h.units).label("units"))
                    .where(*recent).group_by(h.cabinet_id, h.sku).subquery())
        query = (sa.select(products, velocity.c.units).select_from(products.outerjoin(
            velocity, sa.and_(velocity.c.cabinet_id == products.c.cabinet_id,
                              velocity.c.sku == products.c.sku)))
                 .order_by(products.c.cabinet_id, products.c.shelf, products.c.sku))
        if cabinet_ids is not None:
            query = query.where(products.c.cabinet_id.in_(cabinet_ids))
        with self.engine.connect() as connection:
            rows = connection.execute(query).all()
        return [{"cabinet_id": r.cabinet_id, "sku": r.sku, "shelf": r.shelf,
                 "name_zh": r.name_zh, "name_en": r.name_en, "price_fen": r.price_fen,
                 "count": r.count, "counted_at": iso(r.counted_at), "par": r.par,
                 "per_day": round(int(r.units or 0) / VELOCITY_DAYS, 2)} for r in rows]

    def planogram(self, cabinet_id: str) -> dict[str, Any]:
        """The newest planogram the cabinet reported."""
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(planograms).where(
                planograms.c.cabinet_id == cabinet_id)).first()
        if row is None:
            raise NotFound(f"{cabinet_id} has not reported a planogram yet")
        return {"cabinet_id": cabinet_id, "version": row.version, "document": row.document,
                "reason": row.reason, "reported_at": iso(row.reported_at)}

    def set_par(self, cabinet_id: str, pars: dict[str, int | None], actor: str) -> None:
        with self.engine.begin() as connection:
            if connection.execute(sa.select(cabinets.c.cabinet_id).where(
                    cabinets.c.cabinet_id == cabinet_id)).first() is None:
                raise NotFound(f"no cabinet {cabinet_id}")
            for sku, par in pars.items():
                connection.execute(insert(connection.dialect.name, products).values(
                    cabinet_id=cabinet_id, sku=sku, par=par).on_conflict_do_update(
                    index_elements=["cabinet_id", "sku"], set_={"par": par}))
            audit.write(connection, actor, "set_par", cabinet_id, pars=pars)


def pick_list(rows: list[dict[str, Any]], days_ahead: float) -> list[dict[str, Any]]:
    """What to bring for each product with a par level: enough to fill it to par after the
    sales expected before the visit (velocity x days ahead). Products never counted are listed
    with `bring` None: someone must count them."""
    out = []
    for r in rows:
        if r["par"] is None:
            continue
        if r["count"] is None:
            out.append({**r, "expected_sales": None, "bring": None})
            continue
        expected = round(r["per_day"] * days_ahead, 1)
        left = max(0.0, max(r["count"], 0) - expected)
        out.append({**r, "expected_sales": expected,
                    "bring": max(0, round(r["par"] - left))})
    return out
