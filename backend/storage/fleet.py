"""Cabinets and their records: registration, enrolment and device tokens, the operators' reads,
and retention. A batch is stored by backend/storage/ingest.py (Storage.receive)."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator

import sqlalchemy as sa

from . import audit
from .dialect import insert
from .engine import aware, iso, utc_now
from .errors import Forbidden
from .schema import (alarms, cabinet_products, cabinets, climate_hourly, enrolments, records,
                     sales_cabinet_daily, sales_fleet_hourly, sales_hourly)

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
        # cabinet id -> (hash of the device token last seen valid, until when to believe it),
        # and how many times its token was replaced here: a check that read the database before
        # a replacement must not put the old token back (threads: one lock for both).
        self._verified: dict[str, tuple[str, float]] = {}
        self._replaced: dict[str, int] = {}
        self._lock = threading.Lock()

    # --- cabinets ---------------------------------------------------------------------------------
    def add_cabinet(self, cabinet_id: str, actor: str = "system") -> str:
        """Register a cabinet (or give it a new token); its device token, shown once."""
        token = secrets.token_urlsafe(32)
        with self.engine.begin() as connection:
            connection.execute(insert(connection.dialect.name, cabinets).values(
                cabinet_id=cabinet_id, token_sha256=token_hash(token), created_at=utc_now(),
            ).on_conflict_do_update(index_elements=["cabinet_id"],
                                    set_={"token_sha256": token_hash(token)}))
            audit.write(connection, actor, "cabinet_token", cabinet_id)
        with self._lock:
            self._replaced[cabinet_id] = self._replaced.get(cabinet_id, 0) + 1
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
        replaced = self._replaced.get(cabinet_id, 0)
        with self.engine.connect() as connection:
            stored = connection.execute(sa.select(cabinets.c.token_sha256).where(
                cabinets.c.cabinet_id == cabinet_id)).scalar()
        valid = stored is not None and secrets.compare_digest(stored, token_hash(token))
        with self._lock:
            if valid and self._replaced.get(cabinet_id, 0) == replaced:
                self._verified[cabinet_id] = (stored, time.monotonic() + self.token_cache_seconds)
        return valid

    # --- reads ------------------------------------------------------------------------------------
    def cabinets(self) -> list[dict[str, Any]]:
        with self.engine.connect() as connection:
            rows = connection.execute(sa.select(cabinets).order_by(cabinets.c.cabinet_id)).all()
            active = connection.execute(sa.select(alarms).where(
                alarms.c.cleared_at.is_(None)).order_by(alarms.c.raised_at)).all()
            empty = connection.execute(sa.select(
                cabinet_products.c.cabinet_id, cabinet_products.c.sku).where(
                cabinet_products.c.count <= 0).order_by(cabinet_products.c.sku)).all()
        sold_out = defaultdict(list)
        for cabinet_id, sku in empty:
            sold_out[cabinet_id].append(sku)
        by_cabinet = defaultdict(list)
        for a in active:
            by_cabinet[a.cabinet_id].append({"kind": a.kind, "detail": a.detail,
                                             "raised_at": a.raised_at})
        return [{"cabinet_id": r.cabinet_id, "last_seen_at": iso(r.last_seen_at),
                 "last_seq": r.last_seq, "lag_seconds": r.lag_seconds,
                 "temperature_celsius": r.temperature_celsius,
                 "temperature_at": iso(r.temperature_at), "setpoint_celsius": r.setpoint_celsius,
                 "last_sale_at": iso(r.last_sale_at), "software_version": r.software_version,
                 "alarms": by_cabinet[r.cabinet_id], "sold_out": sold_out[r.cabinet_id]}
                for r in rows]

    def alarm_history(self, cabinet_id: str, limit: int) -> list[dict[str, Any]]:
        """A cabinet's alarms, raised and cleared, newest first."""
        with self.engine.connect() as connection:
            rows = connection.execute(sa.select(alarms).where(
                alarms.c.cabinet_id == cabinet_id).order_by(
                alarms.c.raised_at.desc()).limit(limit)).all()
        return [{"kind": a.kind, "detail": a.detail, "raised_at": a.raised_at,
                 "cleared_at": a.cleared_at} for a in rows]

    def records(self, kind: str, cabinet_id: str | None, after_seq: int,
                limit: int) -> list[dict[str, Any]]:
        query = sa.select(records.c.record).where(records.c.kind == kind,
                                                  records.c.seq > after_seq)
        if cabinet_id:
            query = query.where(records.c.cabinet_id == cabinet_id)
        query = query.order_by(records.c.cabinet_id, records.c.seq).limit(limit)
        with self.engine.connect() as connection:
            return list(connection.execute(query).scalars())

    def records_between(self, kind: str, cabinet_id: str | None, since: datetime,
                        until: datetime) -> Iterator[dict[str, Any]]:
        """Records of one kind created in [since, until), by cabinet and time, read in chunks
        while the caller consumes them (an export of a year is not held in memory)."""
        # In UTC, as stored: SQLite compares the text of times, whatever their zone.
        since, until = since.astimezone(timezone.utc), until.astimezone(timezone.utc)
        query = sa.select(records.c.record).where(
            records.c.kind == kind, records.c.created_at >= since, records.c.created_at < until)
        if cabinet_id:
            query = query.where(records.c.cabinet_id == cabinet_id)
        query = query.order_by(records.c.cabinet_id, records.c.created_at, records.c.seq)
        with self.engine.connect() as connection:
            yield from connection.execution_options(yield_per=500).execute(query).scalars()

    def newest(self, kind: str, cabinet_id: str | None, since: datetime, until: datetime,
               limit: int) -> list[dict[str, Any]]:
        """Records of one kind created in [since, until), newest first, at most `limit`."""
        since, until = since.astimezone(timezone.utc), until.astimezone(timezone.utc)
        query = sa.select(records.c.record).where(
            records.c.kind == kind, records.c.created_at >= since, records.c.created_at < until)
        if cabinet_id:
            query = query.where(records.c.cabinet_id == cabinet_id)
        # By time alone: the (kind, created_at) index then hands the newest over in order
        # (a second sort key made PostgreSQL sort a year of sales to return fifty).
        query = query.order_by(records.c.created_at.desc()).limit(limit)
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

    def sales_summary(self, cabinet_id: str | None, since: datetime, until: datetime
                      ) -> tuple[list[tuple[datetime, int, int]], list[dict], list[dict]]:
        """From the rollups, for the hours that start in [since, until): (hour, units,
        revenue) per hour; units, revenue and sales per product, top sellers first; units and
        revenue per cabinet, highest first. One cabinet reads its own hourly rows; the fleet
        reads the fleet's hourly rows, and ranks its cabinets from their daily rows (whole UTC
        days) with the hourly rows of the part-days at the period's two ends."""
        since, until = since.astimezone(timezone.utc), until.astimezone(timezone.utc)
        h = (sales_hourly if cabinet_id else sales_fleet_hourly).c
        where = [h.hour >= since, h.hour < until]
        if cabinet_id:
            where.append(h.cabinet_id == cabinet_id)
        units, revenue = sa.func.sum(h.units), sa.func.sum(h.revenue_fen)
        with self.engine.connect() as connection:
            hours = [(r[0], int(r[1]), int(r[2])) for r in connection.execute(
                sa.select(h.hour, units, revenue).where(*where).group_by(h.hour)
                .order_by(h.hour))]
            products = [{"sku": r[0], "units": int(r[1]), "revenue_fen": int(r[2]),
                         "sales": int(r[3])} for r in connection.execute(
                sa.select(h.sku, units, revenue, sa.func.sum(h.sales)).where(*where)
                .group_by(h.sku).order_by(revenue.desc(), h.sku))]
            if cabinet_id:
                by_cabinet = {cabinet_id: [sum(u for _, u, _ in hours),
                                           sum(r for _, _, r in hours)]} if hours else {}
            else:
                by_cabinet = self._by_cabinet(connection, since, until)
        cabinets_ = sorted(({"cabinet_id": c, "units": u, "revenue_fen": r}
                            for c, (u, r) in by_cabinet.items()),
                           key=lambda x: (-x["revenue_fen"], x["cabinet_id"]))
        return hours, products, cabinets_

    @staticmethod
    def _by_cabinet(connection: sa.Connection, since: datetime, until: datetime
                    ) -> dict[str, list[int]]:
        first_day = since.replace(hour=0, minute=0, second=0, microsecond=0)
        if first_day < since:
            first_day += timedelta(days=1)
        last_day = until.replace(hour=0, minute=0, second=0, microsecond=0)
        totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])

        def add(table, column, low, high):
            t = table.c
            for cabinet, u, r in connection.execute(
                    sa.select(t.cabinet_id, sa.func.sum(t.units), sa.func.sum(t.revenue_fen))
                    .where(t[column] >= low, t[column] < high).group_by(t.cabinet_id)):
                totals[cabinet][0] += int(u)
                totals[cabinet][1] += int(r)
        if first_day < last_day:
            add(sales_cabinet_daily, "day", first_day, last_day)
            add(sales_hourly, "hour", since, first_day)
            add(sales_hourly, "hour", last_day, until)
        else:
            add(sales_hourly, "hour", since, until)
        return totals

    def climate_between(self, cabinet_id: str, since: datetime, until: datetime
                        ) -> list[dict[str, Any]]:
        """The hourly climate rollups of the hours that start in [since, until)."""
        c = climate_hourly.c
        query = sa.select(climate_hourly).where(
            c.cabinet_id == cabinet_id, c.hour >= since.astimezone(timezone.utc),
            c.hour < until.astimezone(timezone.utc)).order_by(c.hour)
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
