"""How the checkout machine's decisions reach the world: the controller's side of `Effects`.

Every call runs on the controller thread. Timers are named so that the machine can cancel what it
started; journal writes and the sale commit go to the store synchronously, because the lock must not
open before the journal is durable and the receipt must not show before the sale is.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable

from .alarms import STORAGE_ERRORS
from .planogram import Planogram
from .store import utc_now
from .timers import Timer

if TYPE_CHECKING:
    from .controller import Controller

log = logging.getLogger(__name__)


class SessionEffects:
    def __init__(self, controller: "Controller"):
        self.c = controller
        self._timers: dict[str, Timer] = {}

    def unlock(self) -> None:
        self.c.out.lock.unlock()

    def lock(self) -> None:
        self.c.out.lock.lock()

    def buzzer(self, on: bool) -> None:
        (self.c.out.buzzer.energise if on else self.c.out.buzzer.release)()

    def start_timer(self, name: str, seconds: float, fn: Callable[[], None]) -> None:
        self.cancel_timer(name)
        self._timers[name] = self.c.timers.call_later(seconds, name, fn)

    def cancel_timer(self, name: str) -> None:
        timer = self._timers.pop(name, None)
        if timer is not None:
            timer.cancel()

    def restart_weighing(self) -> None:
        for stability in self.c.shelves.values():
            stability.reset()
        self.c.out.weigh_fast(True)

    def weights(self) -> dict[int, tuple[float | None, float | None]]:
        return {n: (f.latest, f.stable_grams) for n, f in self.c.shelves.items()}

    def planogram(self) -> Planogram:
        return self.c.planogram

    def journal_begin(self, session: dict[str, Any]) -> None:
        with self._storage():
            self.c.store.begin_session(session)
        self.c.out.weigh_fast(True)

    def journal_update(self, session: dict[str, Any], state: str) -> None:
        with self._storage():
            self.c.store.update_session(session, state)

    def finish(self, session: dict[str, Any], outcome: str, record: dict[str, Any] | None,
               planogram: Planogram | None) -> None:
        with self._storage():
            self.c.store.finish_session(session, outcome, record,
                                        None if planogram is None else planogram.to_json())
        # Recorded: from here on nothing may look like a failed write (the checkout would write
        # it again for ever), so the follow-up's own failures are only logged.
        try:
            if planogram is not None:
                self.c.planogram = planogram
            self.c.out.weigh_fast(False)
            self.c.session_finished(session, outcome, record)
        except Exception:
            log.exception("session %s recorded; its follow-up failed", session["session_id"])

    def raise_alarm(self, kind: str, detail: str) -> None:
        self.c.raise_alarm(kind, detail)

    def clear_alarm(self, kind: str) -> None:
        self.c.clear_alarm(kind)

    def now_utc(self) -> str:
        return utc_now()

    @contextmanager
    def _storage(self):
        """A write the store refused (a full disk) raises the storage alarm, then the error."""
        try:
            yield
        except STORAGE_ERRORS as exc:
            self.c.storage_failed(exc)
            raise
