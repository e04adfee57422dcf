"""Everything the controller loop consumes: the drivers' facts plus the controller's own events."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from drivers.events import (CodeScanned, DeviceFaulted, DeviceRecovered, DoorClosed, DoorOpened,
                            LockSensed, ScanUnreadable, ShelfWeighed, TemperatureRead)

__all__ = ["CodeScanned", "DeviceFaulted", "DeviceRecovered", "DoorClosed", "DoorOpened",
           "LockSensed",
           "ScanUnreadable", "ShelfWeighed", "TemperatureRead", "TimerFired", "StopRequested",
           "CallRequested"]


@dataclass(frozen=True)
class TimerFired:
    name: str
    at: float


@dataclass(frozen=True)
class StopRequested:
    reason: str


@dataclass(frozen=True)
class CallRequested:
    """Run `fn` on the controller thread (the HTTP server uses it for requests that change state);
    `reply` receives its result or exception."""
    fn: Callable[[], Any]
    reply: Callable[[Any, BaseException | None], None]
