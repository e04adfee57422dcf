"""Climate, the domain side: when to run the compressor and the heater.

Plain values in (the air temperature or None for a failed sensor, the door, the time on an injected
monotonic clock), relay decisions out. Cooling and heating share one setpoint:

    compressor on  at setpoint + hysteresis/2,  off at setpoint - hysteresis/2
    heater on      at setpoint - hysteresis,    off at setpoint - hysteresis/2

so that the two bands never overlap and the relays are never both on. The compressor is protected
from short cycling: a minimum off time (default 3 min), a minimum on time, and a start delay after
power returns (the process starting counts as power returning). While the door is open the
compressor is not started for the first `door_hold_seconds` (the warm air that rushes in would
otherwise start it for a minute). With no valid reading the compressor runs a timed duty cycle
and the heater stays off, until the sensor is back.
"""

from __future__ import annotations

from dataclasses import dataclass

# The setpoints a technician or the operator may choose, in °C (the config's too): a fridge that
# holds food between deep-freeze-adjacent and cellar temperatures, nothing a typo could make worse.
SETPOINT_RANGE = (-5.0, 15.0)


@dataclass(frozen=True)
class ClimateSettings:
    setpoint_celsius: float = 4.0
    hysteresis_celsius: float = 1.0
    min_off_seconds: float = 180.0
    min_on_seconds: float = 150.0
    start_delay_seconds: float = 120.0
    door_hold_seconds: float = 60.0
    fault_on_seconds: float = 300.0
    fault_off_seconds: float = 600.0


@dataclass(frozen=True)
class Decision:
    compressor: bool
    heater: bool
    reason: str


class Thermostat:
    def __init__(self, settings: ClimateSettings, now: float):
        self.s = settings
        self.compressor = False
        self.heater = False
        # As if the compressor had just stopped, so the first start waits for the start delay.
        self._compressor_since = now - settings.min_off_seconds + settings.start_delay_seconds
        self.min_off_violations = 0  # starts sooner than min_off after a stop (must stay 0)
        self.starts = 0
        self.on_seconds = 0.0
        self._last = now

    def set_setpoint(self, celsius: float) -> None:
        self.s = ClimateSettings(**{**self.s.__dict__, "setpoint_celsius": celsius})

    def decide(self, now: float, celsius: float | None, door_open_since: float | None
               ) -> Decision:
        if self.compressor:
            self.on_seconds += now - self._last
        self._last = now
        s = self.s
        ran_for = now - self._compressor_since
        want_compressor, reason = self.compressor, "holding"
        want_heater = self.heater
        if celsius is None:
            want_heater = False
            period = s.fault_on_seconds if self.compressor else s.fault_off_seconds
            if ran_for >= period:
                want_compressor, reason = not self.compressor, "sensor fault: timed duty cycle"
            else:
                reason = "sensor fault: timed duty cycle"
        else:
            high = s.setpoint_celsius + s.hysteresis_celsius / 2
            low = s.setpoint_celsius - s.hysteresis_celsius / 2
            if celsius >= high:
                want_compressor, want_heater, reason = True, False, "above the band"
            elif celsius <= low:
                want_compressor, reason = False, "below the band"
            if celsius <= s.setpoint_celsius - s.hysteresis_celsius:
                want_heater, want_compressor, reason = True, False, "too cold: heating"
            elif celsius >= low:
                want_heater = False
            door_hold = (door_open_since is not None
                         and now - door_open_since < s.door_hold_seconds)
            if want_compressor and not self.compressor and door_hold:
                want_compressor, reason = False, "door open: start held back"
        # Protection wins over the wish: a compressor keeps its state until its minimum is served.
        if want_compressor and not self.compressor and ran_for < s.min_off_seconds:
            want_compressor, reason = False, "minimum off time"
        if not want_compressor and self.compressor and ran_for < s.min_on_seconds:
            want_compressor, reason = True, "minimum on time"
        if want_compressor:
            want_heater = False  # never both
        if want_compressor != self.compressor:
            if want_compressor:
                if ran_for < s.min_off_seconds:
                    self.min_off_violations += 1
                self.starts += 1
            self.compressor = want_compressor
            self._compressor_since = now
        self.heater = want_heater
        return Decision(self.compressor, self.heater, reason)


class SensorCheck:
    """Sensor faults that a driver cannot see in one reading: a value outside what cabinet air can
    be, or a value that does not move while the compressor or heater is driving it. Stuck is
    judged on readings sampled a minute apart: three such intervals with the very same value (to
    the sensor's 1/16 °C) while a relay ran throughout."""

    def __init__(self, low_celsius: float = -40.0, high_celsius: float = 60.0,
                 sample_seconds: float = 60.0, stuck_intervals: int = 3):
        self.low, self.high = low_celsius, high_celsius
        self.sample_seconds = sample_seconds
        self.stuck_intervals = stuck_intervals
        self._samples: list[tuple[float, float, bool]] = []  # (time, value, driving)
        self._stuck_at: float | None = None  # a stuck value stays a fault until it moves

    def check(self, now: float, celsius: float, driving: bool) -> str | None:
        if self._stuck_at is not None:
            if celsius == self._stuck_at:
                return f"stuck at {celsius:.3f} °C"
            self._stuck_at = None
            self._samples.clear()
        if not self.low <= celsius <= self.high:
            self._samples.clear()
            return (f"{celsius:.2f} °C is outside what cabinet air can be "
                    f"({self.low:g} to {self.high:g} °C)")
        if not self._samples or now - self._samples[-1][0] >= self.sample_seconds:
            self._samples.append((now, celsius, driving))
            del self._samples[:-(self.stuck_intervals + 1)]
        window = self._samples
        if (len(window) == self.stuck_intervals + 1 and all(d for _, _, d in window)
                and len({v for _, v, _ in window}) == 1):
            self._stuck_at = celsius
            return (f"stuck at {celsius:.3f} °C for {self.stuck_intervals} min while the "
                    "compressor or heater ran")
        return None

    def reset(self) -> None:
        self._samples.clear()
        self._stuck_at = None
