"""Climate through the controller on a fake clock: relays, sensor faults, the food-safety lockout."""

from __future__ import annotations

import math

import pytest

from cabinet.checkout import Authorisation, Refused
from cabinet.events import DeviceFaulted, DeviceRecovered, TemperatureRead

from .test_checkout import rig  # noqa: F401  (the same controller rig, door shut, shelves weighed)


def run(rig, seconds, celsius, every=5.0):
    """Feed a reading every `every` seconds for `seconds` of fake time. Real air is never quite
    still while the relays cycle: the readings wander up to half a degree below `celsius`
    (a ten-minute wave, in the sensor's 1/16 °C steps)."""
    end = rig.clock.now + seconds
    while rig.clock.now < end:
        rig.clock.advance(every)
        wave = 0.25 * (1 + math.sin(rig.clock.now / 97))
        if celsius is not None:
            rig.c.emit(TemperatureRead(celsius - round(wave * 16) / 16, "28-test", rig.clock()))
        rig.step()


def alarms(rig):
    return {a["kind"] for a in rig.c.snapshot["alarms"]}


def test_relays_follow_the_thermostat(rig):
    run(rig, 60, 8.0)
    assert not rig.out.compressor.energised, "start delay after power returns"
    run(rig, 90, 8.0)
    assert rig.out.compressor.energised and not rig.out.heater.energised
    run(rig, 200, 3.0)
    assert not rig.out.compressor.energised
    run(rig, 30, 2.5)
    assert rig.out.heater.energised and not rig.out.compressor.energised
    assert rig.c.snapshot["climate"]["mode"] == "too cold: heating"


def test_telemetry_once_a_minute_and_on_change(rig):
    run(rig, 300, 4.0)
    samples = rig.outbox("telemetry")
    assert 5 <= len(samples) <= 6
    rig.clock.advance(5)
    rig.c.emit(TemperatureRead(rig.c.climate.celsius + 0.5, "28-test", rig.clock()))
    rig.step()
    assert len(rig.outbox("telemetry")) == len(samples) + 1, "a 0.5 K move is sent at once"


def test_driver_fault_engages_the_duty_cycle(rig):
    run(rig, 200, 4.0)
    rig.c.emit(DeviceFaulted("thermometer", "thermometer on /sys/…: 85.000 °C is the power-on value",
                             rig.clock()))
    rig.step()
    assert "device_fault:thermometer" in alarms(rig)
    states = []
    for _ in range(180):  # 15 min
        rig.clock.advance(5)
        rig.step()
        states.append(rig.out.compressor.energised)
    assert 0.25 < sum(states) / len(states) < 0.45
    assert rig.c.snapshot["climate"]["mode"].startswith("sensor fault")
    rig.c.emit(DeviceRecovered("thermometer", rig.clock()))
    run(rig, 30, 4.0)
    assert "device_fault:thermometer" not in alarms(rig)
    assert not rig.c.snapshot["climate"]["mode"].startswith("sensor fault")


def test_out_of_range_is_a_fault_at_the_first_reading(rig):
    run(rig, 5, -55.0)
    assert "sensor_fault" in alarms(rig)
    run(rig, 5, 4.0)
    assert "sensor_fault" not in alarms(rig)


def test_stuck_sensor_within_three_minute_readings(rig):
    for _ in range(30):      # compressor starts after the start delay ...
        rig.clock.advance(5)
        rig.c.emit(TemperatureRead(9.0, "28-test", rig.clock()))
        rig.step()
    assert rig.out.compressor.energised
    for _ in range(37):      # ... and the air does not move at all
        rig.clock.advance(5)
        rig.c.emit(TemperatureRead(9.0, "28-test", rig.clock()))
        rig.step()
    assert "sensor_fault" in alarms(rig)
    assert rig.c.snapshot["climate"]["mode"].startswith("sensor fault")


def test_lockout_after_power_return_refuses_shoppers_survives_restart_and_clears(rig):
    run(rig, 29 * 60, 7.0)
    assert not rig.c.climate.locked_out, "30 min to recover after power returns"
    run(rig, 2 * 60, 7.0)
    assert rig.c.climate.locked_out and "food_safety_lockout" in alarms(rig)
    snap = rig.c.snapshot
    assert 6.5 < snap["climate"]["food_safety"]["max_celsius"] <= 7.0
    milk = [p for p in snap["products"] if p["sku"] == "yak-milk-250ml"][0]
    water = [p for p in snap["products"] if p["sku"] == "water-550ml"][0]
    assert not milk["available"] and water["available"]
    with pytest.raises(Refused) as refused:
        rig.authorise()
    assert refused.value.reason == "food_safety"
    rig.crash()
    rig.door(False)
    rig.weigh()
    assert rig.c.climate.locked_out, "latched across a power cut"
    with pytest.raises(Refused):
        rig.authorise()
    technician = Authorisation("qr", "tech-7", "technician", "c-1")
    rig.authorise(technician)  # technicians may still open, to take the food out
    rig.clock.advance(20)
    rig.step()
    assert rig.c.call_now(lambda: rig.c.clear_lockout("tech-7"))
    assert not rig.c.climate.locked_out and "food_safety_lockout" not in alarms(rig)
    rig.crash()
    assert not rig.c.climate.locked_out
    assert rig.outbox("food_safety")[0]["by"] == "tech-7"


def test_excursion_without_a_door_locks_out_after_15_minutes(rig):
    run(rig, 40 * 60, 4.0)
    run(rig, 14 * 60, 6.0)
    assert not rig.c.climate.locked_out
    run(rig, 2 * 60, 6.5)
    assert rig.c.climate.locked_out
    assert 6.0 < rig.c.snapshot["climate"]["food_safety"]["max_celsius"] <= 6.5


def test_door_close_gives_30_minutes(rig):
    run(rig, 40 * 60, 4.0)
    rig.door(True)
    rig.door(False)
    run(rig, 25 * 60, 6.0)
    assert not rig.c.climate.locked_out
    run(rig, 6 * 60, 6.0)
    assert rig.c.climate.locked_out


def test_excursion_time_carries_over_a_power_cut(rig):
    run(rig, 40 * 60, 4.0)
    run(rig, 10 * 60, 6.0)      # 10 min above, no door
    rig.crash()                 # power returns: 30 min allowance from now
    rig.door(False)
    run(rig, 29 * 60, 6.0)
    assert not rig.c.climate.locked_out
    run(rig, 2 * 60, 6.0)
    assert rig.c.climate.locked_out
    assert rig.c.snapshot["climate"]["food_safety"]["above_seconds"] >= 40 * 60


def test_setpoint(rig):
    rig.c.call_now(lambda: rig.c.set_setpoint(3.0))
    assert rig.c.snapshot["climate"]["setpoint_celsius"] == 3.0
    with pytest.raises(ValueError, match="food-safety limit"):
        rig.c.set_setpoint(4.8)
    assert rig.outbox("setpoint")[0]["setpoint_celsius"] == 3.0


def test_the_operator_clears_a_lockout_by_command_after_a_check(rig):
    """Issue 16's table: `clear_lockout`, a technician's operation, offered to the backend by one
    line in cabinet/operations.py (the back office's "clear the food-safety lockout")."""
    import time
    import uuid

    from cabinet.events import CommandsArrived

    run(rig, 31 * 60, 7.0)             # above the limit past the recovery time: locked out
    assert rig.c.climate.locked_out
    now = time.time()
    stamp = lambda t: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))  # noqa: E731
    command = {"command_id": str(uuid.uuid4()), "seq": 1, "type": "clear_lockout",
               "args": {"by": "dolma"}, "issued_at": stamp(now), "expires_at": stamp(now + 60)}
    rig.c.emit(CommandsArrived([command], now, rig.clock(), now))
    rig.step()
    (result,) = [r for r in rig.outbox("command_result")
                 if r["command_id"] == command["command_id"]]
    assert result["status"] == "done" and result["result"] == {"cleared": True}
    assert not rig.c.climate.locked_out
    assert rig.outbox("food_safety")[-1]["by"] == "operator dolma"
