"""Facts that device readers post to the controller, as plain frozen values.

Drivers never import `cabinet`, so the events they emit live here; the controller's own events
(timers, commands) are in `cabinet/events.py`. Each is a past-tense fact stamped with the monotonic
time at which the driver saw it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DoorOpened:
    at: float
    door: int = 1  # which door, on a cabinet with several


@dataclass(frozen=True)
class DoorClosed:
    at: float
    door: int = 1


@dataclass(frozen=True)
class ShelfWeighed:
    """One raw reading of one shelf, already scaled to grams; `at` is when it was asked for (a
    reading asked for before the door closed is not evidence of what the shelf held after)."""
    shelf: int
    grams: float
    at: float


@dataclass(frozen=True)
class TemperatureRead:
    celsius: float
    sensor: str
    at: float
    device: str = "thermometer"  # the reader's device name: a zone's thermometer, where several


@dataclass(frozen=True)
class CodeScanned:
    """A line from the serial QR scanner (decoded text, line ending removed)."""
    text: str
    source: str
    at: float


@dataclass(frozen=True)
class DeviceFaulted:
    """A device stopped working; `detail` says which port and what was seen."""
    device: str
    detail: str
    at: float


@dataclass(frozen=True)
class DeviceRecovered:
    device: str
    at: float


@dataclass(frozen=True)
class ScanUnreadable:
    """The scanner sent something that is not a usable line (too long, not UTF-8)."""
    reason: str
    source: str
    at: float


@dataclass(frozen=True)
class LockSensed:
    """The lock's feedback contact says the lock is (or is not) engaged."""
    locked: bool
    at: float
    door: int = 1
