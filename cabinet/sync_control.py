"""The controller's side of sync: what the uploader and the command poller report, turned into
alarms, the `sync` part of the state, and commands run on the controller thread.

Alarms: `sync_rejected` when the backend refuses a record (it is kept in the dead-letter table,
`cabinet queue` lists it); `sync_auth` when the backend refuses the device token; `sync_offline`
when records have waited longer than sync.offline_alarm_minutes without a successful upload;
`sync_reply_too_large` while the backend sends command replies over the cabinet's limit.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from .commands import CommandRunner
from .ports import Ports
from .events import CommandsArrived, SyncReported

log = logging.getLogger("cabinetd.sync")


class SyncControl:
    def __init__(self, ports: Ports, runner: CommandRunner, *, pending: Callable[[], int]):
        """`pending`: how many records wait in the outbox (the controller's count)."""
        self.p = ports
        self._pending = pending
        self.configured = bool(ports.config.sync.backend_url)
        self.runner = runner
        self.last_success: float | None = None     # monotonic
        self.last_success_at: str | None = None
        self.last_error: str | None = None
        self.dead_letters = 0
        self.commands_run = 0
        self._since = ports.clock()
        if self.configured:
            ports.timers.call_later(60, "sync-offline-check", self._check_offline)

    def on_report(self, event: SyncReported) -> None:
        from .store import utc_now

        if event.channel == "commands":
            if event.ok:
                self.p.alarms.clear_alarm("sync_reply_too_large")
            elif event.reply_too_large:
                self.p.alarms.raise_alarm("sync_reply_too_large", event.error)
            return
        if event.ok:
            self.last_success, self.last_success_at = self.p.clock(), utc_now()
            self.last_error = None
            self.p.alarms.clear_alarm("sync_auth")
            self.p.alarms.clear_alarm("sync_offline")
        else:
            self.last_error = event.error
            if event.auth_failed:
                self.p.alarms.raise_alarm("sync_auth", f"the backend refused the device token: "
                                                f"{event.error}")
        if event.dead_letters:
            self.dead_letters += len(event.dead_letters)
            first = event.dead_letters[0]
            self.p.alarms.raise_alarm("sync_rejected",
                               f"the backend refused {first['kind']} record {first['record_id']}: "
                               f"{first['reason']} (see `cabinet queue`)")

    def on_commands(self, event: CommandsArrived) -> None:
        # Each command on its own: one that breaks must not skip the rest, nor reach the
        # controller's error path (which locks the lock, during a session too).
        for raw in event.commands:
            try:
                if self.runner.receive(raw, event.server_time, event.received_at,
                                       event.wall_at) is not None:
                    self.commands_run += 1
            except Exception:
                log.exception("command %r broke its runner", str(raw)[:200])

    def _check_offline(self) -> None:
        self.p.timers.call_later(60, "sync-offline-check", self._check_offline)
        since = self.last_success if self.last_success is not None else self._since
        minutes = (self.p.clock() - since) / 60
        pending = self._pending()
        if pending and minutes >= self.p.config.sync.offline_alarm_minutes:
            self.p.alarms.raise_alarm("sync_offline", f"{pending} records waiting; "
                                               f"no successful upload for {minutes:.0f} min"
                                               + (f" ({self.last_error})" if self.last_error
                                                  else ""))

    def snapshot(self) -> dict[str, Any]:
        return {"configured": self.configured, "last_success_at": self.last_success_at,
                "last_error": self.last_error, "dead_letters": self.dead_letters,
                "commands_run": self.commands_run}
