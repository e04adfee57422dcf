"""Cabinets and their records: registration and enrolment, a batch stored as one transaction of
set-based statements, the side effects of new records, the hourly rollups, and the operators'
reads. Side effects and rollups apply to records stored for the first time only, so a resent
batch changes nothing.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Iterable

import sqlalchemy as sa
from pydantic import ValidationError

from ..protocol import Record, RecordKind
from . import audit
from .dialect import insert, least, greatest
from .errors import Forbidden
from .engine import aware, hour_of, iso, parse_time, utc_now
from .schema import alarms, cabinets, climate_hourly, commands, enrolments, records, sales_hourly


KINDS = [k.value for k in RecordKind]
# How long a device token checked against the database is believed without asking again. Every
# upload and long-poll presents it; a token replaced through this instance stops working at once,
# through another instance of the service within this time.
TOKEN_CACHE_SECONDS = 30.0


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Fleet:
    def __init__(self, engine: sa.Engine, token_cache_seconds: float = TOKEN_CACHE_SECONDS):
        self.engine = engine
        self.token_cache_seconds = token_cache_seconds
        # cabinet id -> (hash of the device token last seen valid, until when to believe it)
        self._verified: dict[str, tuple[str, float]] = {}

    # --- cabinets ---------------------------------------------------------------------------------
    def add_cabinet(self, cabinet_id: str, actor: str = "system") -> str:
        """Register a cabinet (or give it a new token); its device token, shown once."""
        token = secrets.token_urlsafe(32)
        with self.engine.begin() as connection:
            connection.execute(insert(connection, cabinets).values(
                cabinet_id=cabinet_id, token_sha256=token_hash(token), created_at=utc_now(),
            ).on_conflict_do_update(index_elements=["cabinet_id"],
                                    set_={"token_sha256": token_hash(token)}))
            audit.write(connection, actor, "cabinet_token", cabinet_id)
        self._verified.pop(cabinet_id, None)
        return token

    def exists(self, connection: sa.Connection, cabinet_id: str) -> bool:
        return connection.execute(sa.select(cabinets.c.cabinet_id).where(
            cabinets.c.cabinet_id == cabinet_id)).first() is not None

    def new_enrolment(self, cabinet_id: str, actor: str,
                      lifetime_seconds: float = 30 * 86400) -> dict[str, str]:
        """A one-time token a cabinet's first boot trades for its device token (it travels on the
        SD card's boot partition, so it is single use and expires)."""
        token = secrets.token_urlsafe(24)
        expires = utc_now() + timedelta(seconds=lifetime_seconds)
        with self.engine.begin() as connection:
            connection.execute(sa.insert(enrolments).values(
                token_sha256=token_hash(token), cabinet_id=cabinet_id, expires_at=expires))
            audit.write(connection, actor, "enrolment", cabinet_id, expires_at=iso(expires))
        return {"cabinet_id": cabinet_id, "enrolment_token": token, "expires_at": iso(expires)}

    def enrol(self, cabinet_id: str, token: str) -> str:
        """Trade an enrolment token for the cabinet's device token (once)."""
        with self.engine.begin() as connection:
            row = connection.execute(sa.select(enrolments).where(
                enrolments.c.token_sha256 == token_hash(token))).first()
            if row is None or row.cabinet_id != cabinet_id:
                raise Forbidden("unknown enrolment token for this cabinet")
            if row.used_at is not None:
                raise Forbidden("this enrolment token was already used")
            if aware(row.expires_at) <= utc_now():
                raise Forbidden("this enrolment token has expired")
            connection.execute(sa.update(enrolments).values(used_at=utc_now()).where(
                enrolments.c.token_sha256 == token_hash(token)))
        return self.add_cabinet(cabinet_id, actor=f"enrolment:{cabinet_id}")

    def recently_verified(self, cabinet_id: str, token: str) -> bool:
        """True if this token was this cabinet's when the database was last asked, recently
        (no I/O: the event loop calls it)."""
        known = self._verified.get(cabinet_id)
        return known is not None and known[1] > time.monotonic() \
            and secrets.compare_digest(known[0], token_hash(token))

    def authenticate(self, cabinet_id: str, token: str) -> bool:
        with self.engine.connect() as connection:
            stored = connection.execute(sa.select(cabinets.c.token_sha256).where(
                cabinets.c.cabinet_id == cabinet_id)).scalar()
        valid = stored is not None and secrets.compare_digest(stored, token_hash(token))
        if valid:
            self._verified[cabinet_id] = (stored, time.monotonic() + self.token_cache_seconds)
        return valid

    # --- a batch ----------------------------------------------------------------------------------
    def store_batch(self, cabinet_id: str, raw_records: list[dict[str, Any]]) -> list[dict]:
        """Store a batch's records in one transaction; the records refused, each with why."""
        batch = self.check_batch(cabinet_id, raw_records)
        with self.engine.begin() as connection:
            self.write_batch(connection, batch)
        return batch.rejected

    def check_batch(self, cabinet_id: str, raw_records: list[dict[str, Any]]) -> "CheckedBatch":
        """The batch's records parsed and checked, before any connection is taken."""
        batch = CheckedBatch(cabinet_id, utc_now())
        for raw in raw_records:
            record, reason = _check(raw, cabinet_id)
            if reason is not None:
                batch.rejected.append({"seq": raw["seq"], "record_id": str(raw.get("record_id")),
                                       "reason": reason})
                continue
            batch.parsed[record.record_id] = (record, raw)
            batch.rows.append({"cabinet_id": cabinet_id, "record_id": record.record_id,
                               "seq": record.seq, "kind": record.kind.value,
                               "created_at": record.created_at.astimezone(batch.received.tzinfo),
                               "received_at": batch.received, "record": raw})
        return batch

    def write_batch(self, connection: sa.Connection, batch: "CheckedBatch") -> None:
        """One multi-row INSERT ... ON CONFLICT DO NOTHING RETURNING, the side effects and rollups
        of the records it stored for the first time, and one UPDATE of the cabinet's row."""
        cabinet_id, received = batch.cabinet_id, batch.received
        new: list[tuple[Record, dict]] = []
        if batch.rows:
            statement = insert(connection, records).on_conflict_do_nothing(
                index_elements=["cabinet_id", "record_id"]).returning(records.c.record_id)
            new = [batch.parsed[r] for r in connection.execute(statement, batch.rows).scalars()]
        _apply(connection, cabinet_id, new)
        _rollup(connection, cabinet_id, new)
        c = cabinets.c
        values: dict[str, Any] = {"last_seen_at": received}
        if batch.rows:  # only records stored move last_seq, never refused ones
            highest = max(r["seq"] for r in batch.rows)
            values["last_seq"] = sa.case((c.last_seq > highest, c.last_seq), else_=highest)
        if new:
            oldest = min(r.created_at for r, _ in new)
            values["lag_seconds"] = max(0.0, (received - oldest).total_seconds())
            values["software_version"] = max(new, key=lambda n: n[0].seq)[0].software_version
        readings = [r for r, _ in new if r.kind.value == "telemetry"
                    and _finite(r.body.get("celsius"))]
        if readings:
            # The newest reading, unless the row already holds a newer one (batches may arrive
            # out of order after a retry). SET expressions all see the row as it was.
            newest = max(readings, key=lambda r: r.created_at)
            older = sa.or_(c.temperature_at.is_(None), c.temperature_at <= newest.created_at)
            values["temperature_celsius"] = sa.case(
                (older, newest.body["celsius"]), else_=c.temperature_celsius)
            values["temperature_at"] = sa.case((older, newest.created_at),
                                               else_=c.temperature_at)
        connection.execute(sa.update(cabinets).values(**values).where(
            c.cabinet_id == cabinet_id))

    # --- reads ------------------------------------------------------------------------------------
    def cabinets(self) -> list[dict[str, Any]]:
        with self.engine.connect() as connection:
            rows = connection.execute(sa.select(cabinets).order_by(cabinets.c.cabinet_id)).all()
            active = connection.execute(sa.select(alarms).where(
                alarms.c.cleared_at.is_(None)).order_by(alarms.c.raised_at)).all()
        by_cabinet = defaultdict(list)
        for a in active:
            by_cabinet[a.cabinet_id].append({"kind": a.kind, "detail": a.detail,
                                             "raised_at": a.raised_at})
        return [{"cabinet_id": r.cabinet_id, "last_seen_at": iso(r.last_seen_at),
                 "last_seq": r.last_seq, "lag_seconds": r.lag_seconds,
                 "temperature_celsius": r.temperature_celsius,
                 "temperature_at": iso(r.temperature_at), "software_version": r.software_version,
                 "alarms": by_cabinet[r.cabinet_id]} for r in rows]

    def records(self, kind: str, cabinet_id: str | None, after_seq: int,
                limit: int) -> list[dict[str, Any]]:
        query = sa.select(records.c.record).where(records.c.kind == kind,
                                                  records.c.seq > after_seq)
        if cabinet_id:
            query = query.where(records.c.cabinet_id == cabinet_id)
        query = query.order_by(records.c.cabinet_id, records.c.seq).limit(limit)
        with self.engine.connect() as connection:
            return list(connection.execute(query).scalars())

    def counts(self, cabinet_id: str) -> dict[str, int]:
        with self.engine.connect() as connection:
            return dict(connection.execute(
                sa.select(records.c.kind, sa.func.count()).where(
                    records.c.cabinet_id == cabinet_id).group_by(records.c.kind)).all())

    def sales_by_hour(self, cabinet_id: str | None = None) -> list[dict[str, Any]]:
        query = sa.select(sales_hourly).order_by(sales_hourly.c.hour, sales_hourly.c.sku)
        if cabinet_id:
            query = query.where(sales_hourly.c.cabinet_id == cabinet_id)
        with self.engine.connect() as connection:
            return [{**r._asdict(), "hour": iso(r.hour)} for r in connection.execute(query)]

    def climate_by_hour(self, cabinet_id: str) -> list[dict[str, Any]]:
        query = sa.select(climate_hourly).where(
            climate_hourly.c.cabinet_id == cabinet_id).order_by(climate_hourly.c.hour)
        with self.engine.connect() as connection:
            return [{**r._asdict(), "hour": iso(r.hour)} for r in connection.execute(query)]

    # --- retention --------------------------------------------------------------------------------
    def prune_telemetry(self, older_than_days: float) -> int:
        """Delete raw telemetry older than the given age (its hourly rollup stays); sales,
        inventory and every other kind are kept."""
        cutoff = utc_now() - timedelta(days=older_than_days)
        with self.engine.begin() as connection:
            return connection.execute(sa.delete(records).where(
                records.c.kind == "telemetry", records.c.created_at < cutoff)).rowcount


@dataclass
class CheckedBatch:
    """A batch after checking: the rows to insert, each record parsed, and those refused."""
    cabinet_id: str
    received: datetime
    rows: list[dict[str, Any]] = field(default_factory=list)
    parsed: dict[str, tuple[Record, dict]] = field(default_factory=dict)
    rejected: list[dict] = field(default_factory=list)


def _check(raw: dict[str, Any], cabinet_id: str) -> tuple[Record | None, str | None]:
    """The record, or why it cannot be stored (a sentence naming the field)."""
    try:
        record = Record.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "record"
        if first["loc"] == ("kind",):
            return None, f"unknown kind {raw.get('kind')!r}; known: {', '.join(KINDS)}"
        return None, f"{where}: {first['msg']} (got {repr(first.get('input'))[:60]})"
    if record.cabinet_id != cabinet_id:
        return None, f"cabinet_id {record.cabinet_id!r} is not this cabinet ({cabinet_id})"
    # PostgreSQL's jsonb cannot hold a NUL character: refused here, one record, not a 500 that
    # would make the cabinet send the whole batch again for ever.
    if _has_nul(raw):
        return None, "a string holds a NUL character (\\u0000), which cannot be stored"
    if record.kind.value == "sale":
        body = record.body
        if not _whole(body.get("total_fen")):
            return None, (f"body.total_fen must be a whole number of fen, 0 or more "
                          f"(got {body.get('total_fen')!r})")
        lines = body.get("lines")
        if not isinstance(lines, list) or not all(
                isinstance(x, dict) and _whole(x.get("count")) and _whole(x.get("amount_fen"))
                for x in lines):
            return None, "body.lines must be a list of lines with whole count and amount_fen"
    return record, None


def _apply(connection: sa.Connection, cabinet_id: str, new: Iterable[tuple[Record, dict]]) -> None:
    for record, _ in new:
        body, kind = record.body, record.kind.value
        if kind == "alarm" and isinstance(body.get("alarm_id"), str):
            cleared = body.get("state") == "cleared"
            column = "cleared_at" if cleared else "raised_at"
            at = str(body.get(column))
            connection.execute(insert(connection, alarms).values(
                cabinet_id=cabinet_id, alarm_id=body["alarm_id"][:64],
                kind=str(body.get("kind"))[:64], detail=str(body.get("detail", "")),
                **{column: at}).on_conflict_do_update(
                index_elements=["cabinet_id", "alarm_id"], set_={column: at}))
        elif kind == "command_result" and isinstance(body.get("command_id"), str):
            _command_result(connection, cabinet_id, record)


def _command_result(connection: sa.Connection, cabinet_id: str, record: Record) -> None:
    body = record.body
    where = (commands.c.command_id == body["command_id"], commands.c.cabinet_id == cabinet_id)
    result = body.get("result", {})
    connection.execute(sa.update(commands).values(
        status=str(body.get("status"))[:16], detail=str(body.get("detail", "")),
        result=result if isinstance(result, dict) else {"value": result},
        finished_at=record.created_at).where(*where))
    row = connection.execute(sa.select(commands.c.args).where(
        *where, commands.c.type == "enroll_faces")).first()
    if row is not None:
        # Delivered: the backend keeps no copy of the embeddings it passed on.
        args = dict(row.args)
        args["members"] = [{**m, "embeddings": len(m["embeddings"])}
                           if isinstance(m, dict) and isinstance(m.get("embeddings"), list) else m
                           for m in args.get("members", [])]
        connection.execute(sa.update(commands).values(args=args).where(*where))


def _rollup(connection: sa.Connection, cabinet_id: str, new: list[tuple[Record, dict]]) -> None:
    """Add the new records to the hourly rollups: one upsert per (hour, product) and per hour."""
    sales: dict[tuple[datetime, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    climate: dict[datetime, list] = defaultdict(lambda: [0, None, None, 0.0, 0])
    for record, _ in new:
        body = record.body
        if record.kind.value == "sale":
            for line in body.get("lines") or ():
                if isinstance(line, dict) and isinstance(line.get("sku"), str) \
                        and _whole(line.get("count")) and _whole(line.get("amount_fen")):
                    entry = sales[(hour_of(record.created_at), line["sku"][:64])]
                    entry[0] += line["count"]
                    entry[1] += line["amount_fen"]
                    entry[2] += 1
        if record.kind.value == "telemetry" and _finite(body.get("celsius")):
            c = climate[hour_of(record.created_at)]
            celsius = float(body["celsius"])
            c[0] += 1
            c[1] = celsius if c[1] is None else min(c[1], celsius)
            c[2] = celsius if c[2] is None else max(c[2], celsius)
            c[3] += celsius
        if record.kind.value in ("sale", "inventory", "session"):
            opened = parse_time(body.get("door_opened_at"))
            if opened is not None:
                climate[hour_of(opened)][4] += 1
    if sales:
        statement = insert(connection, sales_hourly)
        statement = statement.on_conflict_do_update(
            index_elements=["cabinet_id", "hour", "sku"],
            set_={"units": sales_hourly.c.units + statement.excluded.units,
                  "revenue_fen": sales_hourly.c.revenue_fen + statement.excluded.revenue_fen,
                  "sales": sales_hourly.c.sales + statement.excluded.sales})
        connection.execute(statement, [
            {"cabinet_id": cabinet_id, "hour": hour, "sku": sku, "units": u, "revenue_fen": r,
             "sales": n} for (hour, sku), (u, r, n) in sorted(sales.items())])
    if climate:
        statement = insert(connection, climate_hourly)
        t, x = climate_hourly.c, statement.excluded
        statement = statement.on_conflict_do_update(
            index_elements=["cabinet_id", "hour"],
            set_={"samples": t.samples + x.samples,
                  "celsius_min": least(connection, t.celsius_min, x.celsius_min),
                  "celsius_max": greatest(connection, t.celsius_max, x.celsius_max),
                  "celsius_sum": t.celsius_sum + x.celsius_sum,
                  "door_openings": t.door_openings + x.door_openings})
        connection.execute(statement, [
            {"cabinet_id": cabinet_id, "hour": hour, "samples": n, "celsius_min": low,
             "celsius_max": high, "celsius_sum": total, "door_openings": doors}
            for hour, (n, low, high, total, doors) in sorted(climate.items())])


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value) and abs(value) < 1e6


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2 ** 53


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False
