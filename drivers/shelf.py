"""Weighing shelves: load-cell boards on the RS485 bus, polled in one thread.

Each shelf is one Modbus device holding its weight in a register (address, format and scale from
config). The reader posts every reading as ShelfWeighed in grams; deciding when a shelf is stable
and what a difference means is domain work (cabinet/weighing.py). A shelf that stops answering is
a fault of that shelf only; the others go on being read.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable

from .errors import DeviceError
from .events import ShelfWeighed
from .modbus import ModbusBus, decode, register_count
from .reader import Backoff, FaultTracker, ReaderThread


@dataclass(frozen=True)
class ShelfBoard:
    shelf: int
    device_id: int
    grams_per_count: float = 1.0
    offset_grams: float = 0.0


class ShelfReader(ReaderThread):
    name = "shelves"

    def __init__(self, bus: ModbusBus, boards: list[ShelfBoard], *, register: int,
                 register_kind: str, value_format: str, word_order: str,
                 poll_interval_seconds: float, emit: Callable[[object], None],
                 clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.bus = bus
        self.boards = list(boards)
        self._register = register
        self._kind = register_kind
        self._format = value_format
        self._word_order = word_order
        self._interval = poll_interval_seconds
        self._emit = emit
        self._clock = clock
        self._faults = FaultTracker(emit, clock)
        self._wake = threading.Event()

    def set_interval(self, seconds: float) -> None:
        """Change the polling period (faster during a session), starting with a poll at once:
        a session that just began or a door that just closed waits on fresh readings, and the
        rest of the old period (up to half a second idle) would be added to that wait."""
        self._interval = seconds
        self._wake.set()

    @staticmethod
    def device_name(shelf: int) -> str:
        return f"shelf:{shelf}"

    def read_raw(self, shelf: int) -> float:
        """The board's own count, before scaling (for calibration; safe from any thread: the bus
        has its lock)."""
        board = self.board(shelf)
        registers = self.bus.read_registers(self.device_name(board.shelf), board.device_id,
                                            self._register, register_count(self._format),
                                            self._kind)
        return decode(registers, self._format, self._word_order)

    def read_grams(self, board: ShelfBoard) -> float:
        return self.read_raw(board.shelf) * board.grams_per_count + board.offset_grams

    def board(self, shelf: int) -> ShelfBoard:
        for board in self.boards:
            if board.shelf == shelf:
                return board
        raise KeyError(f"no shelf {shelf}")

    def set_scale(self, shelf: int, grams_per_count: float, offset_grams: float) -> None:
        """New calibration factors for one shelf, used from the next reading on."""
        self.board(shelf)  # KeyError for a shelf this reader does not have
        self.boards = [ShelfBoard(b.shelf, b.device_id, grams_per_count, offset_grams)
                       if b.shelf == shelf else b for b in self.boards]

    def poll_once(self) -> int:
        """Read every shelf once; return how many answered."""
        answered = 0
        for board in self.boards:
            name = self.device_name(board.shelf)
            asked = self._clock()
            try:
                grams = self.read_grams(board)
            except DeviceError as exc:
                self._faults.fault(name, str(exc))
                continue
            answered += 1
            self._faults.ok(name)
            self._emit(ShelfWeighed(board.shelf, grams, asked))
        return answered

    def _run(self) -> None:
        backoff = Backoff(first=self._interval, cap=10.0)
        while not self._stopping.is_set():
            started = time.monotonic()
            if self.poll_once():
                backoff.reset()
                # A period from poll to poll, not a pause after one: the bus time of every
                # board (milliseconds each at 9600 baud) would otherwise stretch each period.
                delay = max(0.0, started + self._interval - time.monotonic())
            else:  # the whole bus is silent: back off instead of hammering a dead port
                delay = backoff.next()
            if not self._sleep(delay):
                break

    def _sleep(self, seconds: float) -> bool:
        """Sleep until the next poll is due or set_interval() wants one now; False to stop."""
        if self._wake.wait(seconds):
            self._wake.clear()   # only a wake that was seen: one set after a timeout stays
        return not self._stopping.is_set()

    def _release(self) -> None:
        self._wake.set()
