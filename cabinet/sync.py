"""Talking to the operators' backend: the uploader thread (outbox -> backend) and the command
poller thread (backend -> controller), both with `requests`, both only posting events to the
controller and never touching its state.

Delivery is exactly-once as the backend sees it: a record is marked delivered only after the backend
says it has durably stored it; anything else (a timeout, a reset, a 500, a reply cut short, an
acknowledgement lost on the way back) means the batch goes again, and the backend ignores the
record ids it already has. Backoff is exponential with full jitter, capped at five minutes, so a
fleet that lost its backend does not come back in lockstep; Retry-After is honoured as given.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import Callable

import requests

from .events import CommandsArrived, SyncReported
from .outbox import Batch, OutboxQueue
from .sync_protocol import (COMMAND_PAGE_BYTES, COMMAND_PAGE_FLOOR_BYTES, MAX_REPLY_BYTES,
                            ReplyError, ReplyTooLarge, parse_ack, parse_commands, retry_after)

log = logging.getLogger("cabinetd.sync")


class Backoff:
    """Full jitter: the n-th wait is uniform in [0, min(cap, base * 2^n)]."""

    def __init__(self, base: float = 1.0, cap: float = 300.0, rng: random.Random | None = None):
        self.base, self.cap, self.failures = base, cap, 0
        self.rng = rng or random.Random()

    def next(self) -> float:
        ceiling = min(self.cap, self.base * 2 ** min(self.failures, 30))
        self.failures += 1
        return self.rng.uniform(0, ceiling)

    def reset(self) -> None:
        self.failures = 0


class Transport:
    """One requests.Session with the cabinet's credentials; replies are read up to a limit."""

    def __init__(self, base_url: str, cabinet_id: str, token: str, *, ca_file: str = "",
                 connect_timeout: float = 5.0, read_timeout: float = 30.0):
        self.base = base_url.rstrip("/") + f"/v1/cabinets/{cabinet_id}"
        self.session = requests.Session()
        self.session.headers.update({"Authorization": f"Bearer {token}",
                                     "User-Agent": f"cabinetd ({cabinet_id})"})
        # Passed with every request: a session-wide `verify` loses to REQUESTS_CA_BUNDLE.
        self.verify: str | bool = ca_file or True
        self.timeouts = (connect_timeout, read_timeout)

    def request(self, method: str, path: str, *, data: bytes | None = None,
                params: dict | None = None, read_timeout: float | None = None
                ) -> tuple[int, dict[str, str], bytes]:
        """(status, headers, body); raises requests.RequestException for transport failures and
        ReplyError for a reply over the size limit."""
        headers = {"Content-Type": "application/json"} if data is not None else {}
        timeout = (self.timeouts[0], read_timeout or self.timeouts[1])
        with self.session.request(method, self.base + path, data=data, params=params,
                                  headers=headers, timeout=timeout, stream=True,
                                  verify=self.verify) as reply:
            body = bytearray()
            for chunk in reply.iter_content(65536):
                body += chunk
                if len(body) > MAX_REPLY_BYTES:
                    raise ReplyTooLarge(f"reply is over {MAX_REPLY_BYTES} bytes")
            return reply.status_code, dict(reply.headers), bytes(body)

    def close(self) -> None:
        self.session.close()


def _reason(status: int, body: bytes) -> str:
    text = body[:300].decode("utf-8", errors="replace").strip()
    return f"HTTP {status}" + (f": {text}" if text else "")


class Uploader(threading.Thread):
    def __init__(self, outbox: OutboxQueue, transport: Transport, emit: Callable[[object], None],
                 *, cabinet_id: str, max_records: int = 500, max_bytes: int = 1 << 20,
                 budget_bytes: int = 200 << 20, keep_delivered_days: float = 7.0,
                 backoff: Backoff | None = None, idle_seconds: float = 5.0):
        super().__init__(name="uploader", daemon=True)
        self.outbox, self.transport, self.emit = outbox, transport, emit
        self.cabinet_id = cabinet_id
        self.max_records, self.max_bytes = max_records, max_bytes
        self.limit = max_records       # shrinks to isolate a record the backend cannot take
        # Commands may ride on the acknowledgement, up to this; none after an ack too large to
        # read (the long-poll brings them instead), so the batch is never re-sent identically;
        # asked for again an hour later.
        self.command_bytes = COMMAND_PAGE_BYTES
        self._commandless_since = 0.0
        self.budget_bytes, self.keep_days = budget_bytes, keep_delivered_days
        self.backoff = backoff or Backoff()
        self.idle_seconds = idle_seconds
        self._wake = threading.Event()
        self._halt = threading.Event()
        self._housekept = 0.0
        self._idle = False

    def wake(self) -> None:
        self._wake.set()

    def close(self) -> None:
        self._halt.set()
        self._wake.set()
        if self.is_alive():
            self.join(timeout=15)

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                delay = self.step()
            except Exception as exc:  # never let the thread die: the queue is on disk
                log.exception("uploader step failed")
                self._report(False, error=f"uploader error: {type(exc).__name__}: {exc}")
                delay = self.backoff.next()
            if delay and self._idle:
                self._wake.wait(delay)  # a new record wakes it at once
            elif delay:
                self._halt.wait(delay)  # backing off: new records wait too

    def step(self) -> float:
        """Send one batch; return how long to wait before the next (0: at once)."""
        self._wake.clear()  # before reading, so that a record committed from now on wakes us
        self._idle = False
        if time.monotonic() - self._housekept > 60:
            self._housekeep()
        batch = self.outbox.next_batch(self.limit, self.max_bytes)
        if not batch:
            self._idle = True
            return self.idle_seconds
        try:
            status, headers, body = self.transport.request(
                "POST", "/records", data=batch.payload(self.cabinet_id, self.command_bytes))
        except ReplyTooLarge as exc:
            if self.command_bytes:
                self._without_commands()
                return self._failed(f"acknowledgement too large ({exc}); asking for it "
                                    "without commands")
            if len(batch) > 1:
                self.limit = max(1, len(batch) // 2)
            return self._failed(f"acknowledgement too large ({exc})")
        except (requests.RequestException, ReplyError, OSError) as exc:
            return self._failed(f"{type(exc).__name__}: {exc}"[:300])
        if status == 200:
            try:
                ack = parse_ack(body, batch.seqs)
            except ReplyTooLarge as exc:
                self._without_commands()
                return self._failed(f"acknowledgement too large ({exc})")
            except ReplyError as exc:
                return self._failed(f"unusable acknowledgement: {exc}")
            return self._acknowledged(batch, ack)
        if status in (429, 503):
            wait = retry_after(headers.get("Retry-After"), time.time())
            self._failed(_reason(status, body))
            return wait if wait is not None else self.backoff.next()
        if status in (400, 413, 422) and len(batch) > 1:
            # Too big, or something in it is refused: halve until the culprit is alone.
            self.limit = max(1, len(batch) // 2)
            return 0
        if status in (400, 413, 422):
            dead = self.outbox.dead_letter(batch.seqs[0], _reason(status, body))
            self._report(False, dead_letters=(dead,) if dead else (),
                         error=f"record {batch.seqs[0]} refused: {_reason(status, body)}")
            return 0
        if status in (401, 403):
            self._failed(_reason(status, body), auth_failed=True)
            return self.backoff.next()
        return self._failed(_reason(status, body))

    def _without_commands(self) -> None:
        self.command_bytes = 0
        self._commandless_since = time.monotonic()

    def _acknowledged(self, batch: Batch, ack) -> float:
        if not self.command_bytes and time.monotonic() - self._commandless_since > 3600:
            self.command_bytes = COMMAND_PAGE_BYTES
        self.outbox.mark_delivered(ack.stored)
        dead = [d for seq, reason in ack.rejected.items()
                if (d := self.outbox.dead_letter(seq, reason)) is not None]
        self.backoff.reset()
        self.limit = min(self.max_records, self.limit * 2)
        self._report(True, delivered=len(ack.stored), dead_letters=tuple(dead))
        if ack.commands:
            self.emit(CommandsArrived(ack.commands, ack.server_time, time.monotonic(), time.time()))
        return 0

    def _failed(self, error: str, auth_failed: bool = False) -> float:
        log.warning("sync failed: %s", error)
        try:
            self.outbox.set_status("last_error", {"error": error, "at": time.time()})
        except Exception:
            log.exception("cannot record the sync error")
        self._report(False, error=error, auth_failed=auth_failed)
        return self.backoff.next()

    def _report(self, ok: bool, **kw) -> None:
        self.emit(SyncReported(ok, **kw))

    def _housekeep(self) -> None:
        self._housekept = time.monotonic()
        thinned = self.outbox.thin_telemetry(self.budget_bytes)
        if thinned:
            log.warning("outbox over its %d byte budget: %d telemetry samples thinned",
                        self.budget_bytes, thinned)
        pruned = self.outbox.prune_delivered(self.keep_days)
        if pruned:
            log.info("pruned %d delivered records", pruned)


class CommandPoller(threading.Thread):
    """Long-polls the backend for commands: a remote unlock arrives as soon as it is issued."""

    def __init__(self, transport: Transport, emit: Callable[[object], None], *,
                 wait_seconds: float = 25.0, backoff: Backoff | None = None):
        super().__init__(name="command-poller", daemon=True)
        self.transport, self.emit = transport, emit
        self.wait_seconds = wait_seconds
        self.backoff = backoff or Backoff()
        self.after = 0
        # How many bytes of commands one reply may hold; halved after a reply too large (a
        # backend that ignores it, a proxy), doubled back with each good reply.
        self.page_bytes = COMMAND_PAGE_BYTES
        self._too_large = False
        self._halt = threading.Event()

    def close(self) -> None:
        self._halt.set()
        self.transport.close()  # breaks a long-poll in progress
        if self.is_alive():
            self.join(timeout=0.5)  # a long-poll in flight ends with the process

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                delay = self.step()
            except Exception:
                if self._halt.is_set():
                    return
                log.exception("command poll failed")
                delay = self.backoff.next()
            if delay:
                self._halt.wait(delay)

    def step(self) -> float:
        try:
            status, _, body = self.transport.request(
                "GET", "/commands", params={"after": self.after, "wait": self.wait_seconds,
                                            "max_bytes": self.page_bytes},
                read_timeout=self.wait_seconds + 10)
            if status == 200:
                reply = parse_commands(body)
        except ReplyTooLarge as exc:
            return self._reply_too_large(exc)
        except (requests.RequestException, ReplyError, OSError) as exc:
            if not self._halt.is_set():
                log.warning("command poll failed: %s", exc)
            return self.backoff.next()
        if status != 200:
            log.warning("command poll: %s", _reason(status, body))
            return self.backoff.next()
        self.backoff.reset()
        self.page_bytes = min(COMMAND_PAGE_BYTES, self.page_bytes * 2)
        if self._too_large:
            self._too_large = False
            self.emit(SyncReported(True, channel="commands"))
        if reply.commands:
            seqs = [c["seq"] for c in reply.commands if isinstance(c, dict)
                    and isinstance(c.get("seq"), int) and not isinstance(c["seq"], bool)]
            if seqs:
                self.after = max(self.after, max(seqs))
            self.emit(CommandsArrived(reply.commands, reply.server_time, time.monotonic(),
                                      time.time()))
        return 0

    def _reply_too_large(self, exc: ReplyTooLarge) -> float:
        """Reported (an alarm that reaches the backend as a record) and asked again for half:
        the same request would only fetch the same reply."""
        asked = self.page_bytes
        self.page_bytes = max(COMMAND_PAGE_FLOOR_BYTES, asked // 2)
        self._too_large = True
        error = (f"a command reply was too large ({exc}) though at most {asked} bytes of "
                 f"commands were asked for; asking for {self.page_bytes}")
        log.warning("command poll: %s", error)
        self.emit(SyncReported(False, error=error, channel="commands", reply_too_large=True))
        return self.backoff.next()
