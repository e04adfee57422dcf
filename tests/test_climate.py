"""The thermostat on the thermal model, 24 simulated hours in a second (injected time)."""

from __future__ import annotations

import random

import pytest

from cabinet.climate import ClimateSettings, Thermostat
from drivers.sim.thermal import ThermalModel

STEP = 10.0
DAY = 24 * 3600


def soak(ambient: float, openings: int = 100, seed: int = 1, sensor=lambda t, air: air):
    rng = random.Random(seed)
    door_at = sorted(rng.uniform(600, DAY - 600) for _ in range(openings))
    thermostat = Thermostat(ClimateSettings(), now=0.0)
    state = {"door": False}
    model = ThermalModel(ambient_celsius=ambient, start_celsius=4.0,
                         compressor_on=lambda: thermostat.compressor,
                         heater_on=lambda: thermostat.heater, door_open=lambda: state["door"])
    worst, recovering, door_since, both = 0.0, False, None, 0
    t = 0.0
    while t < DAY:
        state["door"] = any(start <= t < start + 20 for start in door_at)
        if state["door"] and door_since is None:
            door_since, recovering = t, True
        if not state["door"]:
            door_since = None
        air = model.step(STEP)
        t += STEP
        reading = sensor(t, round(air * 16) / 16)  # a DS18B20 reads in 1/16 °C steps
        decision = thermostat.decide(t, reading, door_since)
        both += decision.compressor and decision.heater
        if recovering and not state["door"] and abs(air - 4.0) <= 0.5:
            recovering = False
        if not recovering and not state["door"] and t > 600:
            worst = max(worst, abs(air - 4.0))
    return thermostat, worst, both


@pytest.mark.parametrize("ambient", [30.0, -20.0])
def test_24_hour_soak_holds_the_setpoint(ambient):
    thermostat, worst, both = soak(ambient)
    print(f"ambient {ambient:+.0f} °C: worst deviation outside recovery {worst:.2f} K, "
          f"{thermostat.starts} compressor starts, duty {thermostat.on_seconds / DAY:.0%}")
    assert worst <= 1.0
    assert thermostat.min_off_violations == 0
    assert both == 0, "compressor and heater never together"
    if ambient > 4:
        assert thermostat.starts > 10 and thermostat.on_seconds > 0
    else:
        assert thermostat.on_seconds == 0


def test_minimum_times_and_start_delay():
    t = Thermostat(ClimateSettings(), now=0.0)
    assert not t.decide(10, 9.0, None).compressor          # start delay after power returns
    assert t.decide(121, 9.0, None).compressor
    assert t.decide(130, 2.0, None).compressor               # minimum on time
    assert not t.decide(272, 2.0, None).compressor
    assert not t.decide(300, 9.0, None).compressor           # minimum off time
    assert t.decide(453, 9.0, None).compressor
    assert t.min_off_violations == 0


def test_door_open_holds_back_a_start():
    t = Thermostat(ClimateSettings(), now=-1000.0)
    assert not t.decide(0, 6.0, door_open_since=-10).compressor
    assert t.decide(60, 6.0, door_open_since=-10).compressor  # open for over a minute: cool


def test_sensor_fault_runs_a_duty_cycle_without_heating():
    t = Thermostat(ClimateSettings(), now=-1000.0)
    t.decide(0, 1.0, None)
    assert t.heater
    states = [t.decide(s, None, None) for s in range(10, 3600, 10)]
    assert not any(d.heater for d in states)
    on = sum(d.compressor for d in states) / len(states)
    assert 0.25 < on < 0.40  # 5 min on, 10 min off
    assert t.min_off_violations == 0
