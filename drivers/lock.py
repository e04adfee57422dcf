"""The door lock: a relay that opens the lock only while energised (fail-secure).

De-energised = locked. Construction, close() and any crash of the process leave the relay
de-energised, so the cabinet is locked at start-up and whenever the daemon is not in control.
A lock with a feedback contact also gets a LockFeedback reader.
"""

from __future__ import annotations

import time
from typing import Callable

from gpiozero import DigitalInputDevice

from .events import LockSensed
from .relay import Relay


class LockRelay(Relay):
    def __init__(self, pin: int, *, active_high: bool, pin_factory):
        super().__init__("lock", pin, active_high=active_high, pin_factory=pin_factory)

    @property
    def locked(self) -> bool:
        return not self.energised

    def unlock(self) -> None:
        self.energise()

    def lock(self) -> None:
        self.release()


class LockFeedback:
    """The lock's own feedback contact (bolt or armature sensor), posting LockSensed.

    Wired like the door switch: closed to ground when locked, with the pin pulled up. The
    controller compares it with what it commanded; only a disagreement that lasts is a fault."""

    def __init__(self, pin: int, *, pull_up: bool, pin_factory, emit: Callable[[object], None],
                 clock: Callable[[], float] = time.monotonic, door: int = 1):
        self._clock = clock
        self._emit = emit
        self.door = door
        self._button = DigitalInputDevice(pin, pull_up=pull_up, pin_factory=pin_factory)  # no hold thread
        self._button.when_activated = lambda: emit(LockSensed(True, self._clock(), door))
        self._button.when_deactivated = lambda: emit(LockSensed(False, self._clock(), door))

    @property
    def locked(self) -> bool:
        return self._button.is_active

    def announce(self) -> None:
        self._emit(LockSensed(self.locked, self._clock(), self.door))

    def close(self) -> None:
        self._button.when_activated = None
        self._button.when_deactivated = None
        self._button.close()
