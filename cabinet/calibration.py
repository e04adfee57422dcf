"""Shelf calibration: the empty shelf's count (tare), then a reference weight's, give the shelf's
grams per count and offset. Plain numbers in, factors out; `ShelfCalibration` runs the two steps
against the shelf reader for `cabinet calibrate` (POST /api/calibrate) and saves the result in the
database (kv `calibration`), where it overrides the config's factors from then on, restarts
included.

A step averages several readings and refuses a shelf that moves while it is read, a reference
weight too light to measure well, and a span that goes the wrong way (the load cell's signal wires
swapped), each with what to do about it.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable

CALIBRATION_KEY = "calibration"
MIN_SPAN_COUNTS = 50


class CalibrationError(ValueError):
    """The step cannot be done as things are; the message says what to do."""


@dataclass(frozen=True)
class Scale:
    grams_per_count: float
    offset_grams: float


def scale_from(tare_counts: float, span_counts: float, reference_grams: float) -> Scale:
    """Factors that read the empty shelf as 0 g and the reference weight as its own weight."""
    if not 10 <= reference_grams <= 100_000:
        raise CalibrationError("the reference weight must be 10 g to 100 kg")
    span = span_counts - tare_counts
    if span < 0:
        raise CalibrationError("the reading went down with the weight on: the load cell's "
                               "signal wires are swapped (S+ and S-)")
    if span < MIN_SPAN_COUNTS:
        raise CalibrationError(f"the weight moved the reading by {span:.0f} counts only: use a "
                               f"heavier reference weight, or check the weight is on this shelf")
    gpc = reference_grams / span
    return Scale(gpc, -tare_counts * gpc)


def steady_mean(samples: list[float], *, allowed_spread: float) -> float:
    """The mean of readings that agree; CalibrationError if the shelf was moving."""
    spread = max(samples) - min(samples)
    if spread > allowed_spread:
        raise CalibrationError(f"the shelf moved while it was read ({spread:.0f} counts apart): "
                               "let it come to rest, do not touch the cabinet, and try again")
    return statistics.fmean(samples)


class ShelfCalibration:
    """The two steps against the running shelf reader. Reading a shelf's raw counts is I/O and
    takes a second, so `sample` runs on the caller's (HTTP) thread, the bus having its own lock;
    what the steps remember and change (the tare, the reader's factors, the saved values) belongs
    to the controller's thread: `tare` and `span` run there (the `calibrate` operation), so a session
    cannot start half-way and no state is shared between threads."""

    def __init__(self, reader: Any, save: Callable[[dict], None], saved: dict | None, *,
                 samples: int = 10, interval: float = 0.1, sleep=time.sleep):
        self.reader, self.save = reader, save
        self.saved: dict[str, Any] = dict(saved or {})
        self.samples, self.interval, self.sleep = samples, interval, sleep
        self._tare: dict[int, float] = {}

    def sample(self, shelf: int) -> float:
        """The shelf's raw counts at rest (any thread); KeyError for an unknown shelf,
        CalibrationError when it moved, DeviceError when it does not answer."""
        board = self.reader.board(shelf)
        values = []
        for _ in range(self.samples):
            values.append(self.reader.read_raw(shelf))
            self.sleep(self.interval)
        # Two grams' worth of counts: a shelf at rest is steadier than that.
        return steady_mean(values, allowed_spread=max(2.0 / abs(board.grams_per_count), 3.0))

    def tare(self, shelf: int, counts: float) -> dict[str, Any]:
        """The empty shelf's counts, remembered for its span (controller thread)."""
        self._tare[shelf] = counts
        return {"shelf": shelf, "step": "tare", "counts": round(counts, 2)}

    def span(self, shelf: int, counts: float, reference_grams: float) -> dict[str, Any]:
        """The counts with the reference weight on: new factors, used and saved (controller
        thread)."""
        if shelf not in self._tare:
            raise CalibrationError("tare the empty shelf first")
        before = self.reader.board(shelf)
        scale = scale_from(self._tare.pop(shelf), counts, reference_grams)
        self.reader.set_scale(shelf, scale.grams_per_count, scale.offset_grams)
        self.saved[str(shelf)] = {"grams_per_count": scale.grams_per_count,
                                  "offset_grams": scale.offset_grams}
        self.save(self.saved)
        return {"shelf": shelf, "step": "span", "grams_per_count": scale.grams_per_count,
                "offset_grams": scale.offset_grams,
                "previous_grams_per_count": before.grams_per_count,
                "change_percent": round((scale.grams_per_count / before.grams_per_count - 1)
                                        * 100, 2)}


def apply_saved(reader: Any, saved: dict | None) -> list[int]:
    """At start-up: the saved factors over the config's. Returns the shelves changed."""
    changed = []
    for shelf, scale in (saved or {}).items():
        try:
            reader.set_scale(int(shelf), float(scale["grams_per_count"]),
                             float(scale["offset_grams"]))
            changed.append(int(shelf))
        except (KeyError, ValueError, TypeError):
            continue  # a shelf no longer in the config: its calibration waits, unused
    return changed
