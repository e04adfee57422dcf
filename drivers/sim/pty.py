"""Pseudo-terminals that stand in for serial cables in simulation and tests.

A pty carries real bytes through the kernel's tty layer (baud rate is ignored), so the drivers open
and read them exactly as they would /dev/ttyUSB0. Each port is published under a stable symlink path,
like udev's /dev/serial/by-id names, so that "unplugging" can remove the path and "plugging in" can
bring it back on a new pty, as a USB adapter does.

- PtyPort: one pty; the simulation writes to (and reads from) the far end, e.g. a QR scanner.
- PtyCable: two ptys joined by a copying thread, for a Modbus server and a client that each need a
  device path; `tamper` can rewrite or drop the bytes in flight, to test garbage, bad CRCs and
  partial frames on the wire.
"""

from __future__ import annotations

import os
import select
import threading
import tty
from pathlib import Path
from typing import Callable


def _open_pty() -> tuple[int, int, str]:
    master, slave = os.openpty()
    tty.setraw(slave)  # no echo, no CR/LF translation: a clean 8-bit line like a UART
    return master, slave, os.ttyname(slave)


def _link(path: Path, target: str) -> None:
    tmp = path.with_name(path.name + ".new")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(target, tmp)
    os.replace(tmp, path)


class PtyPort:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._fds: tuple[int, int] | None = None
        self.plug()

    @property
    def plugged(self) -> bool:
        return self._fds is not None

    def plug(self) -> None:
        if self._fds is not None:
            return
        master, slave, name = _open_pty()
        self._fds = (master, slave)
        _link(self.path, name)

    def unplug(self) -> None:
        """Remove the path and hang up the line, as pulling a USB adapter does."""
        if self._fds is None:
            return
        if self.path.is_symlink():
            self.path.unlink()
        for fd in self._fds:
            os.close(fd)
        self._fds = None

    def write(self, data: bytes) -> None:
        if self._fds is None:
            raise OSError(f"{self.path} is unplugged")
        os.write(self._fds[0], data)

    def close(self) -> None:
        self.unplug()


Tamper = Callable[[str, bytes], bytes]


class PtyCable:
    """Two device paths (`a_path`, `b_path`) joined like a null-modem cable."""

    def __init__(self, a_path: str | Path, b_path: str | Path):
        self.a_path, self.b_path = Path(a_path), Path(b_path)
        self.tamper: Tamper | None = None
        self._lock = threading.Lock()
        self._ends: list[tuple[int, int]] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.plug()

    @property
    def plugged(self) -> bool:
        return self._ends is not None

    def plug(self) -> None:
        with self._lock:
            if self._ends is not None:
                return
            a_master, a_slave, a_name = _open_pty()
            b_master, b_slave, b_name = _open_pty()
            self._ends = [(a_master, a_slave), (b_master, b_slave)]
            _link(self.a_path, a_name)
            _link(self.b_path, b_name)
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._copy, args=(self._ends, self._stop),
                                            name=f"cable {self.b_path.name}", daemon=True)
            self._thread.start()

    def unplug(self, side: str = "b") -> None:
        """Hang up both ends and remove the `side` path (the one the driver under test uses)."""
        with self._lock:
            if self._ends is None:
                return
            ends, self._ends = self._ends, None
            self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        for path in ((self.b_path,) if side == "b" else (self.a_path, self.b_path)):
            if path.is_symlink():
                path.unlink()
        for master, slave in ends:
            os.close(master)
            os.close(slave)

    def _copy(self, ends: list[tuple[int, int]], stop: threading.Event) -> None:
        (a_master, _), (b_master, _) = ends
        while not stop.is_set():
            try:
                ready, _, _ = select.select([a_master, b_master], [], [], 0.5)
                for fd in ready:
                    data = os.read(fd, 4096)
                    direction = "a->b" if fd == a_master else "b->a"
                    if self.tamper is not None:
                        data = self.tamper(direction, data)
                    if data:
                        os.write(b_master if fd == a_master else a_master, data)
            except OSError:
                if stop.is_set():
                    return
                raise

    def close(self) -> None:
        self.unplug(side="both")
