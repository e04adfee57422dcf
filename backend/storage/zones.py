"""Cabinets with several doors and temperature zones: the layout each reports, each zone's newest
reading and the hourly climate of zones 2 and up, kept as records are stored; and their reads.

A telemetry record names its zone where the cabinet has several (`zone`). Zone 1 (and every
reading that names none) is the cabinet's own temperature, as on a one-zone cabinet: the fleet
page, the temperature alert and climate_hourly go on reading it from `cabinets`. The other zones'
readings are kept here, so a 12 °C ambient zone never shows as the chilled zone's excursion.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from datetime import datetime, timezone
from typing import Any, Iterable

import sqlalchemy as sa

from ..protocol import Record
from .dialect import greatest, insert, least
from .engine import hour_of, iso
from .schema import layouts, zone_climate_hourly, zone_readings

MAX_ZONE = 8   # as the cabinet's config allows


def zone_of(body: dict[str, Any]) -> int | None:
    """The zone a telemetry record names (None: none, the cabinet's one zone)."""
    zone = body.get("zone")
    if isinstance(zone, int) and not isinstance(zone, bool) and 1 <= zone <= MAX_ZONE:
        return zone
    return None


def on_batch(connection: sa.Connection, cabinet_id: str, new: Iterable[Record],
             finite) -> None:
    """`finite`: the ingest's test for a usable number."""
    newest: dict[int, Record] = {}
    hours: dict[tuple[int, datetime], list] = defaultdict(lambda: [0, None, None, 0.0])
    layout: Record | None = None
    for record in new:
        body, kind = record.body, record.kind.value
        if kind == "layout" and isinstance(body.get("doors"), list) \
                and isinstance(body.get("zones"), list):
            if layout is None or record.seq > layout.seq:
                layout = record
        zone = zone_of(body) if kind == "telemetry" else None
        if zone is None or not finite(body.get("celsius")):
            continue
        if zone not in newest or record.created_at >= newest[zone].created_at:
            newest[zone] = record
        if zone > 1:
            celsius = float(body["celsius"])
            h = hours[(zone, hour_of(record.created_at))]
            h[0] += 1
            h[1] = celsius if h[1] is None else min(h[1], celsius)
            h[2] = celsius if h[2] is None else max(h[2], celsius)
            h[3] += celsius
    statements = _statements(connection.dialect.name)
    if layout is not None:
        document = _layout(layout.body)
        connection.execute(statements.layout, {"cabinet_id": cabinet_id, "document": document,
                                               "reported_at": layout.created_at})
        # A zone the cabinet no longer has must not go on reading out of its band.
        connection.execute(sa.delete(zone_readings).where(
            zone_readings.c.cabinet_id == cabinet_id,
            zone_readings.c.zone.not_in([z["zone"] for z in document["zones"]] or [0])))
    if newest:
        connection.execute(statements.reading, [
            {"cabinet_id": cabinet_id, "zone": zone, "celsius": float(r.body["celsius"]),
             "setpoint_celsius": (float(r.body["setpoint_celsius"])
                                  if finite(r.body.get("setpoint_celsius")) else None),
             "reading_at": r.created_at} for zone, r in sorted(newest.items())])
    if hours:
        connection.execute(statements.climate, [
            {"cabinet_id": cabinet_id, "zone": zone, "hour": hour, "samples": n,
             "celsius_min": low, "celsius_max": high, "celsius_sum": total}
            for (zone, hour), (n, low, high, total) in sorted(hours.items())])


def _number(value: Any, high: int = MAX_ZONE) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= high


def _layout(body: dict[str, Any]) -> dict[str, Any]:
    """What the back office shows of a layout: the entries with a door or zone number, each
    field bounded (a cabinet's mistake must not fail the batch it came in, nor the page)."""
    def ints(values: Any) -> list[int]:
        return [v for v in values if _number(v, 10 ** 6)][:64] \
            if isinstance(values, list) else []
    doors = [{"door": d["door"], "name": str(d.get("name", ""))[:32],
              "shelves": ints(d.get("shelves"))}
             for d in body["doors"][:MAX_ZONE] if isinstance(d, dict) and _number(d.get("door"))]
    zones = [{"zone": z["zone"], "name": str(z.get("name", ""))[:32],
              "doors": ints(z.get("doors")),
              "food_safety_rule": str(z.get("food_safety_rule", ""))[:16],
              "compressor": bool(z.get("compressor")), "heater": bool(z.get("heater"))}
             for z in body["zones"][:MAX_ZONE] if isinstance(z, dict) and _number(z.get("zone"))]
    return {"doors": doors, "zones": zones}


class _Statements:
    def __init__(self, dialect: str):
        reported = insert(dialect, layouts)
        newer = reported.excluded.reported_at >= layouts.c.reported_at
        self.layout = reported.on_conflict_do_update(
            index_elements=["cabinet_id"],
            set_={k: sa.case((newer, getattr(reported.excluded, k)), else_=getattr(layouts.c, k))
                  for k in ("document", "reported_at")})
        read = insert(dialect, zone_readings)
        newer = read.excluded.reading_at >= zone_readings.c.reading_at
        self.reading = read.on_conflict_do_update(
            index_elements=["cabinet_id", "zone"],
            set_={k: sa.case((newer, getattr(read.excluded, k)),
                             else_=getattr(zone_readings.c, k))
                  for k in ("celsius", "setpoint_celsius", "reading_at")})
        hourly = insert(dialect, zone_climate_hourly)
        t, x = zone_climate_hourly.c, hourly.excluded
        self.climate = hourly.on_conflict_do_update(
            index_elements=["cabinet_id", "zone", "hour"],
            set_={"samples": t.samples + x.samples,
                  "celsius_min": least(dialect, t.celsius_min, x.celsius_min),
                  "celsius_max": greatest(dialect, t.celsius_max, x.celsius_max),
                  "celsius_sum": t.celsius_sum + x.celsius_sum})


@functools.cache
def _statements(dialect: str) -> _Statements:
    return _Statements(dialect)


# --- reads ---------------------------------------------------------------------------------------

class Zones:
    def __init__(self, engine: sa.Engine):
        self.engine = engine

    def layout(self, cabinet_id: str) -> dict[str, Any]:
        """The doors and zones the cabinet reported, each zone with its newest reading; a
        cabinet that reported none is one door and one zone (empty lists)."""
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(layouts).where(
                layouts.c.cabinet_id == cabinet_id)).first()
            readings = {r.zone: r for r in connection.execute(sa.select(zone_readings).where(
                zone_readings.c.cabinet_id == cabinet_id))}
        document = _layout(row.document) if row is not None else {"doors": [], "zones": []}
        zones = []
        for zone in document["zones"]:
            reading = readings.get(zone.get("zone"))
            zones.append({**zone,
                          "temperature_celsius": reading.celsius if reading else None,
                          "setpoint_celsius": reading.setpoint_celsius if reading else None,
                          "temperature_at": iso(reading.reading_at) if reading else None})
        return {"doors": document["doors"], "zones": zones,
                "reported_at": iso(row.reported_at) if row is not None else None}

    def climate_between(self, cabinet_id: str, zone: int, since: datetime, until: datetime
                        ) -> list[dict[str, Any]]:
        """Zone 2 and up's hourly rollups of the hours that start in [since, until)."""
        c = zone_climate_hourly.c
        query = sa.select(c.hour, c.samples, c.celsius_min, c.celsius_max, c.celsius_sum).where(
            c.cabinet_id == cabinet_id, c.zone == zone,
            c.hour >= since.astimezone(timezone.utc),
            c.hour < until.astimezone(timezone.utc)).order_by(c.hour)
        with self.engine.connect() as connection:
            return [{**r._asdict(), "hour": iso(r.hour), "door_openings": 0}
                    for r in connection.execute(query)]
