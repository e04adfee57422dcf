"""A cabinet's batch into the database: each record checked (one bad record is refused alone,
with a sentence naming its field) and serialised once, then one transaction of set-based
statements: one INSERT ... ON CONFLICT DO NOTHING RETURNING (on PostgreSQL from one JSON
parameter, on SQLite a multi-row VALUES), the side effects and hourly rollups of the records
stored for the first time only (so a resent batch changes nothing), and one UPDATE of the
cabinet's row.

The statements are built once per dialect: hundreds of uploads a second run them, and building a
SQLAlchemy statement (and its cache key) cost more CPU than running it.
"""

from __future__ import annotations

import functools
import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable

import sqlalchemy as sa
from pydantic import ValidationError

from ..protocol import MAX_COUNT, MAX_FEN, MAX_LINES, SKU, Record, RecordKind
from . import reviews, rollups, stock, zones
from .dialect import greatest, insert, least
from .engine import hour_of, parse_time, utc_now
from .schema import Time, alarms, cabinets, climate_hourly, commands, records

KINDS = [k.value for k in RecordKind]
_SKU = re.compile(SKU)
_to_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


@dataclass
class CheckedBatch:
    """A batch after checking: the rows to insert, each record parsed, and those refused."""
    cabinet_id: str
    received: datetime
    rows: list[dict[str, Any]] = field(default_factory=list)
    parsed: dict[str, tuple[Record, dict]] = field(default_factory=dict)
    texts: list[str] = field(default_factory=list)   # each row's record as JSON
    rejected: list[dict] = field(default_factory=list)


def check(cabinet_id: str, raw_records: list[dict[str, Any]]) -> CheckedBatch:
    """The batch's records parsed and checked, before any connection is taken."""
    batch = CheckedBatch(cabinet_id, utc_now())
    for raw in raw_records:
        record, text, reason = _check(raw, cabinet_id)
        if reason is not None:
            batch.rejected.append({"seq": raw["seq"], "record_id": _printable(
                raw.get("record_id")), "reason": reason})
            continue
        if record.record_id in batch.parsed:
            # The same id twice in one batch: the first is the one stored (as with a record
            # resent in a later batch); the copy counts for nothing, not even last_seq.
            continue
        batch.parsed[record.record_id] = (record, raw)
        batch.texts.append(text)
        batch.rows.append({"cabinet_id": cabinet_id, "record_id": record.record_id,
                           "seq": record.seq, "kind": record.kind.value,
                           "created_at": record.created_at.astimezone(batch.received.tzinfo),
                           "received_at": batch.received})
    return batch


def write(connection: sa.Connection, batch: CheckedBatch) -> None:
    """Store a checked batch in the caller's transaction."""
    statements = _statements(connection.dialect.name)
    cabinet_id, received = batch.cabinet_id, batch.received
    new: list[tuple[Record, dict]] = []
    if batch.rows:
        new = [batch.parsed[r] for r in statements.store(connection, batch)]
    _apply(connection, cabinet_id, new)
    _rollup(connection, cabinet_id, new)
    if new:
        stock.on_batch(connection, cabinet_id, [r for r, _ in new])
        reviews.on_batch(connection, cabinet_id, [r for r, _ in new])
        zones.on_batch(connection, cabinet_id, [r for r, _ in new], _finite)
    params: dict[str, Any] = {"cabinet": cabinet_id, "received": received}
    if new:  # only records stored now move last_seq: never refused ones, nor one sent again
        # with another seq (its first seq stands)
        params["highest"] = max(r.seq for r, _ in new)
        oldest = min(r.created_at for r, _ in new)
        params["lag"] = max(0.0, (received - oldest).total_seconds())
        params["version"] = max(new, key=lambda n: n[0].seq)[0].software_version
    readings = [r for r, _ in new if _cabinet_reading(r)]
    if readings:
        newest = max(readings, key=lambda r: r.created_at)
        params["celsius"], params["reading_at"] = float(newest.body["celsius"]), newest.created_at
        setpoint = newest.body.get("setpoint_celsius")
        params["setpoint"] = float(setpoint) if _finite(setpoint) else None
    sold = [r.created_at for r, _ in new if r.kind.value == "sale"]
    if sold:
        params["sale_at"] = max(sold)
    connection.execute(statements.touch(bool(new), bool(readings), bool(sold)), params)


class _Statements:
    """The upload path's statements for one dialect (PostgreSQL and SQLite differ in their
    upsert construct and their two-argument min and max)."""

    def __init__(self, dialect: str):
        self.dialect = dialect
        # SQLite: a multi-row INSERT, each record's JSON as the text _check made (the column's
        # own type would serialise it again).
        self.insert_rows = insert(dialect, records).values(
            {**{c: sa.bindparam(c, type_=records.c[c].type) for c in
                ("cabinet_id", "record_id", "seq", "kind", "created_at", "received_at")},
             "record": sa.bindparam("text", type_=sa.Text)}).on_conflict_do_nothing(
            index_elements=["cabinet_id", "record_id"]).returning(records.c.record_id)
        climate = insert(dialect, climate_hourly)
        t, x = climate_hourly.c, climate.excluded
        self.climate_rollup = climate.on_conflict_do_update(
            index_elements=["cabinet_id", "hour"],
            set_={"samples": t.samples + x.samples,
                  "celsius_min": least(dialect, t.celsius_min, x.celsius_min),
                  "celsius_max": greatest(dialect, t.celsius_max, x.celsius_max),
                  "celsius_sum": t.celsius_sum + x.celsius_sum,
                  "door_openings": t.door_openings + x.door_openings})

    def store(self, connection: sa.Connection, batch: CheckedBatch) -> Iterable[str]:
        """Insert the batch's rows; the ids of those that were not stored before."""
        if self.dialect != "postgresql":
            return connection.execute(self.insert_rows, [
                {**row, "text": text} for row, text in zip(batch.rows, batch.texts)]).scalars()
        # One statement with one JSON parameter, whatever the batch's size: a multi-row VALUES
        # of 500 records has 3 500 placeholders, which psycopg parses anew for every batch (a
        # third of its CPU), and arrays of JSON texts pass through psycopg's escaping in Python.
        # Each record's text is the one _check made; PostgreSQL takes it apart in C.
        elements = ",".join(
            f'{{"i":{json.dumps(row["record_id"])},"s":{row["seq"]},"k":"{row["kind"]}",'
            f'"c":"{row["created_at"].isoformat()}","r":{text}}}'
            for row, text in zip(batch.rows, batch.texts))
        return connection.execute(_INSERT_JSON, {
            "cabinet": batch.cabinet_id, "received": batch.received,
            "batch": f"[{elements}]"}).scalars()

    @functools.cache
    def touch(self, new: bool, reading: bool, sale: bool) -> sa.Update:
        """The cabinet's row after a batch: seen now; its highest stored seq (never lowered);
        the lag and version of what was new; the newest reading and its setpoint, and the
        newest sale's time, unless the row holds newer ones (batches may arrive out of order
        after a retry). SET expressions all see the row as it was."""
        c = cabinets.c
        values: dict[str, Any] = {"last_seen_at": sa.bindparam("received", type_=Time)}
        if new:
            highest = sa.bindparam("highest", type_=sa.BigInteger)
            values["last_seq"] = sa.case((c.last_seq > highest, c.last_seq), else_=highest)
            values["lag_seconds"] = sa.bindparam("lag", type_=sa.Float)
            values["software_version"] = sa.bindparam("version", type_=sa.String)
        if reading:
            at = sa.bindparam("reading_at", type_=Time)
            older = sa.or_(c.temperature_at.is_(None), c.temperature_at <= at)
            values["temperature_celsius"] = sa.case(
                (older, sa.bindparam("celsius", type_=sa.Float)), else_=c.temperature_celsius)
            values["temperature_at"] = sa.case((older, at), else_=c.temperature_at)
            values["setpoint_celsius"] = sa.case(
                (older, sa.bindparam("setpoint", type_=sa.Float)), else_=c.setpoint_celsius)
        if sale:
            sale_at = sa.bindparam("sale_at", type_=Time)
            values["last_sale_at"] = sa.case(
                (sa.or_(c.last_sale_at.is_(None), c.last_sale_at < sale_at), sale_at),
                else_=c.last_sale_at)
        return sa.update(cabinets).values(**values).where(
            c.cabinet_id == sa.bindparam("cabinet", type_=sa.String))


_INSERT_JSON = sa.text("""
    INSERT INTO records (cabinet_id, record_id, seq, kind, created_at, received_at, record)
    SELECT :cabinet, e->>'i', (e->>'s')::bigint, e->>'k', (e->>'c')::timestamptz, :received,
           e->'r'
    FROM jsonb_array_elements(CAST(:batch AS jsonb)) AS e
    ON CONFLICT (cabinet_id, record_id) DO NOTHING
    RETURNING record_id""").bindparams(sa.bindparam("received", type_=Time))


@functools.cache
def _statements(dialect: str) -> _Statements:
    return _Statements(dialect)


def _check(raw: dict[str, Any], cabinet_id: str) -> tuple[Record | None, str | None, str | None]:
    """The record and its JSON text, or None and why it cannot be stored (a sentence naming
    the field)."""
    try:
        record = Record.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "record"
        if first["loc"] == ("kind",):
            return None, None, f"unknown kind {raw.get('kind')!r}; known: {', '.join(KINDS)}"
        return None, None, f"{where}: {first['msg']} (got {repr(first.get('input'))[:60]})"
    if record.cabinet_id != cabinet_id:
        return None, None, f"cabinet_id {record.cabinet_id!r} is not this cabinet ({cabinet_id})"
    try:
        record.created_at.astimezone(timezone.utc)
    except OverflowError:
        return None, None, (f"created_at {raw.get('created_at')!r} is outside the years "
                            "1-9999 in UTC")
    # PostgreSQL's jsonb can hold neither a NUL character nor half a surrogate pair: refused
    # here, one record, not a 500 that would make the cabinet send the whole batch again for
    # ever. The text is the record as stored (serialised once, here).
    text = _to_json(raw)
    if "\\u0000" in text and _has_nul(raw):  # the escape, or a string's literal backslash-u
        return None, None, "a string holds a NUL character (\\u0000), which cannot be stored"
    try:
        text.encode()
    except UnicodeEncodeError:
        return None, None, ("a string holds a lone UTF-16 surrogate (\\ud800-\\udfff), "
                            "not a character")
    if record.kind.value == "sale":
        body = record.body
        if not _whole(body.get("total_fen"), MAX_FEN):
            return None, None, (f"body.total_fen must be a whole number of fen from 0 to "
                                f"{MAX_FEN} (got {body.get('total_fen')!r})")
        lines = body.get("lines")
        if not isinstance(lines, list) or not all(
                isinstance(x, dict) and isinstance(x.get("sku"), str) and _SKU.match(x["sku"])
                and _whole(x.get("count"), MAX_COUNT)
                and _whole(x.get("amount_fen"), MAX_FEN) for x in lines):
            return None, None, (f"body.lines must be a list of lines with a sku (1-64 letters, "
                                f"digits, '.', '_', '-'), a whole count (0 to {MAX_COUNT}) and "
                                f"amount_fen (0 to {MAX_FEN})")
        flags = body.get("flags", [])
        if not isinstance(flags, list) or not all(
                isinstance(f, dict) and isinstance(f.get("kind"), str) for f in flags):
            return None, None, "body.flags must be a list of objects, each with a kind (a string)"
        if len(lines) > MAX_LINES:
            return None, None, f"body.lines has {len(lines)} lines; a sale has at most {MAX_LINES}"
    return record, text, None


def _apply(connection: sa.Connection, cabinet_id: str, new: Iterable[tuple[Record, dict]]) -> None:
    for record, _ in new:
        body, kind = record.body, record.kind.value
        if kind == "alarm" and isinstance(body.get("alarm_id"), str):
            cleared = body.get("state") == "cleared"
            column = "cleared_at" if cleared else "raised_at"
            at = str(body.get(column))[:40]  # the column's width (an ISO time is 24)
            connection.execute(insert(connection.dialect.name, alarms).values(
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
                        and _whole(line.get("count"), MAX_COUNT) \
                        and _whole(line.get("amount_fen"), MAX_FEN):
                    entry = sales[(hour_of(record.created_at), line["sku"][:64])]
                    entry[0] += line["count"]
                    entry[1] += line["amount_fen"]
                    entry[2] += 1
        if _cabinet_reading(record):
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
    rollups.add_sales(connection, cabinet_id, sales)
    if climate:
        connection.execute(_statements(connection.dialect.name).climate_rollup, [
            {"cabinet_id": cabinet_id, "hour": hour, "samples": n, "celsius_min": low,
             "celsius_max": high, "celsius_sum": total, "door_openings": doors}
            for hour, (n, low, high, total, doors) in sorted(climate.items())])


def _cabinet_reading(record: Record) -> bool:
    """A telemetry reading of the cabinet's own temperature: its only zone's, or zone 1's
    (zones 2 and up are storage/zones.py's)."""
    if record.kind.value != "telemetry" or not _finite(record.body.get("celsius")):
        return False
    if "zone" not in record.body:
        return True
    return zones.zone_of(record.body) == 1   # a zone that is not 1..8 is nobody's reading


def _finite(value: Any) -> bool:
    # Compared, not math.isfinite(): an integer of 400 digits overflows a float. NaN compares
    # false.
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and -1e6 < value < 1e6


def _whole(value: Any, limit: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= limit


def _printable(value: Any) -> str:
    """A value echoed back in a reply: half a surrogate pair written as its escape, which
    UTF-8 can carry."""
    return str(value).encode("utf-8", "backslashreplace").decode()


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False
