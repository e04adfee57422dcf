"""Climate on the controller thread: readings in, relays, alarms, lockout and telemetry out.

Every `tick_seconds` the thermostat decides from the latest valid reading (None while the sensor is
faulted or its reading is stale), the door and the clock; the relays follow. Sensor faults come
from the driver (no reading, power-on value, CRC, vanished) or from SensorCheck (out of range,
stuck); either raises the `sensor_fault` alarm and puts the compressor on its timed duty cycle. The
cold chain's state is persisted every tick while it matters, so a lockout survives power cuts.

A cabinet with several temperature zones runs one ClimateControl per zone, each with its own
thermometer, relays, setpoint and food-safety rule ([[zones.zone]] in the config). Their alarms
name the zone (`sensor_fault:zone2`) and their telemetry carries it; zone 1 keeps the one-zone
cabinet's stored keys, so moving a cabinet to zone tables keeps its setpoint and lockout.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from .climate import SETPOINT_RANGE, ClimateSettings, SensorCheck, Thermostat
from .config import ZoneEntry
from .food_safety import ColdChain
from .ports import Ports
from .store import utc_now

log = logging.getLogger(__name__)
COLD_CHAIN_KEY = "cold_chain"
# The setpoint a technician or the backend set: it outlives restarts and power cuts (the config's
# value is only the first one).
SETPOINT_KEY = "climate.setpoint"


class ClimateControl:
    tick_seconds = 5.0

    def __init__(self, ports: Ports, *, compressor: Any, heater: Any,
                 zone: ZoneEntry | None = None, several: bool = False):
        """`compressor`, `heater`: the two relays it drives (energise / release); `zone`: which
        (the config's first, by default), `several`: the cabinet has more than one."""
        self.p = ports
        self.compressor, self.heater = compressor, heater
        self.zone = zone or ports.config.zone_list()[0]
        self.several = several
        # Zone 1 keeps the one-zone keys, so a cabinet moved to zone tables keeps its state.
        key = "" if self.zone.id == 1 else f":zone{self.zone.id}"
        self._setpoint_key, self._cold_chain_key = SETPOINT_KEY + key, COLD_CHAIN_KEY + key
        k = self.zone.climate
        now = ports.clock()
        self.setpoint_set_at: str | None = None   # None: the config's value
        setpoint = k.setpoint_celsius
        try:
            saved = ports.store.get_value(self._setpoint_key)
        except ValueError as exc:   # unreadable: hold the config's value, say so
            saved = {"unreadable": str(exc)}
        if saved is not None:
            try:
                celsius, at = self._checked(saved["celsius"]), str(saved["at"])
                setpoint, self.setpoint_set_at = celsius, at
            except (ValueError, TypeError, KeyError) as exc:  # the config changed under it
                log.warning("saved setpoint %r not used (%s): holding the config's %g °C",
                            saved, exc, k.setpoint_celsius)
        self.thermostat = Thermostat(ClimateSettings(
            setpoint, k.hysteresis_celsius, k.min_off_seconds, k.min_on_seconds,
            k.start_delay_seconds, k.door_hold_seconds, k.fault_on_seconds, k.fault_off_seconds),
            now=now)
        # An ambient zone (food_safety = "none") keeps no cold chain: its limit is never passed.
        limit = k.food_safety_limit_celsius if k.food_safety == "perishables" else math.inf
        self.cold_chain = ColdChain(limit, now=now, recovery_seconds=k.recovery_minutes * 60,
                                    excursion_seconds=k.excursion_minutes * 60,
                                    saved=ports.store.get_value(self._cold_chain_key))
        self.check = SensorCheck()
        self.celsius: float | None = None
        self._read_at: float | None = None
        self._domain_fault: str | None = None
        self._door_open_since: float | None = None
        self._sent: tuple[float, float] | None = None  # (time, celsius) of the last telemetry
        self._sent_on = 0.0
        self._saved_state: dict | None = None
        self.reason = "starting"
        ports.timers.call_later(0, "climate", self._tick)

    def alarm(self, kind: str) -> str:
        """This zone's alarm `kind` (`sensor_fault`, or `sensor_fault:zone2` where several)."""
        return f"{kind}:zone{self.zone.id}" if self.several else kind

    # --- inputs -----------------------------------------------------------------------------------
    def on_reading(self, celsius: float) -> None:
        now = self.p.clock()
        problem = self.check.check(now, celsius, self.thermostat.compressor or self.thermostat.heater)
        if problem:
            if self._domain_fault is None or not problem.startswith(self._domain_fault[:12]):
                self._domain_fault = problem
                self.p.alarms.raise_alarm(self.alarm("sensor_fault"),
                                          f"{self._where}thermometer: {problem}")
            self.celsius = None
            return
        if self._domain_fault is not None:
            self._domain_fault = None
            self.p.alarms.clear_alarm(self.alarm("sensor_fault"))
        self.celsius, self._read_at = celsius, now
        lockout = self.cold_chain.reading(now, celsius)
        if lockout is not None:
            log.error("FOOD SAFETY LOCKOUT: %s (max %.2f °C)", lockout.reason, lockout.max_celsius)
            self.p.alarms.raise_alarm(self.alarm("food_safety_lockout"),
                                      f"{self._where}perishables locked out: {lockout.reason}; "
                                      f"max {lockout.max_celsius:.1f} °C, "
                                      f"{lockout.above_seconds / 60:.0f} min above the limit")
            self._save(force=True)

    @property
    def _where(self) -> str:
        return f"{self.zone.label}: " if self.several else ""

    def on_sensor_fault(self) -> None:
        """The driver's fault (its own alarm, device_fault:thermometer, is already raised)."""
        self.celsius = None
        self.check.reset()

    def on_door(self, is_open: bool) -> None:
        now = self.p.clock()
        if is_open:
            self._door_open_since = self._door_open_since or now
        else:
            self._door_open_since = None
            self.cold_chain.grace(now)

    def on_restock(self) -> None:
        self.cold_chain.grace(self.p.clock())

    # --- technician and backend -------------------------------------------------------------------
    def _checked(self, celsius: float) -> float:
        k = self.zone.climate
        low, high = SETPOINT_RANGE
        number = isinstance(celsius, (int, float)) and not isinstance(celsius, bool)
        if number and k.food_safety == "none" and low <= celsius <= high:
            return float(celsius)   # an ambient zone has no limit to keep the band below
        if not number or not low <= celsius <= high \
                or celsius + k.hysteresis_celsius / 2 >= k.food_safety_limit_celsius:
            shown = f"{celsius:g}" if number else repr(celsius)
            raise ValueError(f"setpoint {shown} °C: must be {low:g} to {high:g} °C and keep the "
                             f"band below the food-safety limit "
                             f"({k.food_safety_limit_celsius:g} °C)")
        return float(celsius)

    def set_setpoint(self, celsius: float) -> None:
        celsius = self._checked(celsius)
        at = utc_now()
        # Saved with its outbox record in one transaction: reported done means it survives.
        body = {"setpoint_celsius": celsius, **({"zone": self.zone.id} if self.several else {})}
        self.p.store.set_value(self._setpoint_key, {"celsius": celsius, "at": at},
                               ("setpoint", body))
        self.thermostat.set_setpoint(celsius)
        self.setpoint_set_at = at

    def clear_lockout(self, technician: str) -> bool:
        cleared = self.cold_chain.clear()
        if cleared is None:
            return False
        self.p.store.set_value(self._cold_chain_key, self.cold_chain.state(self.p.clock()),
                               ("food_safety", {"state": "cleared", "by": technician,
                                                "lockout": cleared.__dict__,
                                                **({"zone": self.zone.id} if self.several
                                                   else {})}))
        self.p.alarms.clear_alarm(self.alarm("food_safety_lockout"))
        return True

    @property
    def locked_out(self) -> bool:
        return self.cold_chain.lockout is not None

    # --- the tick ---------------------------------------------------------------------------------
    def _tick(self) -> None:
        # Next tick first: a failure below must not stop the thermostat for good.
        self.p.timers.call_later(self.tick_seconds, "climate", self._tick)
        now = self.p.clock()
        poll = self.zone.thermometer.poll_interval_seconds
        fresh = self._read_at is not None and now - self._read_at <= 3 * poll + 1
        reading = self.celsius if fresh else None
        decision = self.thermostat.decide(now, reading, self._door_open_since)
        self.reason = decision.reason
        (self.compressor.energise if decision.compressor else self.compressor.release)()
        (self.heater.energise if decision.heater else self.heater.release)()
        self._telemetry(now, reading, decision)
        self._save()

    def _telemetry(self, now: float, reading: float | None, decision) -> None:
        if reading is None:
            return
        due = (self._sent is None
               or now - self._sent[0] >= self.zone.climate.telemetry_interval_seconds
               or abs(reading - self._sent[1]) >= self.zone.climate.telemetry_change_celsius)
        if not due:
            return
        on = self.thermostat.on_seconds
        duty = None
        if self._sent is not None and now > self._sent[0]:
            duty = round((on - self._sent_on) / (now - self._sent[0]), 3)
        self._sent, self._sent_on = (now, reading), on
        self.p.store.add_record("telemetry", {
            "celsius": reading, "setpoint_celsius": self.thermostat.s.setpoint_celsius,
            "compressor": decision.compressor, "heater": decision.heater,
            "compressor_duty": duty,  # share of the time since the last sample
            "compressor_on_seconds_total": round(on, 1), "compressor_starts": self.thermostat.starts,
            "door_open": self._door_open_since is not None, "sampled_at": utc_now(),
            **({"zone": self.zone.id} if self.several else {})})

    def _save(self, force: bool = False) -> None:
        state = self.cold_chain.state(self.p.clock())
        compare = {**state, "above_seconds": state["above_seconds"] is not None}
        if force or compare != self._saved_state or state["above_seconds"] is not None:
            self.p.store.set_value(self._cold_chain_key, state)
            self._saved_state = compare

    def snapshot(self) -> dict[str, Any]:
        lockout = self.cold_chain.lockout
        return {"setpoint_celsius": self.thermostat.s.setpoint_celsius,
                **({"zone": self.zone.id} if self.several else {}),
                "setpoint_set_at": self.setpoint_set_at,   # None: from the config file
                "mode": self.reason,
                "compressor_starts": self.thermostat.starts,
                "food_safety": {"locked_out": lockout is not None,
                                "reason": lockout.reason if lockout else None,
                                "max_celsius": lockout.max_celsius if lockout else
                                self.cold_chain.max_celsius,
                                "above_seconds": lockout.above_seconds if lockout else None}}
