"""What every device reader thread shares: a stop flag, fault bookkeeping and back-off.

A reader posts facts through `emit` and nothing else. When a device fails it posts one
DeviceFaulted (again only if the detail changes), backs off exponentially while it retries, and posts
DeviceRecovered on the first good reading, so the controller sees transitions, not a flood.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from .events import DeviceFaulted, DeviceRecovered

Emit = Callable[[object], None]
log = logging.getLogger(__name__)


class FaultTracker:
    """Turns per-attempt outcomes into fault and recovery transitions for named devices."""

    def __init__(self, emit: Emit, clock: Callable[[], float] = time.monotonic):
        self._emit = emit
        self._clock = clock
        self._faults: dict[str, str] = {}

    def fault(self, device: str, detail: str) -> None:
        if self._faults.get(device) == detail:
            return
        self._faults[device] = detail
        log.warning("%s fault: %s", device, detail)
        self._emit(DeviceFaulted(device, detail, self._clock()))

    def ok(self, device: str) -> None:
        if self._faults.pop(device, None) is not None:
            log.info("%s recovered", device)
            self._emit(DeviceRecovered(device, self._clock()))

    def is_faulted(self, device: str) -> bool:
        return device in self._faults


class Backoff:
    """Exponential retry delay: first, first*2, ... capped; reset after a success."""

    def __init__(self, first: float = 0.5, cap: float = 10.0):
        self.first, self.cap = first, cap
        self._next = first

    def next(self) -> float:
        delay = self._next
        self._next = min(self._next * 2, self.cap)
        return delay

    def reset(self) -> None:
        self._next = self.first


class ReaderThread:
    """Owns one daemon thread running `self._run()`; `close()` stops and joins it."""

    name = "reader"

    def __init__(self) -> None:
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._guarded_run, name=self.name, daemon=True)
        self._thread.start()

    def _guarded_run(self) -> None:
        try:
            self._run()
        except Exception:  # a bug in a reader must be loud, not a silent dead thread
            log.exception("%s thread crashed", self.name)
            raise

    def _run(self) -> None:
        raise NotImplementedError

    def _sleep(self, seconds: float) -> bool:
        """Sleep unless closing; return True when the thread should go on."""
        return not self._stopping.wait(seconds)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def close(self) -> None:
        self._stopping.set()
        self._release()
        if self._thread is not None:
            self._thread.join(timeout=5)
            if self._thread.is_alive():
                log.error("%s thread did not stop within 5 s", self.name)

    def _release(self) -> None:
        """Unblock the thread (close a port) so that join() returns promptly."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
