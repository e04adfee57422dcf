"""How the checkout machine's decisions reach the world: the controller's side of `Effects`.

Every call runs on the controller thread. Timers are named so that the machine can cancel what it
started; journal writes and the sale commit go to the store synchronously, because the lock must not
open before the journal is durable and the receipt must not show before the sale is.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Any, Callable

from .alarms import STORAGE_ERRORS
from .planogram import Planogram
from .ports import Ports
from .store import utc_now
from .timers import Timer
from .weighing import StabilityFilter

log = logging.getLogger(__name__)


class SessionEffects:
    def __init__(self, ports: Ports, *, outputs: Any, shelves: dict[int, StabilityFilter],
                 planogram: Callable[[], Planogram],
                 finished: Callable[[dict[str, Any], str, dict[str, Any] | None,
                                     Planogram | None], None],
                 storage_failed: Callable[[BaseException], None],
                 door_alarms: Callable[[str, str, bool], list[tuple[str, str]]] | None = None):
        """`outputs`: the lock, the buzzer and the shelves' polling rate (controller.Actuators);
        `shelves`: the stability filters; `finished`: the controller's follow-up once a
        session's end is recorded; `storage_failed`: a write the store refused;
        `door_alarms(kind, detail, raising)`: the alarms the checkout's one door stands for on a
        cabinet with several (each open door's `held_open:doorN`)."""
        self.p = ports
        self._door_alarms = door_alarms or (lambda kind, detail, raising: [(kind, detail)])
        self.out, self.shelves = outputs, shelves
        self._planogram, self._finished, self._storage_failed = planogram, finished, storage_failed
        self._timers: dict[str, Timer] = {}

    def unlock(self) -> None:
        self.out.lock.unlock()

    def lock(self) -> None:
        self.out.lock.lock()

    def buzzer(self, on: bool) -> None:
        (self.out.buzzer.energise if on else self.out.buzzer.release)()

    def start_timer(self, name: str, seconds: float, fn: Callable[[], None]) -> None:
        self.cancel_timer(name)
        self._timers[name] = self.p.timers.call_later(seconds, name, fn)

    def cancel_timer(self, name: str) -> None:
        timer = self._timers.pop(name, None)
        if timer is not None:
            timer.cancel()

    def restart_weighing(self) -> None:
        now = self.p.clock()
        for stability in self.shelves.values():
            stability.restart(now)
        self.out.weigh_fast(True)

    def weights(self) -> dict[int, tuple[float | None, float | None]]:
        return {n: (f.latest_fresh, f.stable_grams) for n, f in self.shelves.items()}

    def planogram(self) -> Planogram:
        return self._planogram()

    def journal_begin(self, session: dict[str, Any]) -> None:
        with self._storage():
            self.p.store.begin_session(session)
        self.out.weigh_fast(True)

    def journal_update(self, session: dict[str, Any], state: str) -> None:
        with self._storage():
            self.p.store.update_session(session, state)

    def finish(self, session: dict[str, Any], outcome: str, record: dict[str, Any] | None,
               planogram: Planogram | None) -> None:
        with self._storage():
            self.p.store.finish_session(session, outcome, record,
                                        None if planogram is None else planogram.to_json())
        # Recorded: from here on nothing may look like a failed write (the checkout would write
        # it again for ever), so the follow-up's own failures are only logged.
        try:
            self._finished(session, outcome, record, planogram)
        except Exception:
            log.exception("session %s recorded; its follow-up failed", session["session_id"])

    def raise_alarm(self, kind: str, detail: str) -> None:
        for each, said in self._door_alarms(kind, detail, True):
            self.p.alarms.raise_alarm(each, said)

    def clear_alarm(self, kind: str) -> None:
        for each, _ in self._door_alarms(kind, "", False):
            self.p.alarms.clear_alarm(each)

    def now_utc(self) -> str:
        return utc_now()

    @contextmanager
    def _storage(self):
        """A write the store refused (a full disk) raises the storage alarm, then the error."""
        try:
            yield
        except STORAGE_ERRORS as exc:
            self._storage_failed(exc)
            raise
