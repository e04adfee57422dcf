"""A lumped thermal model of the cabinet's air, stepped on an injectable clock.

dT/dt = (ambient - T) / tau  - cooling * compressor + heating * heater, where tau shrinks while the
door stands open (warm room air rushes in). Rough figures for a 400 l glass-door cooler: about 3 h
wall time constant closed, a few minutes open, a compressor that pulls down ~20 K/h and a 150 W heater.
Time can run faster than the clock (`speed`), so a 24 h soak takes seconds.
"""

from __future__ import annotations

import threading
from typing import Callable


class ThermalModel:
    def __init__(self, *, ambient_celsius: float, start_celsius: float,
                 compressor_on: Callable[[], bool] = lambda: False,
                 heater_on: Callable[[], bool] = lambda: False,
                 door_open: Callable[[], bool] = lambda: False,
                 tau_closed_seconds: float = 3 * 3600, tau_open_seconds: float = 240,
                 cooling_per_second: float = 20 / 3600, heating_per_second: float = 12 / 3600):
        self.ambient = ambient_celsius
        self.air = start_celsius
        self.compressor_on = compressor_on
        self.heater_on = heater_on
        self.door_open = door_open
        self.tau_closed = tau_closed_seconds
        self.tau_open = tau_open_seconds
        self.cooling = cooling_per_second
        self.heating = heating_per_second
        self._lock = threading.Lock()

    def set_ambient(self, celsius: float) -> None:
        with self._lock:
            self.ambient = celsius

    def step(self, seconds: float) -> float:
        """Advance the model by `seconds` of cabinet time (in 10 s slices) and return the air °C."""
        with self._lock:
            remaining = seconds
            while remaining > 0:
                dt = min(remaining, 10.0)
                tau = self.tau_open if self.door_open() else self.tau_closed
                rate = (self.ambient - self.air) / tau
                if self.compressor_on():
                    rate -= self.cooling
                if self.heater_on():
                    rate += self.heating
                self.air += rate * dt
                remaining -= dt
            return self.air
