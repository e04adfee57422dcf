"""CSV exports for operators' spreadsheets: sales and inventory records one row per line (with
the weighing's flags), raw temperature telemetry one row per sample, the operators' adjustments
one row per line. Spreadsheet-safe: a cell
that a spreadsheet would read as a formula (it begins with =, +, -, @, a tab or a carriage
return) is written with a leading apostrophe, since a record's strings come from cabinets.
"""

from __future__ import annotations

import csv
import io
from typing import Any, Callable, Iterable, Iterator

LINE = ["sku", "name_zh", "name_en", "count", "unit_price_fen", "amount_fen"]
SESSION = ["cabinet_id", "seq", "record_id", "created_at", "session_id", "method", "subject",
           "door_opened_at", "door_closed_at"]


def _session(record: dict) -> list:
    body = record.get("body") or {}
    authorisation = body.get("authorisation") or {}
    return [record.get("cabinet_id"), record.get("seq"), record.get("record_id"),
            record.get("created_at"), body.get("session_id"), authorisation.get("method"),
            authorisation.get("subject"), body.get("door_opened_at"), body.get("door_closed_at")]


def _flags(body: dict) -> str:
    return ";".join(str(f.get("kind")) for f in body.get("flags") or () if isinstance(f, dict))


def _lines(record: dict, tail: Callable[[dict], list]) -> list[list]:
    """A row per line of the record (one with empty line cells if it has none)."""
    body = record.get("body") or {}
    lines = [x for x in body.get("lines") or () if isinstance(x, dict)] or [{}]
    return [_session(record) + [line.get(c) for c in LINE] + tail(body) for line in lines]


def _sale(record: dict) -> list[list]:
    return _lines(record, lambda body: [body.get("total_fen"), _flags(body)])


def _inventory(record: dict) -> list[list]:
    return _lines(record, lambda body: [body.get("mode"), body.get("value_fen"), _flags(body)])


TELEMETRY = ["celsius", "setpoint_celsius", "compressor", "heater", "door_open",
             "compressor_duty"]


def _telemetry(record: dict) -> list[list]:
    body = record.get("body") or {}
    return [[record.get("cabinet_id"), record.get("seq"), record.get("created_at")]
            + [body.get(c) for c in TELEMETRY]]


ADJUSTMENT = ["adjustment_id", "cabinet_id", "record_id", "made_at", "made_by", "action",
              "revenue_delta_fen", "units_delta", "note"]


def _adjustment(adjustment: dict) -> list[list]:
    """A row per line (an adjustment with none: one row with the line's cells empty)."""
    head = [adjustment[c] for c in ADJUSTMENT]
    return [head + [line["sku"], line["count"], line["unit_price_fen"]]
            for line in adjustment["lines"]] or [head + [None, None, None]]


# table -> (record kind, header, rows of one record); adjustments are the backend's own rows
TABLES: dict[str, tuple[str, list[str], Callable[[dict], list[list]]]] = {
    "sales": ("sale", SESSION + LINE + ["total_fen", "flags"], _sale),
    "inventory": ("inventory", SESSION + LINE + ["mode", "value_fen", "flags"], _inventory),
    "temperature": ("telemetry", ["cabinet_id", "seq", "created_at"] + TELEMETRY, _telemetry),
    "adjustments": ("", ADJUSTMENT + ["sku", "count", "unit_price_fen"], _adjustment),
}


def _cell(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    if isinstance(value, (dict, list)):
        return repr(value)
    return value


def csv_text(table: str, records: Iterable[dict]) -> Iterator[str]:
    """The table's CSV, a chunk at a time: the header, then every record's rows."""
    _, header, rows = TABLES[table]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    for record in records:
        writer.writerows([_cell(v) for v in row] for row in rows(record))
        if buffer.tell() > 64 * 1024:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()
