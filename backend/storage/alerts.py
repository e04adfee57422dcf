"""Alerts: the operators' rules, the conditions they watch, each alert's life and the queue of
its deliveries. The sending (SMTP, webhooks) is backend/alerts.py's; every statement is here.

A rule's condition holds for a cabinet since some time: offline (no contact for the rule's
minutes), no sales (none for its minutes), a lockout or forced opening since the alarm was
raised, an unauthorised removal since it was recorded, temperature outside the band or a product
sold out since the evaluation first saw it. While it has held less than the rule's minutes the
alert is pending; then it fires and its deliveries are queued; when the condition ends, a
firing alert is resolved (and that is delivered too) and a pending one forgotten. One evaluation
runs at a time in the whole fleet (a PostgreSQL advisory lock; SQLite has one writer), so
several workers never fire one alert twice; a delivery is claimed for a lease long enough to
send it, so it goes once unless its sender dies.
"""

from __future__ import annotations

import secrets
from datetime import datetime, time, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from . import audit
from .engine import aware, iso, parse_time, utc_now
from .errors import NotFound
from .schema import (alarms, alert_deliveries, alert_rules, alerts, cabinet_products, cabinets,
                     reviews, zone_readings)

KINDS = ("offline", "temperature", "lockout", "forced_open", "unauthorised", "sold_out",
         "no_sales")
ADVISORY_LOCK = 0x6361_6269   # "cabi": the evaluation's lock on PostgreSQL
MAX_ATTEMPTS = 8
LEASE = timedelta(minutes=2)  # a claimed delivery is retried after this if its sender died
CLAIM = 8   # deliveries claimed at once: 8 x the 10 s timeout stays inside the lease


class Alerts:
    def __init__(self, engine: sa.Engine):
        self.engine = engine

    # --- rules ------------------------------------------------------------------------------------
    def add_rule(self, rule: dict[str, Any], actor: str) -> dict[str, Any]:
        secret = secrets.token_hex(32) if rule.get("webhook_url") else None
        with self.engine.begin() as connection:
            rule_id = connection.execute(sa.insert(alert_rules).values(
                **rule, webhook_secret=secret, created_by=actor, created_at=utc_now())
                .returning(alert_rules.c.rule_id)).scalar_one()
            audit.write(connection, actor, "add_alert_rule", rule.get("cabinet_id"),
                        rule_id=rule_id, kind=rule["kind"])
        return {**self.rule(rule_id), "webhook_secret": secret}

    def rule(self, rule_id: int) -> dict[str, Any]:
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(alert_rules).where(
                alert_rules.c.rule_id == rule_id)).first()
        if row is None:
            raise NotFound(f"no alert rule {rule_id}")
        return _rule(row)

    def rules(self) -> list[dict[str, Any]]:
        with self.engine.connect() as connection:
            return [_rule(r) for r in connection.execute(
                sa.select(alert_rules).order_by(alert_rules.c.rule_id))]

    def delete_rule(self, rule_id: int, actor: str) -> None:
        with self.engine.begin() as connection:
            gone = connection.execute(sa.delete(alert_rules).where(
                alert_rules.c.rule_id == rule_id)).rowcount
            if not gone:
                raise NotFound(f"no alert rule {rule_id}")
            connection.execute(sa.delete(alerts).where(alerts.c.rule_id == rule_id,
                                                       alerts.c.state == "pending"))
            # Its firing alerts end with it, and what it had not delivered yet is not sent
            # (nor signed with a secret that went with the rule).
            ended = sa.select(alerts.c.alert_id).where(alerts.c.rule_id == rule_id)
            connection.execute(sa.update(alerts).values(state="resolved", resolved_at=utc_now())
                               .where(alerts.c.rule_id == rule_id, alerts.c.state == "firing"))
            connection.execute(sa.update(alert_deliveries).values(
                status="failed", last_error="the rule was deleted").where(
                alert_deliveries.c.alert_id.in_(ended), alert_deliveries.c.status == "pending"))
            audit.write(connection, actor, "delete_alert_rule", None, rule_id=rule_id)

    # --- the page ---------------------------------------------------------------------------------
    def recent(self, limit: int) -> list[dict[str, Any]]:
        """Firing and resolved alerts, newest first, each with its deliveries."""
        with self.engine.connect() as connection:
            rows = connection.execute(sa.select(alerts, alert_rules.c.kind).join(
                alert_rules, alert_rules.c.rule_id == alerts.c.rule_id, isouter=True).where(
                alerts.c.state != "pending").order_by(alerts.c.fired_at.desc()).limit(limit)).all()
            ids = [r.alert_id for r in rows]
            sent = connection.execute(sa.select(alert_deliveries).where(
                alert_deliveries.c.alert_id.in_(ids)).order_by(
                alert_deliveries.c.delivery_id)).all() if ids else []
        by_alert: dict[int, list] = {}
        for d in sent:
            by_alert.setdefault(d.alert_id, []).append({
                "event": d.event, "channel": d.channel, "target": d.target, "status": d.status,
                "attempts": d.attempts, "last_error": d.last_error, "sent_at": iso(d.sent_at),
                "next_attempt_at": iso(d.next_attempt_at) if d.status == "pending" else None})
        return [{"alert_id": r.alert_id, "rule_id": r.rule_id, "kind": r.kind or "deleted rule",
                 "cabinet_id": r.cabinet_id, "state": r.state, "detail": r.detail,
                 "since": iso(r.since), "fired_at": iso(r.fired_at),
                 "resolved_at": iso(r.resolved_at), "deliveries": by_alert.get(r.alert_id, [])}
                for r in rows]

    # --- evaluation -------------------------------------------------------------------------------
    def evaluate(self, now: datetime | None = None) -> list[dict[str, Any]] | None:
        """One evaluation of every rule, then the deliveries now due, claimed for the caller to
        send. None: another worker holds the evaluation this time."""
        now = now or utc_now()
        with self.engine.begin() as connection:
            if connection.dialect.name == "postgresql" and not connection.execute(
                    sa.text("SELECT pg_try_advisory_xact_lock(:key)"),
                    {"key": ADVISORY_LOCK}).scalar():
                return None
            for rule in connection.execute(sa.select(alert_rules)).all():
                self._evaluate_rule(connection, _rule(rule, secret=True), now)
            return self._claim(connection, now)

    def _evaluate_rule(self, connection: sa.Connection, rule: dict, now: datetime) -> None:
        holding = _conditions(connection, rule, now)
        open_ = {r.cabinet_id: r for r in connection.execute(sa.select(alerts).where(
            alerts.c.rule_id == rule["rule_id"], alerts.c.state.in_(("pending", "firing"))))}
        for cabinet_id, alert in open_.items():
            if cabinet_id in holding:
                continue
            if alert.state == "pending":
                connection.execute(sa.delete(alerts).where(alerts.c.alert_id == alert.alert_id))
            else:
                connection.execute(sa.update(alerts).values(state="resolved", resolved_at=now)
                                   .where(alerts.c.alert_id == alert.alert_id))
                self._queue(connection, rule, alert.alert_id, "resolved", now)
        for cabinet_id, (since, detail) in holding.items():
            alert = open_.get(cabinet_id)
            start = since or (aware(alert.since) if alert is not None else now)
            due = now - start >= timedelta(minutes=rule["minutes"])
            if alert is None:
                alert_id = connection.execute(sa.insert(alerts).values(
                    rule_id=rule["rule_id"], cabinet_id=cabinet_id, detail=detail, since=start,
                    state="firing" if due else "pending", fired_at=now if due else None)
                    .returning(alerts.c.alert_id)).scalar_one()
                if due:
                    self._queue(connection, rule, alert_id, "fired", now)
            elif alert.state == "pending" and due:
                connection.execute(sa.update(alerts).values(state="firing", fired_at=now,
                                                            detail=detail)
                                   .where(alerts.c.alert_id == alert.alert_id))
                self._queue(connection, rule, alert.alert_id, "fired", now)

    @staticmethod
    def _queue(connection: sa.Connection, rule: dict, alert_id: int, event: str,
               now: datetime) -> None:
        due = quiet_until(rule, now) or now
        rows = [{"channel": "email", "target": address} for address in rule["emails"]]
        if rule["webhook_url"]:
            rows.append({"channel": "webhook", "target": rule["webhook_url"]})
        if rows:
            connection.execute(sa.insert(alert_deliveries), [
                {**row, "alert_id": alert_id, "event": event, "status": "pending",
                 "attempts": 0, "next_attempt_at": due} for row in rows])

    @staticmethod
    def _claim(connection: sa.Connection, now: datetime) -> list[dict[str, Any]]:
        d = alert_deliveries.c
        due = connection.execute(
            sa.select(alert_deliveries, alerts, alert_rules.c.kind, alert_rules.c.minutes,
                      alert_rules.c.webhook_secret)
            .join(alerts, alerts.c.alert_id == d.alert_id)
            .join(alert_rules, alert_rules.c.rule_id == alerts.c.rule_id, isouter=True)
            .where(d.status == "pending", d.next_attempt_at <= now)
            .order_by(d.next_attempt_at).limit(CLAIM)).all()
        if due:
            connection.execute(sa.update(alert_deliveries).values(
                attempts=d.attempts + 1, next_attempt_at=now + LEASE).where(
                d.delivery_id.in_([r.delivery_id for r in due])))
        return [{"delivery_id": r.delivery_id, "channel": r.channel, "target": r.target,
                 "attempt": r.attempts + 1, "secret": r.webhook_secret,
                 "alert": {"alert_id": r.alert_id, "event": r.event, "kind": r.kind,
                           "minutes": r.minutes, "cabinet_id": r.cabinet_id,
                           "detail": r.detail, "since": iso(r.since),
                           "fired_at": iso(r.fired_at), "resolved_at": iso(r.resolved_at)}}
                for r in due]

    def finish(self, delivery_id: int, attempt: int, error: str | None,
               now: datetime | None = None) -> None:
        """A claimed delivery's outcome: sent, or retried with backoff until MAX_ATTEMPTS."""
        now = now or utc_now()
        if error is None:
            values = {"status": "sent", "sent_at": now, "last_error": None}
        elif attempt >= MAX_ATTEMPTS:
            values = {"status": "failed", "last_error": error[:2000]}
        else:
            values = {"last_error": error[:2000],
                      "next_attempt_at": now + timedelta(seconds=min(3600, 15 * 2 ** attempt))}
        with self.engine.begin() as connection:
            connection.execute(sa.update(alert_deliveries).values(**values).where(
                alert_deliveries.c.delivery_id == delivery_id))


def _conditions(connection: sa.Connection, rule: dict, now: datetime
                ) -> dict[str, tuple[datetime | None, str]]:
    """cabinet -> (since when the condition holds, or None: from now; a sentence)."""
    kind, minutes = rule["kind"], rule["minutes"]
    c = cabinets.c
    where = [c.cabinet_id == rule["cabinet_id"]] if rule["cabinet_id"] else []
    if kind == "offline":
        rows = connection.execute(sa.select(c.cabinet_id, c.last_seen_at).where(
            *where, c.last_seen_at.is_not(None))).all()
        return {r.cabinet_id: (aware(r.last_seen_at), f"no contact since {iso(r.last_seen_at)}")
                for r in rows if now - aware(r.last_seen_at) >= timedelta(minutes=minutes)}
    if kind == "no_sales":
        rows = connection.execute(sa.select(c.cabinet_id, c.last_sale_at, c.created_at).where(
            *where)).all()
        return {r.cabinet_id: (aware(r.last_sale_at or r.created_at),
                               f"no sale since {iso(r.last_sale_at) or 'ever'}") for r in rows
                if now - aware(r.last_sale_at or r.created_at) >= timedelta(minutes=minutes)}
    if kind == "temperature":
        band = rule["band_celsius"]
        rows = connection.execute(sa.select(c.cabinet_id, sa.literal(1).label("zone"),
                                            c.temperature_celsius, c.setpoint_celsius).where(
            *where, c.temperature_celsius.is_not(None), c.setpoint_celsius.is_not(None))).all()
        z = zone_readings.c   # zones 2 and up, on cabinets with several (storage/zones.py)
        rows += connection.execute(sa.select(z.cabinet_id, z.zone, z.celsius,
                                             z.setpoint_celsius).where(
            z.zone > 1, z.setpoint_celsius.is_not(None),
            *([z.cabinet_id == rule["cabinet_id"]] if rule["cabinet_id"] else []))).all()
        out: dict[str, tuple[None, str]] = {}
        for cabinet_id, zone, celsius, setpoint in rows:
            if abs(celsius - setpoint) > band:
                said = (f"{'' if zone == 1 else f'zone {zone}: '}{celsius:.1f} °C, setpoint "
                        f"{setpoint:.1f} °C ± {band:g}")
                out[cabinet_id] = (None, f"{out[cabinet_id][1]}; {said}" if cabinet_id in out
                                   else said)
        return out
    if kind in ("lockout", "forced_open"):
        alarm = "food_safety_lockout" if kind == "lockout" else "forced_open"
        a = alarms.c
        # A cabinet with several doors or zones names them: forced_open:door2.
        rows = connection.execute(sa.select(a.cabinet_id, a.raised_at, a.detail, a.kind).where(
            sa.or_(a.kind == alarm, a.kind.like(f"{alarm}:%")), a.cleared_at.is_(None),
            *([a.cabinet_id == rule["cabinet_id"]] if rule["cabinet_id"] else []))
            .order_by(a.cabinet_id, a.kind)).all()
        out = {}
        for r in rows:
            raised = _time(r.raised_at)
            said = f"{r.kind}: {r.detail}"
            if r.cabinet_id in out:   # the earliest raised, every door or zone named
                first = out[r.cabinet_id]
                raised = min(x for x in (first[0], raised) if x is not None) \
                    if first[0] or raised else None
                said = f"{first[1]}; {said}"
            out[r.cabinet_id] = (raised, said)
        return out
    if kind == "unauthorised":
        v = reviews.c
        rows = connection.execute(sa.select(v.cabinet_id, sa.func.min(v.created_at)).where(
            v.reason == "unauthorised removal", v.resolved_at.is_(None),
            *([v.cabinet_id == rule["cabinet_id"]] if rule["cabinet_id"] else []))
            .group_by(v.cabinet_id)).all()
        return {r[0]: (aware(r[1]), "unauthorised removal to review") for r in rows}
    if kind == "sold_out":
        p = cabinet_products.c
        rows = connection.execute(sa.select(p.cabinet_id, p.sku).where(
            p.count <= 0, p.par > 0,
            *([p.cabinet_id == rule["cabinet_id"]] if rule["cabinet_id"] else []))
            .order_by(p.cabinet_id, p.sku)).all()
        out: dict[str, tuple[None, str]] = {}
        for r in rows:
            skus = out.get(r.cabinet_id, (None, "sold out:"))[1]
            out[r.cabinet_id] = (None, f"{skus} {r.sku}")
        return out
    return {}


def _time(text: str | None) -> datetime | None:
    """An alarm's time as the cabinet wrote it, in UTC; None (from now on) when it is not a
    time of this era: a cabinet's year 9999 must not reach a column that stops at 10000."""
    parsed = parse_time(text)
    if parsed is None or not 2000 <= parsed.year <= 2200:
        return None
    return min(parsed.astimezone(timezone.utc), utc_now())


def quiet_until(rule: dict, now: datetime) -> datetime | None:
    """The end of the rule's quiet hours if `now` is inside them (deliveries wait till then)."""
    if not rule.get("quiet_start") or not rule.get("quiet_end"):
        return None
    zone = ZoneInfo(rule["tz"])
    local = now.astimezone(zone)
    start = time.fromisoformat(rule["quiet_start"])
    end = time.fromisoformat(rule["quiet_end"])
    t = local.time()
    inside = start <= t < end if start <= end else (t >= start or t < end)
    if not inside:
        return None
    end_at = local.replace(hour=end.hour, minute=end.minute, second=0, microsecond=0)
    if end_at <= local:
        end_at += timedelta(days=1)
    # In UTC: SQLite keeps a time's digits and drops its offset.
    return end_at.astimezone(timezone.utc)


def _rule(r, secret: bool = False) -> dict[str, Any]:
    out = {"rule_id": r.rule_id, "kind": r.kind, "minutes": r.minutes,
           "band_celsius": r.band_celsius, "cabinet_id": r.cabinet_id,
           "emails": list(r.emails), "webhook_url": r.webhook_url,
           "quiet_start": r.quiet_start, "quiet_end": r.quiet_end, "tz": r.tz,
           "created_by": r.created_by, "created_at": iso(r.created_at)}
    if secret:
        out["webhook_secret"] = r.webhook_secret
    return out
