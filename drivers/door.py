"""The door switch: a reed or micro switch on a GPIO input, posting DoorOpened / DoorClosed.

Wired as the usual switch to ground with the pin pulled up, a closed door reads as active (low).
gpiozero runs the callbacks on its own thread (lgpio's, or the mock pin driver's), so they only
post an event; the controller decides what an opening means.
"""

from __future__ import annotations

import time
from typing import Callable

from gpiozero import DigitalInputDevice

from .events import DoorClosed, DoorOpened


class DoorSwitch:
    def __init__(self, pin: int, *, pull_up: bool, bounce_seconds: float, pin_factory,
                 emit: Callable[[object], None], clock: Callable[[], float] = time.monotonic,
                 door: int = 1):
        self.pin = pin
        self.door = door
        self._emit = emit
        self._clock = clock
        # A DigitalInputDevice, not a Button: a Button's hold thread wakes ten times a second
        # for ever to time presses nobody holds.
        self._button = DigitalInputDevice(pin, pull_up=pull_up,
                                          bounce_time=bounce_seconds or None,
                                          pin_factory=pin_factory)
        self._button.when_activated = lambda: self._emit(DoorClosed(self._clock(), door))
        self._button.when_deactivated = lambda: self._emit(DoorOpened(self._clock(), door))

    @property
    def is_open(self) -> bool:
        return not self._button.is_active

    def announce(self) -> None:
        """Post the current state, so the controller starts from a known door."""
        now = self._clock()
        self._emit(DoorOpened(now, self.door) if self.is_open else DoorClosed(now, self.door))

    def close(self) -> None:
        self._button.when_activated = None
        self._button.when_deactivated = None
        self._button.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
