"""Weighing, the domain side: when is a shelf's weight stable, and what is that weight.

Plain numbers in, plain numbers out; no Modbus, no clock of its own. A shelf is stable when its last
`readings` values all lie within `band_grams` of each other; the stable weight is their mean, which
averages the load cell's noise away. Any reading outside the band (a hand, a swinging bottle)
makes the shelf unstable again at once.
"""

from __future__ import annotations

from collections import deque


class StabilityFilter:
    def __init__(self, *, readings: int, band_grams: float):
        if readings < 2:
            raise ValueError("stability needs at least 2 readings")
        self.band = band_grams
        self._window: deque[float] = deque(maxlen=readings)

    def add(self, grams: float) -> None:
        self._window.append(grams)

    def reset(self) -> None:
        self._window.clear()

    @property
    def latest(self) -> float | None:
        return self._window[-1] if self._window else None

    @property
    def stable(self) -> bool:
        return (len(self._window) == self._window.maxlen
                and max(self._window) - min(self._window) <= self.band)

    @property
    def stable_grams(self) -> float | None:
        """The mean of the window when stable, else None."""
        if not self.stable:
            return None
        return sum(self._window) / len(self._window)
