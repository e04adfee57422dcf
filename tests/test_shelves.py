"""Weighing shelves over real Modbus RTU frames: our driver against a pymodbus server on a pty cable."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.errors import DeviceError
from drivers.events import DeviceFaulted, DeviceRecovered, ShelfWeighed
from drivers.modbus import ModbusBus, decode, encode
from drivers.shelf import ShelfBoard, ShelfReader
from drivers.sim.pty import PtyCable
from drivers.sim.shelf_server import ModbusPeer, ShelfModel

from .conftest import wait_for


@pytest.fixture
def line(tmp_path):
    cable = PtyCable(tmp_path / "peer", tmp_path / "rs485")
    peer = ModbusPeer(str(cable.a_path), register=0, value_format="int32", word_order="big")
    models = {}
    for shelf in (1, 2):
        model = ShelfModel(tare_grams=1000, noise_grams=0, creep_grams_per_hour=0,
                           settle_seconds=0, seed=1)
        model.add_item("water", 572.0, 10)
        models[shelf] = model
        peer.serve(shelf, lambda m=model: m.read_grams() * 10)  # boards count 0.1 g
    peer.start()
    bus = ModbusBus(str(cable.b_path), timeout_seconds=0.2)
    yield cable, peer, models, bus
    bus.close()
    peer.close()
    cable.close()


def _reader(bus, recorder, **kw):
    boards = [ShelfBoard(1, 1, grams_per_count=0.1), ShelfBoard(2, 2, grams_per_count=0.1)]
    return ShelfReader(bus, boards, register=0, register_kind="holding", value_format="int32",
                       word_order="big", poll_interval_seconds=0.05, emit=recorder, **kw)


def test_reads_scaled_weights(line, recorder):
    cable, peer, models, bus = line
    reader = _reader(bus, recorder)
    assert reader.poll_once() == 2
    weighed = recorder.of(ShelfWeighed)
    assert [(e.shelf, round(e.grams, 1)) for e in weighed] == [(1, 6720.0), (2, 6720.0)]
    models[2].take("water", 3)
    reader.poll_once()
    assert round(recorder.of(ShelfWeighed)[-1].grams, 1) == 6720.0 - 3 * 572.0


def test_a_new_interval_starts_with_a_poll_at_once(line, recorder):
    """The door just closed: the settling waits on fresh readings, not on the rest of a slow
    idle period."""
    cable, peer, models, bus = line
    reader = ShelfReader(bus, [ShelfBoard(1, 1, grams_per_count=0.1)], register=0,
                         register_kind="holding", value_format="int32", word_order="big",
                         poll_interval_seconds=3600, emit=recorder)  # idle: once an hour
    reader.start()
    try:
        wait_for(lambda: recorder.of(ShelfWeighed), what="the first poll")
        reader.set_interval(0.05)
        wait_for(lambda: len(recorder.of(ShelfWeighed)) >= 2, what="a poll at the new interval")
    finally:
        reader.close()


def test_exclusive_port(line):
    cable, peer, models, bus = line
    bus.read_registers("shelf:1", 1, 0, 2)
    other = ModbusBus(str(cable.b_path), timeout_seconds=0.2)
    with pytest.raises(DeviceError, match="cannot open serial port"):
        other.read_registers("shelf:1", 1, 0, 2)
    other.close()


def test_exception_reply_is_named(line):
    cable, peer, models, bus = line
    with pytest.raises(DeviceError, match=r"exception 2 \(illegal data address\)"):
        bus.read_registers("shelf:1", 1, 500, 2)


def test_silent_device_is_a_fault_of_that_shelf_only(line, recorder):
    cable, peer, models, bus = line
    boards = [ShelfBoard(1, 1, 0.1), ShelfBoard(9, 9, 0.1)]  # nobody answers at address 9
    reader = ShelfReader(bus, boards, register=0, register_kind="holding", value_format="int32",
                         word_order="big", poll_interval_seconds=0.05, emit=recorder)
    assert reader.poll_once() == 1
    faults = recorder.of(DeviceFaulted)
    assert [f.device for f in faults] == ["shelf:9"]
    # A real line stays silent; pymodbus's server answers "device failure". Both name device 9.
    assert ("no valid reply from Modbus device 9" in faults[0].detail
            or "Modbus device 9 answered exception" in faults[0].detail)
    assert str(cable.b_path) in faults[0].detail
    reader.poll_once()
    assert len(recorder.of(DeviceFaulted)) == 1, "a lasting fault is reported once"


@pytest.mark.parametrize("tamper, name", [
    (lambda d, b: b[:-1] + bytes([b[-1] ^ 0xFF]) if d == "a->b" else b, "bad CRC"),
    (lambda d, b: b[: len(b) // 2] if d == "a->b" else b, "partial frame"),
    (lambda d, b: b"\x00\xff\x13\x37garbage" if d == "a->b" else b, "garbage"),
    (lambda d, b: b"" if d == "a->b" else b, "dropped reply"),
])
def test_corrupt_replies_are_faults_never_weights_and_recover(line, recorder, tamper, name):
    cable, peer, models, bus = line
    reader = _reader(bus, recorder)
    reader.poll_once()
    good = recorder.of(ShelfWeighed)[-1].grams
    recorder.clear()
    cable.tamper = tamper
    for _ in range(3):
        reader.poll_once()
    assert not recorder.of(ShelfWeighed), f"{name}: a corrupt frame must never become a weight"
    assert {f.device for f in recorder.of(DeviceFaulted)} == {"shelf:1", "shelf:2"}
    cable.tamper = None
    recorder.clear()
    wait_for(lambda: reader.poll_once() == 2, what="recovery")
    assert {e.device for e in recorder.of(DeviceRecovered)} == {"shelf:1", "shelf:2"}
    assert recorder.of(ShelfWeighed)[-1].grams == good


def test_noise_on_the_line_between_frames_does_not_desynchronise(line, recorder):
    cable, peer, models, bus = line
    reader = _reader(bus, recorder)
    reader.poll_once()
    import os
    os.write(os.open(cable.a_path, os.O_WRONLY | os.O_NOCTTY), b"\x55\xaa\x01\x03")  # line noise
    wait_for(lambda: reader.poll_once() == 2, what="clean reads after noise")
    grams = [e.grams for e in recorder.of(ShelfWeighed)]
    assert set(round(g, 1) for g in grams) == {6720.0}


def test_peer_killed_and_back(line, recorder):
    cable, peer, models, bus = line
    reader = _reader(bus, recorder)
    reader.start()
    try:
        wait_for(lambda: recorder.of(ShelfWeighed), what="first reading")
        peer.stop()
        wait_for(lambda: {f.device for f in recorder.of(DeviceFaulted)} == {"shelf:1", "shelf:2"},
                 what="faults")
        peer.start()
        wait_for(lambda: len(recorder.of(DeviceRecovered)) == 2, timeout=15, what="recovery")
        assert reader.running
    finally:
        reader.close()
    assert not reader.running


def test_port_vanishes_and_comes_back(line, recorder):
    cable, peer, models, bus = line
    reader = _reader(bus, recorder)
    reader.start()
    try:
        wait_for(lambda: recorder.of(ShelfWeighed), what="first reading")
        peer.stop()
        cable.unplug()
        faults = wait_for(lambda: [f for f in recorder.of(DeviceFaulted)
                                   if "not present" in f.detail or "vanished" in f.detail],
                          what="vanished-port fault")
        assert str(cable.b_path) in faults[0].detail
        cable.plug()
        peer.start()
        wait_for(lambda: len(recorder.of(DeviceRecovered)) >= 2, timeout=20, what="recovery")
        count = len(recorder.of(ShelfWeighed))
        wait_for(lambda: len(recorder.of(ShelfWeighed)) > count, what="readings again")
    finally:
        reader.close()


@given(st.integers(-(2**31), 2**31 - 1), st.sampled_from(["big", "little"]))
def test_int32_encode_decode_round_trip(value, order):
    assert decode(encode(value, "int32", order), "int32", order) == value


@given(st.integers(-(2**15), 2**15 - 1))
def test_int16_round_trip(value):
    assert decode(encode(value, "int16"), "int16") == value
