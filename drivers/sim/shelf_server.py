"""Simulated load-cell boards: a real pymodbus RTU server on a pty, fed by a physical shelf model.

The driver under test talks to this exactly as to the RS485 boards: real Modbus RTU frames with
CRCs through a pty. Each shelf is one Modbus device; its weight register is computed at the moment
it is read, from a model with items of known unit weight, a tare, sensor noise, slow creep, and a
damped swing after every change that takes `settle_seconds` to die away. A Modbus thermometer can sit
on the same bus.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import threading
import time
from typing import Callable

from pymodbus.server import ModbusSerialServer
from pymodbus.simulator import DataType, SimData, SimDevice

from ..modbus import encode


class ShelfModel:
    """What a load cell would read: tare + items + creep + settling swing + noise, in grams."""

    def __init__(self, *, tare_grams: float, noise_grams: float, creep_grams_per_hour: float,
                 settle_seconds: float, clock: Callable[[], float] = time.monotonic,
                 seed: int | None = None):
        self.tare = tare_grams
        self.noise = noise_grams
        self.creep_per_second = creep_grams_per_hour / 3600
        self.settle = settle_seconds
        self._clock = clock
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self.items: dict[str, list[float | int]] = {}  # sku -> [unit grams, count]
        self.extra_grams = 0.0
        self._start = clock()
        self._last_change = (-1e9, 0.0)  # (time, size) of the last change

    def add_item(self, sku: str, unit_grams: float, count: int) -> None:
        with self._lock:
            self.items[sku] = [unit_grams, count]

    def _changed(self, delta: float) -> None:
        self._last_change = (self._clock(), delta)

    def take(self, sku: str, count: int) -> None:
        """Remove `count` of `sku` (negative puts back); refuses what is not on the shelf."""
        with self._lock:
            if sku not in self.items:
                raise KeyError(f"no {sku!r} on this shelf; it holds {sorted(self.items)}")
            unit, have = self.items[sku]
            if count > have:
                raise ValueError(f"only {have} of {sku!r} on the shelf, cannot take {count}")
            self.items[sku][1] = have - count
            self._changed(-unit * count)

    def add_grams(self, grams: float) -> None:
        """A raw weight change: a foreign object, a spill, a hand resting on the shelf."""
        with self._lock:
            self.extra_grams += grams
            self._changed(grams)

    def true_grams(self) -> float:
        with self._lock:
            return self.tare + self.extra_grams + sum(u * c for u, c in self.items.values())

    def read_grams(self) -> float:
        now = self._clock()
        weight = self.true_grams() + self.creep_per_second * (now - self._start)
        changed_at, delta = self._last_change
        since = now - changed_at
        if self.settle > 0 and 0 <= since < self.settle * 2:
            # A swing of the size of the change, decaying to under 1 % within settle_seconds.
            weight -= delta * math.exp(-4.6 * since / self.settle) * math.cos(2 * math.pi * 2.0 * since)
        return weight + self._random.gauss(0.0, self.noise)


class ModbusPeer:
    """A pymodbus RTU server on `port`, in its own thread and event loop, serving value callbacks."""

    def __init__(self, port: str, *, register: int, value_format: str, word_order: str,
                 baudrate: int = 9600):
        self.port = port
        self._register = register
        self._format = value_format
        self._word_order = word_order
        self._baudrate = baudrate
        self._sources: dict[int, tuple[Callable[[], int], int, str]] = {}
        self._silent: set[int] = set()  # boards that lost power: not served
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: ModbusSerialServer | None = None
        self._thread: threading.Thread | None = None
        self.requests = 0

    def serve(self, device_id: int, value: Callable[[], int], *, register: int | None = None,
              value_format: str | None = None) -> None:
        """Answer reads of `device_id` with `value()` encoded at the register."""
        self._sources[device_id] = (value, self._register if register is None else register,
                                    value_format or self._format)

    def _device(self, device_id: int) -> SimDevice:
        value, register, value_format = self._sources[device_id]
        words = 2 if value_format == "int32" else 1

        async def action(function_code, start_address, address, count, current_registers,
                         set_values):
            self.requests += 1
            encoded = encode(int(round(value())), value_format, self._word_order)
            for i, word in enumerate(encoded):
                offset = register + i - start_address
                if 0 <= offset < len(current_registers):
                    current_registers[offset] = word
            return None

        return SimDevice(id=device_id, action=action,
                         simdata=[SimData(register, count=words, values=0,
                                          datatype=DataType.REGISTERS)])

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            return
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        devices = [self._device(device_id) for device_id in sorted(self._sources)
                   if device_id not in self._silent]

        async def main():
            # (pymodbus 3.16 answers an unknown device id with exception 4 even when told to
            # ignore it, where a real RS485 line stays silent; the driver handles both.)
            self._server = ModbusSerialServer(devices, port=self.port, baudrate=self._baudrate,
                                              ignore_missing_devices=True)
            await self._server.serve_forever(background=True)  # returns once the port is open
            ready.set()
            with contextlib.suppress(asyncio.CancelledError):
                await self._server.serving

        def run():
            asyncio.set_event_loop(self._loop)
            try:
                self._loop.run_until_complete(main())
            finally:
                ready.set()

        self._thread = threading.Thread(target=run, name=f"modbus peer {self.port}", daemon=True)
        self._thread.start()
        ready.wait(5)

    def stop(self) -> None:
        """Stop answering, as a board that lost power or a killed peer process."""
        if not self.running or self._loop is None:
            return
        if self._server is not None:
            future = asyncio.run_coroutine_threadsafe(self._server.shutdown(), self._loop)
            try:
                future.result(timeout=5)
            except Exception:
                pass
        self._thread.join(timeout=5)
        self._loop.close()
        self._thread = None
        self._server = None

    def set_silent(self, device_id: int, silent: bool) -> None:
        """One board on the bus loses (or regains) power; the others keep answering."""
        if device_id not in self._sources:
            raise KeyError(f"no device {device_id} on {self.port}")
        (self._silent.add if silent else self._silent.discard)(device_id)
        if self.running:  # the server's device list is fixed when it starts
            self.stop()
            self.start()

    def close(self) -> None:
        self.stop()
