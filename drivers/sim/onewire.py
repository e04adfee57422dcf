"""A fake 1-Wire sysfs tree: `<base>/28-xxxxxxxxxxxx/w1_slave` written as the kernel's w1_therm does.

The DS18B20 driver reads it with no idea it is simulated. The scratchpad bytes and CRC are real
(Dallas CRC-8), so the driver's CRC check is exercised; faults can be injected: the power-on value,
a failed CRC, an all-0xFF scratchpad, or the device vanishing from the bus.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def dallas_crc8(data: bytes) -> int:
    crc = 0
    for byte in data:
        for _ in range(8):
            mix = (crc ^ byte) & 1
            crc >>= 1
            if mix:
                crc ^= 0x8C
            byte >>= 1
    return crc


def w1_slave_text(celsius: float, *, crc_ok: bool = True) -> str:
    """The two lines w1_therm prints for a DS18B20 reading `celsius` (12-bit resolution)."""
    raw = int(round(celsius * 16)) & 0xFFFF
    pad = bytes([raw & 0xFF, raw >> 8, 0x4B, 0x46, 0x7F, 0xFF, 0x0C, 0x10])
    crc = dallas_crc8(pad)
    scratch = pad + bytes([crc if crc_ok else crc ^ 0x5A])
    hexes = " ".join(f"{b:02x}" for b in scratch)
    signed = raw - 0x10000 if raw & 0x8000 else raw
    verdict = "YES" if crc_ok else "NO"
    return f"{hexes} : crc={scratch[8]:02x} {verdict}\n{hexes} t={signed * 1000 // 16}\n"


class OneWireTree:
    def __init__(self, base_dir: str | Path, sensor_id: str = "28-00000a1b2c3d"):
        self.base = Path(base_dir)
        self.sensor_id = sensor_id
        self.fault: str | None = None  # None, "power_on", "crc", "all_ff", "gone"
        self.base.mkdir(parents=True, exist_ok=True)

    @property
    def device_dir(self) -> Path:
        return self.base / self.sensor_id

    def write(self, celsius: float) -> None:
        if self.fault == "gone":
            shutil.rmtree(self.device_dir, ignore_errors=True)
            return
        if self.fault == "power_on":
            text = w1_slave_text(85.0)
        elif self.fault == "all_ff":
            hexes = " ".join(["ff"] * 9)
            text = f"{hexes} : crc=ff NO\n{hexes} t=-62\n"
        else:
            text = w1_slave_text(celsius, crc_ok=self.fault != "crc")
        self.device_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.device_dir / ".w1_slave.tmp"
        tmp.write_text(text, encoding="ascii")
        os.replace(tmp, self.device_dir / "w1_slave")  # readers never see half a file
