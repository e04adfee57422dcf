"""One RS485 bus spoken as Modbus RTU master, shared by the shelves and a Modbus thermometer.

pymodbus's synchronous client does the framing and CRC; this module adds what the cabinet needs
around it: one lock so that readers on different threads take turns on the wire, the port opened
exclusively, and errors that say which device, which port and what came back. A port that vanished
(USB adapter unplugged) is reported as such and reopened when it returns.
"""

from __future__ import annotations

import logging
import os
import threading

from pymodbus.client import ModbusSerialClient
from pymodbus.exceptions import ModbusException

from .errors import DeviceError

# pymodbus logs every failed transaction itself, with hex dumps; our errors say it once, better.
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

_EXCEPTION_NAMES = {1: "illegal function", 2: "illegal data address", 3: "illegal data value",
                    4: "device failure", 6: "device busy", 11: "gateway target failed to respond"}


class ModbusBus:
    def __init__(self, port: str, *, baudrate: int = 9600, parity: str = "N", stopbits: int = 1,
                 timeout_seconds: float = 0.3):
        self.port = port
        self._lock = threading.Lock()
        self._timeout = timeout_seconds
        self._client = ModbusSerialClient(port, baudrate=baudrate, parity=parity,
                                          stopbits=stopbits, timeout=timeout_seconds, retries=0,
                                          reconnect_delay=0)

    def read_registers(self, device: str, device_id: int, address: int, count: int,
                       kind: str = "holding") -> list[int]:
        """Read `count` registers from one device; raise DeviceError naming what went wrong."""
        with self._lock:
            if not self._client.connected and not self._client.connect():
                if not os.path.exists(self.port):
                    raise DeviceError(device, self.port, "serial port not present (unplugged?)")
                raise DeviceError(device, self.port, "cannot open serial port (in use or no permission)")
            read = (self._client.read_holding_registers if kind == "holding"
                    else self._client.read_input_registers)
            try:
                reply = read(address, count=count, device_id=device_id)
            except ModbusException:
                self._client.close()
                if not os.path.exists(self.port):
                    raise DeviceError(device, self.port, "serial port vanished") from None
                raise DeviceError(device, self.port,
                                  f"no valid reply from Modbus device {device_id} within "
                                  f"{self._timeout:g} s (silent, or a corrupt frame)") from None
            except OSError as exc:
                self._client.close()
                raise DeviceError(device, self.port, f"serial I/O error: {exc}") from None
        if reply.isError():
            code = getattr(reply, "exception_code", None)
            name = _EXCEPTION_NAMES.get(code, "unknown exception")
            raise DeviceError(device, self.port,
                              f"Modbus device {device_id} answered exception {code} ({name}) "
                              f"reading register {address}")
        registers = list(reply.registers)
        if len(registers) != count:
            raise DeviceError(device, self.port, f"Modbus device {device_id} returned "
                              f"{len(registers)} registers, expected {count}")
        return registers

    def close(self) -> None:
        with self._lock:
            self._client.close()


def decode(registers: list[int], value_format: str, word_order: str = "big") -> int:
    """Registers to an integer: int32 (two registers), int16 (signed) or uint16."""
    if value_format == "int32":
        high, low = registers if word_order == "big" else reversed(registers)
        value = (high << 16) | low
        return value - (1 << 32) if value & 0x80000000 else value
    if value_format == "int16":
        return registers[0] - 0x10000 if registers[0] & 0x8000 else registers[0]
    return registers[0]


def register_count(value_format: str) -> int:
    return 2 if value_format == "int32" else 1


def encode(value: int, value_format: str, word_order: str = "big") -> list[int]:
    """The inverse of decode(), used by the simulated boards."""
    if value_format == "int32":
        raw = value & 0xFFFFFFFF
        words = [raw >> 16, raw & 0xFFFF]
        return words if word_order == "big" else words[::-1]
    return [value & 0xFFFF]
