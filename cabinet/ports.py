"""What the controller's helpers are given instead of the controller (issue 16).

Each helper (climate, access codes, faces, sync, the session's effects) receives these few
services and, by name, the one or two controller operations it calls (`authorise`, `refused`):
not the controller itself, so none imports it and none can reach into another helper or write
the controller's fields. (The operations' handlers, which are the controller's own operations,
reach it through operations.Context: docs/architecture.md names the holders.) The controller
builds them; everything here runs on its thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class AlarmPort:
    raise_alarm: Callable[[str, str], None]
    clear_alarm: Callable[[str], None]
    active: Callable[[], list[dict[str, Any]]]


@dataclass(frozen=True)
class Ports:
    config: Any                      # cabinet.config.Config
    store: Any                       # cabinet.store.Store
    clock: Callable[[], float]       # monotonic seconds (a fake one in tests)
    timers: Any                      # cabinet.timers.TimerHeap
    alarms: AlarmPort
