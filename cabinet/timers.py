"""A heap of timers on an injected monotonic clock, owned by the controller thread.

Tests drive time by advancing a fake clock and calling `run_due()`; nothing here sleeps.
"""

from __future__ import annotations

import heapq
import itertools
from typing import Callable


class Timer:
    __slots__ = ("when", "name", "fn", "cancelled")

    def __init__(self, when: float, name: str, fn: Callable[[], None]):
        self.when, self.name, self.fn, self.cancelled = when, name, fn, False

    def cancel(self) -> None:
        self.cancelled = True


class TimerHeap:
    def __init__(self, clock: Callable[[], float]):
        self.clock = clock
        self._heap: list[tuple[float, int, Timer]] = []
        self._order = itertools.count()

    def call_at(self, when: float, name: str, fn: Callable[[], None]) -> Timer:
        timer = Timer(when, name, fn)
        heapq.heappush(self._heap, (when, next(self._order), timer))
        return timer

    def call_later(self, delay: float, name: str, fn: Callable[[], None]) -> Timer:
        return self.call_at(self.clock() + delay, name, fn)

    def next_delay(self, cap: float) -> float:
        """Seconds until the next live timer, at most `cap`, never negative."""
        while self._heap and self._heap[0][2].cancelled:
            heapq.heappop(self._heap)
        if not self._heap:
            return cap
        return max(0.0, min(cap, self._heap[0][0] - self.clock()))

    def run_due(self, on_error: Callable[[Timer, Exception], None] | None = None) -> int:
        """Fire every timer whose time has come, in time order; return how many fired. A timer
        that raises is passed to `on_error` (when given) and the others still fire."""
        fired = 0
        now = self.clock()
        while self._heap and self._heap[0][0] <= now:
            _, _, timer = heapq.heappop(self._heap)
            if timer.cancelled:
                continue
            timer.cancelled = True
            fired += 1
            if on_error is None:
                timer.fn()
                continue
            try:
                timer.fn()
            except Exception as exc:
                on_error(timer, exc)
        return fired

    def pending(self) -> list[str]:
        return sorted(t.name for _, _, t in self._heap if not t.cancelled)
