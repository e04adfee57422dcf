"""Alert delivery: the loop that evaluates the operators' rules (backend/storage/alerts.py) every
few seconds and sends what is due, by email (SMTP, with STARTTLS when configured) and by webhook
(a JSON POST signed with the rule's secret), each retried with backoff until it goes through.

A webhook carries `X-Cabinet-Signature: t=UNIX_TIME,v1=HEX`, where HEX is the HMAC-SHA256 of
`UNIX_TIME.` followed by the body, keyed with the secret shown once when the rule was made;
`verify_signature` is what a receiver runs (and the tests do).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import smtplib
import time
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import requests
from starlette.concurrency import run_in_threadpool

log = logging.getLogger("backend.alerts")
SIGNATURE_HEADER = "X-Cabinet-Signature"
TIMEOUT = 10

WORDS = {  # kind -> (Chinese, English)
    "offline": ("柜机离线", "cabinet offline"),
    "temperature": ("温度超出范围", "temperature out of band"),
    "lockout": ("食品安全锁定", "food-safety lockout"),
    "forced_open": ("柜门被强行打开", "door forced open"),
    "unauthorised": ("未经授权取走商品", "unauthorised removal"),
    "sold_out": ("商品售罄", "sold out"),
    "no_sales": ("长时间无销售", "no sales"),
}


@dataclass(frozen=True)
class AlertSettings:
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_from: str = "cabinet-backend@localhost"
    smtp_starttls: bool = False
    smtp_username: str | None = None
    smtp_password: str | None = None
    evaluate_seconds: float = 15.0


def sign(secret: str, body: bytes, now: float | None = None) -> str:
    stamp = int(now if now is not None else time.time())
    mac = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={stamp},v1={mac}"


def verify_signature(secret: str, header: str, body: bytes, tolerance: float = 300,
                     now: float | None = None) -> bool:
    """A receiver's check: the signature is the secret's and no older than `tolerance` s."""
    try:
        parts = dict(p.split("=", 1) for p in header.split(","))
        stamp = int(parts["t"][:20])
        if abs((now if now is not None else time.time()) - stamp) > tolerance:
            return False
    except (ValueError, KeyError, OverflowError):
        return False
    expected = hmac.new(secret.encode(), f"{stamp}.".encode() + body,
                        hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), parts.get("v1", "").encode("utf-8", "replace"))


def deliver(delivery: dict[str, Any], settings: AlertSettings) -> str | None:
    """Send one delivery; None when it went through, else why not."""
    try:
        if delivery["channel"] == "webhook":
            return _webhook(delivery)
        return _email(delivery, settings)
    except Exception as exc:    # any failure is this delivery's, retried; never the loop's
        return f"{type(exc).__name__}: {exc}"


def _webhook(delivery: dict[str, Any]) -> str | None:
    body = json.dumps(delivery["alert"], ensure_ascii=False, sort_keys=True).encode()
    reply = requests.post(delivery["target"], data=body, timeout=TIMEOUT, headers={
        "Content-Type": "application/json", "User-Agent": "cabinet-backend alerts",
        SIGNATURE_HEADER: sign(delivery["secret"] or "", body)}, allow_redirects=False)
    if 200 <= reply.status_code < 300:
        return None
    return f"HTTP {reply.status_code}: {reply.text[:200]}"


def _email(delivery: dict[str, Any], settings: AlertSettings) -> str | None:
    if not settings.smtp_host:
        return "no SMTP server configured ([alerts] smtp_host)"
    alert = delivery["alert"]
    zh, en = WORDS.get(alert["kind"], (alert["kind"], alert["kind"]))
    resolved = alert["event"] == "resolved"
    message = EmailMessage()
    message["From"] = settings.smtp_from
    message["To"] = delivery["target"]
    message["Subject"] = (f"[{alert['cabinet_id']}] {'已恢复' if resolved else '告警'}：{zh} / "
                          f"{'resolved' if resolved else 'alert'}: {en}")
    message.set_content("\n".join([
        f"{zh}（{alert['cabinet_id']}）", f"{en} ({alert['cabinet_id']})", "",
        alert["detail"], "",
        f"since / 开始: {alert['since']}", f"fired / 告警: {alert['fired_at']}",
        *([f"resolved / 恢复: {alert['resolved_at']}"] if resolved else []),
        f"alert / 编号: {alert['alert_id']}"]))
    with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=TIMEOUT) as smtp:
        if settings.smtp_starttls:
            smtp.starttls()
        if settings.smtp_username:
            smtp.login(settings.smtp_username, settings.smtp_password or "")
        refused = smtp.send_message(message)
    return f"refused: {refused}" if refused else None


async def run(storage, settings: AlertSettings) -> None:
    """Evaluate and deliver for ever (the app's lifespan starts and cancels it)."""
    while True:
        try:
            for delivery in await run_in_threadpool(storage.alerts.evaluate) or ():
                error = await run_in_threadpool(deliver, delivery, settings)
                if error:
                    log.warning("alert %s to %s: %s", delivery["alert"]["alert_id"],
                                delivery["target"], error)
                await run_in_threadpool(storage.alerts.finish, delivery["delivery_id"],
                                        delivery["attempt"], error)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("alert evaluation failed; trying again")
        await asyncio.sleep(settings.evaluate_seconds)
