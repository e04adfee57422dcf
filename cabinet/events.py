"""Everything the controller loop consumes: the drivers' facts plus the controller's own events."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from drivers.events import (CodeScanned, DeviceFaulted, DeviceRecovered, DoorClosed, DoorOpened,
                            LockSensed, ScanUnreadable, ShelfWeighed, TemperatureRead)

__all__ = ["CodeScanned", "DeviceFaulted", "DeviceRecovered", "DoorClosed", "DoorOpened",
           "LockSensed",
           "ScanUnreadable", "ShelfWeighed", "TemperatureRead", "TimerFired", "StopRequested",
           "OperationRequested", "SyncReported", "CommandsArrived", "FaceChecking", "FaceRecognised",
           "FaceAttemptFailed", "VoicePackChanged", "UpdateReported"]


@dataclass(frozen=True)
class TimerFired:
    name: str
    at: float


@dataclass(frozen=True)
class StopRequested:
    reason: str


@dataclass(frozen=True)
class OperationRequested:
    """An operation of the table (cabinet/operations.py) asked for by name from another thread
    (the HTTP server, the selftest, the simulation's stand-ins): data crosses into the loop, never
    code. `reply` receives its result or the exception (an OperationError, or a bug's)."""
    name: str
    args: Any
    source: str
    renamed: dict[str, str] | None
    reply: Callable[[Any, BaseException | None], None]


@dataclass(frozen=True)
class SyncReported:
    """The uploader's news for the controller: what was delivered, refused, or went wrong."""
    ok: bool
    delivered: int = 0
    dead_letters: tuple[dict[str, Any], ...] = ()
    error: str = ""
    auth_failed: bool = False
    channel: str = "upload"          # or "commands": the long-poll's own news
    reply_too_large: bool = False


@dataclass(frozen=True)
class CommandsArrived:
    commands: list[Any]
    server_time: float | None
    received_at: float         # monotonic
    wall_at: float             # the cabinet's wall clock, used only when server_time is missing


@dataclass(frozen=True)
class FaceChecking:
    """The camera named an enrolled member and awaits a head turn (True), or stopped (False)."""
    active: bool
    at: float


@dataclass(frozen=True)
class FaceRecognised:
    """An enrolled member, seen live (the head turned across frames)."""
    member_id: str
    span: float
    at: float


@dataclass(frozen=True)
class FaceAttemptFailed:
    """A named member's attempt ended without a live face: not_live or face_changed."""
    member_id: str
    reason: str
    at: float


@dataclass(frozen=True)
class VoicePackChanged:
    """A voice pack was installed or refused (cabinet/voice_pack.py): to record and alarm."""
    outcome: dict


@dataclass(frozen=True)
class RestartWanted:
    """Stop with `exit_status` once no session is open and every door is shut (an update)."""
    exit_status: int
    reason: str


@dataclass(frozen=True)
class UpdateReported:
    """A step of a software update (cabinet/update.py): to record, and alarm on a refusal;
    `done` (a threading.Event), when given, is set once it is recorded."""
    outcome: dict
    done: Any = None
