"""Errors raised by drivers: each names the device, the port or path, and what was seen."""

from __future__ import annotations


class DeviceError(Exception):
    """A device did not answer, answered nonsense, or vanished."""

    def __init__(self, device: str, where: str, detail: str):
        super().__init__(f"{device} on {where}: {detail}")
        self.device = device
        self.where = where
        self.detail = detail


class SensorReadError(ValueError):
    """A sensor's raw output that is not a valid reading (bad CRC, power-on value, garbage)."""
