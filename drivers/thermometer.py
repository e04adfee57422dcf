"""Cabinet air temperature: a DS18B20 on 1-Wire (sysfs) or a Modbus RTU sensor, polled in a thread.

The DS18B20's `w1_slave` file holds two lines: the scratchpad with `crc=XX YES|NO`, then the same
bytes with `t=<millidegrees>`. A NO, the 85.000 °C power-on value, the 127.94 °C failed
conversion and an all-0xFF scratchpad (sensor gone) are errors, never readings.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Callable

from .errors import DeviceError, SensorReadError
from .events import TemperatureRead
from .modbus import ModbusBus, decode
from .reader import FaultTracker, ReaderThread

_LINE1 = re.compile(r"((?:[0-9a-f]{2} ){9}): crc=([0-9a-f]{2}) (YES|NO)")
_LINE2 = re.compile(r"((?:[0-9a-f]{2} ){9})t=(-?\d+)")
POWER_ON_MILLIDEGREES = 85000
FAILED_CONVERSION_MILLIDEGREES = 127937  # 0x07FF / 16 °C, what a failed conversion reads as


def parse_w1_slave(text: str) -> float:
    """Parse the contents of a DS18B20 `w1_slave` file to °C, or raise SensorReadError."""
    lines = text.strip().splitlines()
    if len(lines) != 2:
        raise SensorReadError(f"expected 2 lines, got {len(lines)}: {text[:80]!r}")
    first, second = _LINE1.fullmatch(lines[0]), _LINE2.fullmatch(lines[1])
    if not first or not second:
        raise SensorReadError(f"unrecognised w1_slave format: {text[:80]!r}")
    if first.group(1) != second.group(1):
        raise SensorReadError("the two scratchpad copies differ")
    if first.group(1).replace(" ", "") == "ff" * 9:
        raise SensorReadError("scratchpad all 0xFF: sensor disconnected")
    if first.group(3) != "YES":
        raise SensorReadError(f"CRC check failed (crc={first.group(2)})")
    milli = int(second.group(2))
    if milli == POWER_ON_MILLIDEGREES:
        raise SensorReadError("85.000 °C is the DS18B20 power-on value, not a reading")
    if milli >= FAILED_CONVERSION_MILLIDEGREES - 10:
        raise SensorReadError(f"{milli / 1000:.3f} °C means a failed conversion")
    if not -55000 <= milli <= 125000:
        raise SensorReadError(f"{milli / 1000:.3f} °C is outside the DS18B20 range")
    return milli / 1000


def find_ds18b20(base_dir: str | Path, sensor_id: str) -> Path:
    """The sensor's w1_slave path; with sensor_id 'auto' the first 28-* device found."""
    base = Path(base_dir)
    if sensor_id != "auto":
        return base / sensor_id / "w1_slave"
    try:
        found = sorted(p for p in os.listdir(base) if p.startswith("28-"))
    except OSError as exc:
        raise DeviceError("thermometer", str(base), f"cannot list 1-Wire devices: {exc.strerror}")
    if not found:
        raise DeviceError("thermometer", str(base), "no DS18B20 (28-*) found on the 1-Wire bus")
    return base / found[0] / "w1_slave"


class Ds18b20Reader(ReaderThread):
    name = "thermometer"

    def __init__(self, base_dir: str, sensor_id: str, *, poll_interval_seconds: float,
                 emit: Callable[[object], None], clock: Callable[[], float] = time.monotonic,
                 device: str = "thermometer"):
        super().__init__()
        self.device = device  # "thermometer", or a zone's ("thermometer:2") where several
        self._base_dir = base_dir
        self._sensor_id = sensor_id
        self._interval = poll_interval_seconds
        self._emit = emit
        self._clock = clock
        self._faults = FaultTracker(emit, clock)

    def read_celsius(self) -> tuple[float, str]:
        path = find_ds18b20(self._base_dir, self._sensor_id)
        try:
            text = path.read_text(encoding="ascii", errors="replace")
        except OSError as exc:
            raise DeviceError("thermometer", str(path), f"cannot read: {exc.strerror}") from None
        try:
            return parse_w1_slave(text), path.parent.name
        except SensorReadError as exc:
            raise DeviceError("thermometer", str(path), str(exc)) from None

    def poll_once(self) -> bool:
        try:
            celsius, sensor = self.read_celsius()
        except DeviceError as exc:
            self._faults.fault(self.device, str(exc))
            return False
        self._faults.ok(self.device)
        self._emit(TemperatureRead(celsius, sensor, self._clock(), self.device))
        return True

    def _run(self) -> None:
        while not self._stopping.is_set():
            self.poll_once()
            if not self._sleep(self._interval):
                break


class ModbusThermometerReader(ReaderThread):
    name = "thermometer"

    def __init__(self, bus: ModbusBus, *, device_id: int, register: int, celsius_per_count: float,
                 poll_interval_seconds: float, emit: Callable[[object], None],
                 clock: Callable[[], float] = time.monotonic, device: str = "thermometer"):
        super().__init__()
        self.device = device
        self.bus = bus
        self._device_id = device_id
        self._register = register
        self._scale = celsius_per_count
        self._interval = poll_interval_seconds
        self._emit = emit
        self._clock = clock
        self._faults = FaultTracker(emit, clock)

    def poll_once(self) -> bool:
        try:
            registers = self.bus.read_registers("thermometer", self._device_id, self._register, 1,
                                                "input")
        except DeviceError as exc:
            self._faults.fault(self.device, str(exc))
            return False
        celsius = decode(registers, "int16") * self._scale
        if not -55 <= celsius <= 125:
            self._faults.fault(self.device, f"thermometer on {self.bus.port}: "
                               f"{celsius:.1f} °C is outside the physical range")
            return False
        self._faults.ok(self.device)
        self._emit(TemperatureRead(celsius, f"modbus:{self._device_id}", self._clock(),
                                   self.device))
        return True

    def _run(self) -> None:
        while not self._stopping.is_set():
            self.poll_once()
            if not self._sleep(self._interval):
                break
