"""Alerts: rules evaluated against the fleet's state, each alert's life (pending, firing,
resolved), deliveries by email to a real SMTP server (aiosmtpd on loopback) and by webhook to a
real HTTP receiver, signed, retried, held back by quiet hours; and the whole path in the back
office: a rule made on the alerts page fires when a real simulated cabinet is killed."""

from __future__ import annotations

import json
import socket
import threading
from datetime import datetime, timedelta, timezone
from email import message_from_bytes
from email.header import decode_header, make_header
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from backend.alerts import AlertSettings, deliver, sign, verify_signature

from .conftest import RunningBackend, wait_for
from .test_backoffice import PASSWORD, SIZES, browser, log_in
from .test_daemon_sync import start_synced


class Mailbox:
    """A real SMTP server on loopback keeping what it receives."""

    def __init__(self):
        from aiosmtpd.controller import Controller

        self.messages = []
        mailbox = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                mailbox.messages.append((envelope.rcpt_tos, message_from_bytes(envelope.content)))
                return "250 OK"

        # aiosmtpd checks it is up by connecting to the port it was given: not 0.
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def close(self):
        self.controller.stop()


class Receiver:
    """A real HTTP server on loopback taking webhooks; answers `statuses` in turn, then 200."""

    def __init__(self, statuses=()):
        self.received, self.statuses = [], list(statuses)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append((dict(self.headers), body))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


@pytest.fixture
def mailbox():
    box = Mailbox()
    yield box
    box.close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def _subject(message) -> str:
    return str(make_header(decode_header(message["Subject"])))


def _upload(backend, seq, created_at, body, kind="telemetry"):
    import uuid

    rejected, _ = backend.storage.receive("cabinet-0001", [{
        "record_id": str(uuid.uuid4()), "seq": seq, "kind": kind, "cabinet_id": "cabinet-0001",
        "software_version": "t", "created_at": created_at.isoformat(), "body": body}], None)
    assert rejected == []


@pytest.fixture
def quiet_backend(backend_db_url):
    b = RunningBackend(backend_db_url, service_kw={"alert_settings": None})
    yield b
    b.close()


def test_an_alert_pends_fires_once_is_delivered_and_resolves(quiet_backend, mailbox, receiver):
    backend = quiet_backend
    alerts = backend.storage.alerts
    rule = alerts.add_rule({"kind": "temperature", "minutes": 10, "band_celsius": 2.0,
                            "cabinet_id": None, "emails": ["dolma@example.cn"],
                            "webhook_url": receiver.url, "quiet_start": None,
                            "quiet_end": None, "tz": "Asia/Shanghai"}, "admin")
    settings = AlertSettings(smtp_host="127.0.0.1", smtp_port=mailbox.port)
    t0 = datetime.now(timezone.utc)
    _upload(backend, 1, t0, {"celsius": 9.5, "setpoint_celsius": 4.0})
    assert alerts.evaluate(t0) == []                           # pending: not 10 minutes yet
    assert alerts.evaluate(t0 + timedelta(minutes=5)) == []
    due = alerts.evaluate(t0 + timedelta(minutes=10))
    assert sorted(d["channel"] for d in due) == ["email", "webhook"]
    assert alerts.evaluate(t0 + timedelta(minutes=11)) == []   # claimed: not sent twice
    for d in due:
        assert deliver(d, settings) is None
        alerts.finish(d["delivery_id"], d["attempt"], None)
    (rcpts, message), = mailbox.messages
    assert rcpts == ["dolma@example.cn"] and "cabinet-0001" in _subject(message)
    assert "温度超出范围" in _subject(message) and "9.5 °C" in message.get_payload(decode=True).decode()
    (headers, body), = receiver.received
    assert verify_signature(rule["webhook_secret"], headers["X-Cabinet-Signature"], body)
    assert not verify_signature(rule["webhook_secret"], headers["X-Cabinet-Signature"],
                                body.replace(b"9.5", b"4.5"))          # tampered
    assert not verify_signature("another secret", headers["X-Cabinet-Signature"], body)
    assert json.loads(body)["event"] == "fired" and json.loads(body)["kind"] == "temperature"
    # Back in the band: resolved, and that is delivered too.
    _upload(backend, 2, t0 + timedelta(minutes=12), {"celsius": 4.4, "setpoint_celsius": 4.0})
    due = alerts.evaluate(t0 + timedelta(minutes=12))
    assert {d["alert"]["event"] for d in due} == {"resolved"}
    (alert,) = alerts.recent(10)
    assert alert["state"] == "resolved" and len(alert["deliveries"]) == 4
    assert [d["status"] for d in alert["deliveries"][:2]] == ["sent", "sent"]


def test_a_failed_webhook_is_retried_with_backoff_and_quiet_hours_hold_deliveries(
        quiet_backend):
    backend, alerts = quiet_backend, quiet_backend.storage.alerts
    failing = Receiver(statuses=[500])
    try:
        alerts.add_rule({"kind": "offline", "minutes": 5, "band_celsius": 2.0,
                         "cabinet_id": "cabinet-0001", "emails": [],
                         "webhook_url": failing.url, "quiet_start": None, "quiet_end": None,
                         "tz": "UTC"}, "admin")
        t0 = datetime.now(timezone.utc)
        _upload(backend, 1, t0, {"celsius": 4.0, "setpoint_celsius": 4.0})
        assert alerts.evaluate() == []                            # seen just now
        late = t0 + timedelta(minutes=6)
        (d,) = alerts.evaluate(late)
        error = deliver(d, AlertSettings())
        assert error.startswith("HTTP 500")
        alerts.finish(d["delivery_id"], d["attempt"], error, now=late)
        (alert,) = alerts.recent(1)
        (delivery,) = alert["deliveries"]
        assert delivery["status"] == "pending" and delivery["last_error"].startswith("HTTP 500")
        retry_at = datetime.fromisoformat(delivery["next_attempt_at"].replace("Z", "+00:00"))
        assert abs(retry_at - late - timedelta(seconds=30)) < timedelta(milliseconds=1)
        assert alerts.evaluate(retry_at - timedelta(seconds=1)) == []
        (again,) = alerts.evaluate(retry_at + timedelta(milliseconds=1))
        assert again["attempt"] == 2 and deliver(again, AlertSettings()) is None
        assert len(failing.received) == 2
    finally:
        failing.close()
    # Quiet 22:00-07:00 in Lhasa's zone: an alert at 23:30 waits until 07:00.
    from backend.storage.alerts import quiet_until
    rule = {"quiet_start": "22:00", "quiet_end": "07:00", "tz": "Asia/Shanghai"}
    night = datetime(2026, 12, 1, 15, 30, tzinfo=timezone.utc)          # 23:30 there
    assert quiet_until(rule, night) == datetime(2026, 12, 1, 23, 0, tzinfo=timezone.utc)
    assert quiet_until(rule, night + timedelta(hours=8)) is None        # 07:30 there


def test_rules_are_checked_and_only_managers_make_them(quiet_backend):
    backend = quiet_backend
    status, error = backend.operator("POST", "alerts/rules", {"kind": "offline", "minutes": 5})
    assert status == 422 and "must reach someone" in error["error"] + json.dumps(error)
    status, error = backend.operator("POST", "alerts/rules", {
        "kind": "offline", "emails": ["a@b.cn"], "quiet_start": "22:00"})
    assert status == 422 and "quiet_end" in json.dumps(error)
    status, error = backend.operator("POST", "alerts/rules", {
        "kind": "offline", "emails": ["a@b.cn"], "tz": "Mars/Olympus"})
    assert status == 422 and "unknown time zone" in json.dumps(error)
    status, error = backend.operator("POST", "alerts/rules", {
        "kind": "melting", "emails": ["a@b.cn"]})
    assert status == 422
    status, _ = backend.operator("POST", "alerts/rules", {"kind": "offline", "emails": ["a@b.cn"]},
                                 token=backend.token_for("technician"))
    assert status == 403
    status, made = backend.operator("POST", "alerts/rules", {"kind": "offline",
                                                             "emails": ["a@b.cn"]})
    assert status == 201 and made["webhook_secret"] is None
    assert backend.operator("GET", "alerts/rules")[1]["rules"][0]["webhook_secret"] is None
    assert backend.operator("DELETE", f"alerts/rules/{made['rule_id']}")[0] == 204
    assert backend.operator("DELETE", f"alerts/rules/{made['rule_id']}")[0] == 404


def test_a_killed_cabinet_raises_the_offline_alert_made_on_the_alerts_page(tmp_path, mailbox,
                                                                         receiver):
    settings = AlertSettings(smtp_host="127.0.0.1", smtp_port=mailbox.port,
                             evaluate_seconds=0.5)
    backend, daemon = start_synced(tmp_path, [], backend_kw={"service_kw": {
        "alert_settings": settings}},
        extra_config="[climate]\ntelemetry_interval_seconds = 10\n")
    backend.storage.people.create_user("dolma", "operator", PASSWORD, "test")
    try:
        with browser(SIZES["desktop"]) as page:
            log_in(page, backend.url, "dolma")
            page.click('header a[href="#/alerts"]')
            form = page.locator("#new-rule")
            form.locator("select[name=kind]").select_option("offline")
            form.locator("input[name=minutes]").fill("0.5")
            form.locator("input[name=emails]").fill("dolma@example.cn")
            form.locator("input[name=webhook]").fill(receiver.url)
            form.locator("button[type=submit]").click()
            secret = page.locator("#webhook-secret code").get_attribute("data-secret")
            page.locator('#rule-table tr[data-rule]').wait_for()
            assert len(secret) == 64

            daemon.kill()
            wait_for(lambda: mailbox.messages and receiver.received, timeout=90,
                     what="the offline alert's email and webhook")
            (rcpts, message), = mailbox.messages
            assert rcpts == ["dolma@example.cn"] and "离线" in _subject(message)
            (headers, body), = receiver.received
            assert verify_signature(secret, headers["X-Cabinet-Signature"], body)
            alert = json.loads(body)
            assert (alert["kind"], alert["cabinet_id"], alert["event"]) == (
                "offline", "cabinet-0001", "fired")
            row = page.locator('#alert-table tr[data-state="firing"]')
            row.locator('[data-delivery="webhook"][data-status="sent"]').wait_for()
            row.locator('[data-delivery="email"][data-status="sent"]').wait_for()
            assert page.problems == []
    finally:
        daemon.terminate()
        backend.close()


def test_a_signature_is_refused_when_stale():
    header = sign("s", b"{}", now=1000)
    assert verify_signature("s", header, b"{}", now=1100)
    assert not verify_signature("s", header, b"{}", now=2000)
    assert not verify_signature("s", "garbage", b"{}")


def test_what_a_hostile_pass_found_in_alerts_stays_fixed(quiet_backend, receiver):
    backend, alerts = quiet_backend, quiet_backend.storage.alerts
    # An alarm dated in year 9999 neither stops the evaluation nor dates the alert there.
    alerts.add_rule({"kind": "lockout", "minutes": 0, "band_celsius": 2.0, "cabinet_id": None,
                     "emails": [], "webhook_url": receiver.url, "quiet_start": None,
                     "quiet_end": None, "tz": "UTC"}, "admin")
    _upload(backend, 1, datetime.now(timezone.utc), {
        "alarm_id": "a1", "kind": "food_safety_lockout", "state": "raised", "detail": "x",
        "raised_at": "9999-12-31T23:00:00-05:00"}, kind="alarm")
    (due,) = alerts.evaluate()
    assert due["alert"]["since"] < "2200"
    assert alerts.evaluate() == []                                   # and again, no error
    # A deleted rule's firing alert ends; its undelivered message is not sent.
    rule_id = alerts.rules()[0]["rule_id"]
    backend.operator("DELETE", f"alerts/rules/{rule_id}")
    (alert,) = alerts.recent(5)
    assert alert["state"] == "resolved"
    assert [d["status"] for d in alert["deliveries"]] == ["failed"]
    # A target that cannot be sent to is that delivery's error, not the loop's end.
    broken = {"channel": "email", "target": "a@[", "alert": due["alert"], "secret": None}
    assert deliver(broken, AlertSettings(smtp_host="127.0.0.1", smtp_port=9))
    assert backend.operator("POST", "alerts/rules", {"kind": "offline",
                                                     "emails": ["a@["]})[0] == 422
    assert backend.operator("POST", "alerts/rules", {"kind": "offline",
                                                     "webhook_url": "http://a..b/"})[0] == 422
    assert not verify_signature("s", "t=" + "9" * 400 + ",v1=ü", b"{}")


def test_quiet_hours_hold_a_delivery_until_they_end_in_utc(quiet_backend):
    backend, alerts = quiet_backend, quiet_backend.storage.alerts
    alerts.add_rule({"kind": "offline", "minutes": 5, "band_celsius": 2.0, "cabinet_id": None,
                     "emails": ["a@example.cn"], "webhook_url": None, "quiet_start": "22:00",
                     "quiet_end": "07:00", "tz": "Asia/Shanghai"}, "admin")
    seen = datetime(2026, 12, 1, 14, 0, tzinfo=timezone.utc)          # 22:00 in Shanghai
    _upload(backend, 1, seen, {"celsius": 4.0, "setpoint_celsius": 4.0})
    backend.storage.engine.dispose()
    import sqlalchemy as sa
    from backend.storage.schema import cabinets
    with backend.storage.engine.begin() as connection:                # last contact then
        connection.execute(sa.update(cabinets).values(last_seen_at=seen))
    assert alerts.evaluate(seen + timedelta(minutes=30)) == []        # fired, held till 07:00
    end = datetime(2026, 12, 1, 23, 0, tzinfo=timezone.utc)           # 07:00 in Shanghai
    assert alerts.evaluate(end - timedelta(minutes=1)) == []
    (due,) = alerts.evaluate(end + timedelta(seconds=1))
    assert due["target"] == "a@example.cn"
