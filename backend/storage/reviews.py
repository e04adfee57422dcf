"""The records a person must look at and the corrections they make.

A sale the cabinet flagged (a shelf it could not explain, no reading, recovered after a power
cut, ended by hand, the door reopened) or an unauthorised removal enters the review queue when it
is stored. Resolving one writes an adjustment, never an edit of the record: `lines` (what was
really taken, priced), `void` (nothing was taken), `refund` (taken, money returned) or `accept`
(the record stands). The adjustment moves the stock counts and the hourly sales rollups at the
sale's own hour, so the charts and the pick lists follow; the record itself stays as the cabinet
sent it, and the CSV export of adjustments lists every correction.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone
from typing import Any, Iterable

import sqlalchemy as sa

from ..protocol import Record
from . import audit, rollups, stock
from .dialect import insert
from .engine import aware, hour_of, iso, utc_now
from .errors import Conflict, NotFound
from .schema import adjustments, records, reviews

# A sale's flags that need no person: none yet (every flag the cabinet sets is a doubt).
QUIET_FLAGS: frozenset[str] = frozenset()


def on_batch(connection: sa.Connection, cabinet_id: str, new: Iterable[Record]) -> None:
    """Queue the new records that need a person."""
    rows = []
    for record in new:
        body, kind = record.body, record.kind.value
        reason = None
        if kind == "sale":
            # (Checked at ingest: a list of objects with a string kind.)
            flags = [f["kind"] for f in body.get("flags") or () if f["kind"] not in QUIET_FLAGS]
            if flags:
                reason = ", ".join(sorted(set(flags)))
        elif kind == "inventory" and body.get("mode") == "unauthorised":
            reason = "unauthorised removal"
        if reason:
            rows.append({"cabinet_id": cabinet_id, "record_id": record.record_id, "kind": kind,
                         "reason": reason[:200], "created_at": record.created_at})
    if rows:
        connection.execute(insert(connection.dialect.name, reviews).on_conflict_do_nothing(),
                           rows)


class Reviews:
    def __init__(self, engine: sa.Engine):
        self.engine = engine

    def queue(self, cabinet_id: str | None, resolved: bool, limit: int) -> list[dict[str, Any]]:
        """Open reviews oldest first (or resolved ones, latest resolved first), each with its
        record and its adjustment."""
        r = reviews.c
        query = (sa.select(reviews, records.c.record, adjustments)
                 .join(records, sa.and_(records.c.cabinet_id == r.cabinet_id,
                                        records.c.record_id == r.record_id))
                 .outerjoin(adjustments, adjustments.c.adjustment_id == r.adjustment_id)
                 .where(r.resolved_at.is_not(None) if resolved else r.resolved_at.is_(None))
                 .order_by(r.resolved_at.desc() if resolved else r.created_at).limit(limit))
        if cabinet_id:
            query = query.where(r.cabinet_id == cabinet_id)
        with self.engine.connect() as connection:
            rows = connection.execute(query).all()
        return [{"cabinet_id": row.cabinet_id, "record_id": row.record_id, "kind": row.kind,
                 "reason": row.reason, "created_at": iso(row.created_at),
                 "resolved_at": iso(row.resolved_at), "record": row.record,
                 "adjustment": _adjustment(row) if row.adjustment_id else None} for row in rows]

    def count_open(self) -> int:
        with self.engine.connect() as connection:
            return connection.execute(sa.select(sa.func.count()).select_from(reviews).where(
                reviews.c.resolved_at.is_(None))).scalar_one()

    def resolve(self, cabinet_id: str, record_id: str, action: str, lines: list[dict],
                note: str, actor: str) -> dict[str, Any]:
        """Resolve a record (queued for review or not: a refund may follow a complaint) with
        an adjustment; a record already resolved is refused (409)."""
        with self.engine.begin() as connection:
            row = connection.execute(sa.select(records.c.record, records.c.created_at).where(
                records.c.cabinet_id == cabinet_id, records.c.record_id == record_id)).first()
            if row is None or row.record["kind"] not in ("sale", "inventory"):
                raise NotFound(f"no sale or inventory record {record_id} at {cabinet_id}")
            done = connection.execute(sa.select(adjustments.c.adjustment_id).where(
                adjustments.c.cabinet_id == cabinet_id,
                adjustments.c.record_id == record_id)).first()
            if done is not None:   # (two at once: the unique index refuses the second)
                raise Conflict(f"{record_id} was resolved already (adjustment "
                               f"{done.adjustment_id})")
            body = row.record["body"]
            kind = row.record["kind"]
            recorded = body.get("lines") or [] if kind == "sale" else []
            if kind == "inventory" and action != "accept":
                raise Conflict("an unauthorised removal is accepted with a note (what happened,"
                               " who pays): the cabinet's own count after it is the stock")
            was, was_fen = Counter(), Counter()
            for line in recorded:
                was[line["sku"]] += line["count"]
                was_fen[line["sku"]] += line["amount_fen"]
            if action == "lines":
                now, now_fen = Counter(), Counter()
                for line in lines:
                    now[line["sku"]] += line["count"]
                    now_fen[line["sku"]] += line["count"] * line["unit_price_fen"]
            elif action == "void":
                now, now_fen = Counter(), Counter()
            elif action == "refund":      # the goods left; the money goes back
                now, now_fen = was, Counter()
            else:                         # accept: the record stands
                now, now_fen = was, was_fen
            units_delta = sum(now.values()) - sum(was.values())
            revenue_delta = sum(now_fen.values()) - sum(was_fen.values())
            made_at = utc_now()
            try:
                adjustment_id = connection.execute(sa.insert(adjustments).values(
                    cabinet_id=cabinet_id, record_id=record_id, action=action,
                    lines=[dict(line) for line in lines], revenue_delta_fen=revenue_delta,
                    units_delta=units_delta, note=note, made_by=actor, made_at=made_at)
                    .returning(adjustments.c.adjustment_id)).scalar_one()
            except sa.exc.IntegrityError:
                raise Conflict(f"{record_id} was resolved already") from None
            # Stock: what was taken beyond what the record says comes off the shelves (for an
            # unauthorised removal the cabinet's snapshot already counts it: nothing moves).
            # Rollups, then stock: the order an upload takes their rows in (no deadlock).
            if kind == "sale":
                _rollup(connection, cabinet_id, aware(row.created_at), was, now, was_fen,
                        now_fen)
            if kind == "sale" and action != "refund":
                stock.move(connection, cabinet_id,
                           {sku: was[sku] - now[sku] for sku in set(was) | set(now)})
            connection.execute(sa.update(reviews).values(
                resolved_at=made_at, adjustment_id=adjustment_id).where(
                reviews.c.cabinet_id == cabinet_id, reviews.c.record_id == record_id))
            audit.write(connection, actor, "resolve", cabinet_id, record_id=record_id,
                        resolution=action, revenue_delta_fen=revenue_delta)
        return {"adjustment_id": adjustment_id, "cabinet_id": cabinet_id,
                "record_id": record_id, "action": action, "lines": lines,
                "revenue_delta_fen": revenue_delta, "units_delta": units_delta, "note": note,
                "made_by": actor, "made_at": iso(made_at)}

    def adjustments_between(self, cabinet_id: str | None, since: datetime,
                            until: datetime) -> list[dict[str, Any]]:
        a = adjustments.c
        query = sa.select(adjustments).where(
            a.made_at >= since.astimezone(timezone.utc), a.made_at < until.astimezone(timezone.utc))
        if cabinet_id:
            query = query.where(a.cabinet_id == cabinet_id)
        with self.engine.connect() as connection:
            return [_adjustment(r) for r in connection.execute(query.order_by(a.made_at))]


def _rollup(connection: sa.Connection, cabinet_id: str, created_at: datetime, was: Counter,
            now: Counter, was_fen: Counter, now_fen: Counter) -> None:
    """The sale's hour in the rollups moves by the adjustment, product by product."""
    changes = {}
    for sku in sorted(set(was) | set(now) | set(was_fen) | set(now_fen)):
        units, revenue = now[sku] - was[sku], now_fen[sku] - was_fen[sku]
        sales = (now[sku] > 0) - (was[sku] > 0)
        if units or revenue or sales:
            changes[(hour_of(created_at), sku[:64])] = [units, revenue, sales]
    rollups.add_sales(connection, cabinet_id, changes)


def _adjustment(r) -> dict[str, Any]:
    return {"adjustment_id": r.adjustment_id, "cabinet_id": r.cabinet_id,
            "record_id": r.record_id, "action": r.action, "lines": r.lines,
            "revenue_delta_fen": r.revenue_delta_fen, "units_delta": r.units_delta,
            "note": r.note, "made_by": r.made_by, "made_at": iso(r.made_at)}
