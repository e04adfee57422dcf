"""The cabinet's alarms: in the store, so that they survive a restart and reach the backend through
the outbox, and in memory while the store cannot be written.

A full SD card is exactly when an alarm matters most and when the database refuses it (issue 15
#4), so a failed write never loses an alarm: it is kept here, shown on /api/state at once, and
written (with `disk_full` itself, raised and cleared, so the backend learns what happened) as soon
as the store takes writes again. `retry()` is called by the controller's storage timer.
"""

from __future__ import annotations

import errno
import logging
import sqlite3
from typing import Any

from .store import utc_now

log = logging.getLogger("cabinetd")

STORAGE_ERRORS = (sqlite3.Error, OSError)


def storage_alarm_kind(exc: BaseException) -> str:
    """`disk_full` for a full disk (SQLite says so in words, the OS with ENOSPC), else
    `storage_error` (a read-only or failing card)."""
    if getattr(exc, "errno", None) == errno.ENOSPC or "full" in str(exc).lower():
        return "disk_full"
    return "storage_error"


class Alarms:
    def __init__(self, store):
        self.store = store
        self._saved: list[dict[str, Any]] = store.active_alarms()
        self._unsaved: dict[str, dict[str, Any]] = {}  # kind -> raised while the store refused
        self._unsaved_clears: dict[str, str | None] = {}  # kind -> by, cleared likewise

    @property
    def active(self) -> list[dict[str, Any]]:
        saved = [a for a in self._saved if a["kind"] not in self._unsaved_clears]
        kinds = {a["kind"] for a in saved}
        return saved + [a for kind, a in self._unsaved.items() if kind not in kinds]

    def is_active(self, kind: str) -> bool:
        return any(a["kind"] == kind for a in self.active)

    @property
    def storage_failing(self) -> bool:
        return bool(self._unsaved or self._unsaved_clears)

    def raise_(self, kind: str, detail: str) -> bool:
        """Raise `kind`; True when it was not already active."""
        if kind in self._unsaved_clears:
            # Its clear was never written, so the stored alarm is still raised: it stands again.
            del self._unsaved_clears[kind]
            return True
        if self.is_active(kind):
            return False
        try:
            alarm = self.store.raise_alarm(kind, detail)
        except STORAGE_ERRORS as exc:
            self.storage_failed(exc)
            self._unsaved[kind] = {"alarm_id": None, "kind": kind, "detail": detail,
                                   "raised_at": utc_now()}
            return True
        self._refresh()
        return alarm["new"]

    def clear(self, kind: str, by: str | None = None) -> bool:
        if not self.is_active(kind):
            return False  # nothing to clear: no database round trip
        if self._unsaved.pop(kind, None) is not None and \
                not any(a["kind"] == kind for a in self._saved):
            return True  # it never reached the store
        try:
            cleared = self.store.clear_alarm(kind, by)
        except STORAGE_ERRORS as exc:
            self.storage_failed(exc)
            self._unsaved_clears[kind] = by
            return True
        self._refresh()
        return cleared

    def storage_failed(self, exc: BaseException) -> None:
        """The store refused a write: say so now, from memory."""
        kind = storage_alarm_kind(exc)
        if kind not in self._unsaved:
            log.error("ALARM %s: the database cannot be written: %s", kind, exc)
            self._unsaved[kind] = {"alarm_id": None, "kind": kind, "raised_at": utc_now(),
                                   "detail": f"the database could not be written ({exc})"}

    def retry(self) -> bool:
        """Write what was kept in memory; True when the store takes writes again (or never
        failed). A storage alarm is written raised: the controller clears it once the card has
        room again (cabinet/reserve.py)."""
        if not self.storage_failing:
            return True
        try:
            for kind, by in list(self._unsaved_clears.items()):
                self.store.clear_alarm(kind, by)
                del self._unsaved_clears[kind]
            for kind, alarm in list(self._unsaved.items()):
                self.store.raise_alarm(kind, alarm["detail"])
                del self._unsaved[kind]
        except STORAGE_ERRORS as exc:
            log.debug("the database still cannot be written: %s", exc)
            return False
        finally:
            self._refresh()
        log.warning("the database takes writes again; alarms kept in memory are recorded")
        return True

    def _refresh(self) -> None:
        try:
            self._saved = self.store.active_alarms()
        except STORAGE_ERRORS as exc:  # reads fail only on a broken card; keep what we had
            log.error("cannot read the alarms: %s", exc)
