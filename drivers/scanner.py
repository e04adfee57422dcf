"""The serial QR scanner: a USB-CDC or UART module that types each code as a line.

One thread owns the port (opened exclusively), splits the byte stream on CR or LF, and posts each
line as CodeScanned. A line that is too long or not UTF-8 is reported as ScanUnreadable and dropped
whole, never cut into a shorter code. Bytes left without a line end and followed by a pause (line
noise, a scan cut off by an unplug) are dropped when the next bytes come, so they cannot spoil the
next shopper's code: a scanner sends one code as one burst. A port that vanishes (USB unplugged) is a fault; the reader
retries with back-off and recovers by itself when the port returns.
"""

from __future__ import annotations

import os
import time
from typing import Callable

import serial

from .events import CodeScanned, ScanUnreadable
from .reader import Backoff, FaultTracker, ReaderThread


# A code is sent as one burst: at 9600 baud its bytes are about 1 ms apart. A pause this long
# inside a line means its start was noise, or the end of an earlier scan that never finished.
# Generous (shoppers are seconds apart), so that a reader thread held up for a moment on a busy
# Pi never cuts a real code in two.
STALE_SECONDS = 0.5


class LineSplitter:
    """Bytes in, complete lines out; overlong lines are flagged and skipped to the next end; an
    unfinished line followed by a pause of more than `stale_seconds` is dropped (flagged) when the
    next bytes arrive (`feed(data, now)`; without `now`, no pause is seen)."""

    def __init__(self, max_line_bytes: int, stale_seconds: float = STALE_SECONDS):
        self.max = max_line_bytes
        self.stale = stale_seconds
        self._buffer = bytearray()
        self._overflowed = False
        self._last: float | None = None

    def feed(self, data: bytes, now: float | None = None) -> list[bytes | ValueError]:
        out: list[bytes | ValueError] = []
        if not data:
            return out
        if now is not None:
            if (self._buffer or self._overflowed) and self._last is not None \
                    and now - self._last > self.stale:
                out.append(ValueError(f"{len(self._buffer)} bytes with no line end, then a "
                                      f"pause: dropped"))
                self._buffer.clear()
                self._overflowed = False
            self._last = now
        for byte in data:
            if byte in (0x0A, 0x0D):
                if self._overflowed:
                    out.append(ValueError(f"line longer than {self.max} bytes"))
                elif self._buffer:
                    out.append(bytes(self._buffer))
                self._buffer.clear()
                self._overflowed = False
            elif len(self._buffer) >= self.max:
                self._overflowed = True
            else:
                self._buffer.append(byte)
        return out


class ScannerReader(ReaderThread):
    name = "scanner"

    def __init__(self, port: str, *, baudrate: int, max_line_bytes: int,
                 emit: Callable[[object], None], clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.port = port
        self._baudrate = baudrate
        self._max = max_line_bytes
        self._emit = emit
        self._clock = clock
        self._faults = FaultTracker(emit, clock)
        self._serial: serial.Serial | None = None

    @property
    def connected(self) -> bool:
        """The port is open (pyserial flushes input on open: lines sent before are lost, as they
        would be from a real scanner)."""
        return self._serial is not None

    def _open(self) -> serial.Serial:
        return serial.Serial(self.port, self._baudrate, timeout=0.5, exclusive=True)

    def _deliver(self, item: bytes | ValueError) -> None:
        now = self._clock()
        if isinstance(item, ValueError):
            self._emit(ScanUnreadable(str(item), self.port, now))
            return
        try:
            text = item.decode("utf-8")
        except UnicodeDecodeError as exc:
            self._emit(ScanUnreadable(f"not UTF-8 at byte {exc.start}", self.port, now))
            return
        if not text.isprintable():
            self._emit(ScanUnreadable("contains control characters", self.port, now))
            return
        self._emit(CodeScanned(text, self.port, now))

    def _run(self) -> None:
        backoff = Backoff(first=0.5, cap=10.0)
        while not self._stopping.is_set():
            try:
                self._serial = self._open()
            except (serial.SerialException, OSError) as exc:
                detail = ("serial port not present (unplugged?)" if not os.path.exists(self.port)
                          else f"cannot open: {exc}")
                self._faults.fault("scanner", f"scanner on {self.port}: {detail}")
                if not self._sleep(backoff.next()):
                    break
                continue
            self._faults.ok("scanner")
            backoff.reset()
            splitter = LineSplitter(self._max)
            try:
                while not self._stopping.is_set():
                    # read(n) would wait for n bytes or the timeout: take one byte (blocking up
                    # to the timeout), then whatever else has arrived, so a line is seen at once.
                    data = self._serial.read(1)
                    if data and self._serial.in_waiting:
                        data += self._serial.read(self._serial.in_waiting)
                    for item in splitter.feed(data, self._clock()):
                        self._deliver(item)
            except (serial.SerialException, OSError, TypeError, AttributeError) as exc:
                # pyserial reports a vanished device as "readiness to read but returned no
                # data"; close() from another thread surfaces as TypeError/AttributeError.
                if not self._stopping.is_set():
                    self._faults.fault("scanner", f"scanner on {self.port}: disconnected ({exc})")
            finally:
                self._close_port()

    def _close_port(self) -> None:
        port, self._serial = self._serial, None
        if port is not None:
            try:
                port.close()
            except Exception:
                pass

    def _release(self) -> None:
        # Closing the port from here unblocks read() in the thread.
        if self._serial is not None:
            try:
                self._serial.cancel_read()
            except Exception:
                pass
