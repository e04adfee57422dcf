"""Temperature: the w1_slave parser, the DS18B20 reader on a fake sysfs tree, a Modbus sensor."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.errors import SensorReadError
from drivers.events import DeviceFaulted, DeviceRecovered, TemperatureRead
from drivers.modbus import ModbusBus
from drivers.sim.onewire import OneWireTree, dallas_crc8, w1_slave_text
from drivers.sim.pty import PtyCable
from drivers.sim.shelf_server import ModbusPeer
from drivers.thermometer import Ds18b20Reader, ModbusThermometerReader, parse_w1_slave

from .conftest import wait_for

# Captured from a DS18B20 on a Raspberry Pi (the kernel's w1_therm format).
REAL = "72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t=23125\n"


def test_parses_a_real_reading():
    assert parse_w1_slave(REAL) == 23.125


def test_crc8_matches_the_real_sensor():
    assert dallas_crc8(bytes.fromhex("72014b467fff0e10")) == 0x57


@pytest.mark.parametrize("text, words", [
    (REAL.replace("YES", "NO"), "CRC check failed"),
    (w1_slave_text(85.0), "power-on value"),
    ("ff ff ff ff ff ff ff ff ff : crc=ff NO\nff ff ff ff ff ff ff ff ff t=-62\n", "disconnected"),
    ("50 05 4b 46 7f ff 0c 10 1c : crc=1c YES\n50 05 4b 46 7f ff 0c 10 1c t=127937\n",
     "failed conversion"),
    ("", "expected 2 lines"),
    ("72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n", "expected 2 lines"),
    ("hello\nworld\n", "unrecognised"),
    (REAL.replace("t=23125", "t=2x125"), "unrecognised"),
    ("72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n73 01 4b 46 7f ff 0e 10 57 t=23125\n", "differ"),
])
def test_bad_outputs_are_errors_not_readings(text, words):
    with pytest.raises(SensorReadError, match=words):
        parse_w1_slave(text)


@given(st.floats(min_value=-55, max_value=124, allow_nan=False))
def test_written_values_read_back_at_sensor_resolution(celsius):
    if abs(round(celsius * 16) / 16 - 85.0) < 1e-9:
        return  # 85.000 is refused by design
    # 1/16 °C steps, then whole millidegrees, as the kernel prints them
    assert abs(parse_w1_slave(w1_slave_text(celsius)) - celsius) <= 1 / 32 + 0.001


@settings(max_examples=500)
@given(st.text(max_size=200))
def test_parser_never_raises_anything_but_sensor_read_error(text):
    try:
        parse_w1_slave(text)
    except SensorReadError:
        pass


@pytest.mark.parametrize("fault, words", [("power_on", "power-on"), ("crc", "CRC"),
                                          ("all_ff", "disconnected"), ("gone", "no DS18B20")])
def test_reader_reports_each_fault_and_recovers(tmp_path, recorder, fault, words):
    tree = OneWireTree(tmp_path / "w1")
    tree.write(3.5)
    reader = Ds18b20Reader(str(tree.base), "auto", poll_interval_seconds=1, emit=recorder)
    assert reader.poll_once()
    assert recorder.of(TemperatureRead)[-1].celsius == 3.5
    tree.fault = fault
    tree.write(3.5)
    assert not reader.poll_once()
    faulted = recorder.of(DeviceFaulted)
    assert faulted[-1].device == "thermometer" and words in faulted[-1].detail
    assert str(tree.base) in faulted[-1].detail
    tree.fault = None
    tree.write(4.0)
    assert reader.poll_once()
    assert recorder.of(DeviceRecovered) and recorder.of(TemperatureRead)[-1].celsius == 4.0


def test_named_sensor_that_is_missing(tmp_path, recorder):
    OneWireTree(tmp_path / "w1").write(4.0)
    reader = Ds18b20Reader(str(tmp_path / "w1"), "28-ffffffffffff", poll_interval_seconds=1,
                           emit=recorder)
    assert not reader.poll_once()
    assert "28-ffffffffffff/w1_slave: cannot read" in recorder.of(DeviceFaulted)[0].detail


def test_reader_thread_polls_and_stops(tmp_path, recorder):
    tree = OneWireTree(tmp_path / "w1")
    tree.write(5.0)
    reader = Ds18b20Reader(str(tree.base), "auto", poll_interval_seconds=1, emit=recorder)
    reader.start()
    wait_for(lambda: recorder.of(TemperatureRead), what="a reading")
    reader.close()
    assert not reader.running


def test_modbus_thermometer(tmp_path, recorder):
    cable = PtyCable(tmp_path / "peer", tmp_path / "rs485")
    air = {"c": -12.3}
    peer = ModbusPeer(str(cable.a_path), register=0, value_format="int16", word_order="big")
    peer.serve(10, lambda: air["c"] / 0.1)
    peer.start()
    bus = ModbusBus(str(cable.b_path), timeout_seconds=0.2)
    try:
        reader = ModbusThermometerReader(bus, device_id=10, register=0, celsius_per_count=0.1,
                                         poll_interval_seconds=1, emit=recorder)
        assert reader.poll_once()
        assert recorder.of(TemperatureRead)[-1].celsius == pytest.approx(-12.3)
        air["c"] = 300.0
        assert not reader.poll_once()
        assert "outside the physical range" in recorder.of(DeviceFaulted)[-1].detail
    finally:
        bus.close()
        peer.close()
        cable.close()
