"""Weighing, the domain side: when is a shelf stable, and what does its change in weight mean.

Plain numbers in, plain numbers out; no Modbus, no clock of its own. A shelf is stable when its last
`readings` values all lie within `band_grams` of each other; the stable weight is their mean, which
averages the load cell's noise away. Any reading outside the band (a hand, a swinging bottle)
makes the shelf unstable again at once. After the door closes, a shelf must give `fresh` new
readings (of the window's `readings`) before it counts as stable again.

A session's difference per shelf (stable weight before unlocking minus after closing, so creep and
drift between sessions cancel out) is explained by `explain()` as counts of the products on that
shelf, exactly, or declared ambiguous or unexplained: never guessed.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Callable


class StabilityFilter:
    """The last `readings` values, stable when they all lie within `band_grams`. After
    `restart()` (the door closed) at least `fresh` readings must be new: the window may still hold
    readings from before, and when the shelf was steady across the close they end the wait
    after `fresh` readings instead of `readings`; when anything moved, the older ones fall
    outside the band and the wait is a whole window of new readings, as before."""

    def __init__(self, *, readings: int, band_grams: float, fresh: int | None = None):
        if readings < 2:
            raise ValueError("stability needs at least 2 readings")
        fresh = readings if fresh is None else fresh
        if not 1 <= fresh <= readings:
            raise ValueError(f"fresh readings must be 1 to {readings}, not {fresh}")
        self.band = band_grams
        self.fresh_needed = fresh
        self._window: deque[float] = deque(maxlen=readings)
        self._fresh = 0
        self._since: float | None = None   # the last restart

    def add(self, grams: float, at: float | None = None) -> None:
        """A reading, asked for at time `at`: one asked for before the last restart arrived
        after it but says what the shelf held before, so it is not fresh."""
        self._window.append(grams)
        if at is None or self._since is None or at >= self._since:
            self._fresh += 1

    def reset(self) -> None:
        """Forget every reading (a shelf that faulted: what it said before is not evidence)."""
        self._window.clear()
        self._fresh = 0   # the last restart stands: a reading asked for before it is still old

    def restart(self, at: float | None = None) -> None:
        """From time `at` on, `fresh` new readings are needed before the shelf is stable."""
        self._fresh = 0
        self._since = at

    @property
    def latest(self) -> float | None:
        return self._window[-1] if self._window else None

    @property
    def latest_fresh(self) -> float | None:
        """The latest reading if it came after the last restart, else None (a shelf silent since
        the door closed has no after-weight: the one from before may be mid-grab)."""
        return self._window[-1] if self._fresh else None

    @property
    def stable(self) -> bool:
        return (len(self._window) == self._window.maxlen and self._fresh >= self.fresh_needed
                and max(self._window) - min(self._window) <= self.band)

    @property
    def stable_grams(self) -> float | None:
        """The mean of the window when stable, else None."""
        if not self.stable:
            return None
        return sum(self._window) / len(self._window)


# --- explaining a difference ------------------------------------------------------------------------

@dataclass(frozen=True)
class Item:
    """One product on a shelf as the solver sees it."""
    sku: str
    unit_grams: float
    tolerance_grams: float
    max_count: int


@dataclass(frozen=True)
class Explanation:
    counts: dict[str, int]      # sku -> how many (only non-zero counts)
    error_grams: float          # |difference - sum of unit weights|
    allowed_grams: float        # the tolerance this combination is allowed


@dataclass(frozen=True)
class ShelfVerdict:
    """What one shelf's difference means. `status` is one of:
    "explained" (exactly one combination fits), "ambiguous" (several fit: never guessed),
    "unexplained" (none fits), "too_complex" (the search was cut off: review)."""
    status: str
    difference_grams: float
    counts: dict[str, int] | None
    candidates: tuple[Explanation, ...]


def explain(difference_grams: float, items: list[Item], *, base_tolerance_grams: float,
            max_nodes: int = 200_000, max_candidates: int = 5,
            clock: Callable[[], float] | None = None, max_seconds: float = 1.0) -> ShelfVerdict:
    """Every combination of counts (0..max_count each) whose unit weights sum to `difference_grams`
    within base_tolerance + sqrt(sum(count * tolerance^2)) (unit variations add like independent
    errors). Exact: a bounded depth-first search, not a greedy fill, so 2 x 531 g is not mistaken
    for 1 x 572 g + something. The empty combination counts too: a change smaller than the
    tolerance is "nothing", unless a light product fits as well, which makes it ambiguous.

    Bounded whatever the items: products with nothing to take are not searched, the search keeps
    its own stack (no recursion, so no depth limit to hit), and it gives up as `too_complex` past
    `max_nodes` nodes or, with a `clock`, `max_seconds` (the caller's thread is the cabinet's)."""
    target = difference_grams
    ordered = sorted((item for item in items if item.max_count > 0),
                     key=lambda item: -item.unit_grams)
    suffix_weight = [0.0] * (len(ordered) + 1)
    suffix_var = [0.0] * (len(ordered) + 1)
    for i in range(len(ordered) - 1, -1, -1):
        it = ordered[i]
        suffix_weight[i] = suffix_weight[i + 1] + it.unit_grams * it.max_count
        suffix_var[i] = suffix_var[i + 1] + it.max_count * it.tolerance_grams ** 2
    deadline = None if clock is None else clock() + max_seconds
    found: list[Explanation] = []
    # Each entry: (next item index, weight so far, variance so far, counts so far).
    stack: list[tuple[int, float, float, tuple[int, ...]]] = [(0, 0.0, 0.0, ())]
    nodes = 0
    while stack:
        i, weight, variance, counts = stack.pop()
        nodes += 1
        if nodes > max_nodes or (deadline is not None and nodes % 1024 == 0
                                 and clock() > deadline):
            return ShelfVerdict("too_complex", round(difference_grams, 1), None, ())
        if i == len(ordered):
            allowed = base_tolerance_grams + math.sqrt(variance)
            error = abs(target - weight)
            if error <= allowed:
                found.append(Explanation({ordered[k].sku: c for k, c in enumerate(counts) if c},
                                         round(error, 1), round(allowed, 1)))
            continue
        item = ordered[i]
        widest = base_tolerance_grams + math.sqrt(variance + suffix_var[i])
        if weight + suffix_weight[i] < target - widest:
            continue  # even taking everything left cannot reach the difference
        children = []
        for n in range(item.max_count + 1):
            w = weight + n * item.unit_grams
            if w - target > widest:
                break  # heavier than the difference however wide the tolerance: stop adding
            children.append((i + 1, w, variance + n * item.tolerance_grams ** 2, counts + (n,)))
        stack.extend(reversed(children))  # fewest first, as a recursive search would go
    found.sort(key=lambda e: e.error_grams)
    candidates = tuple(found[:max_candidates])
    if len(found) == 1:
        return ShelfVerdict("explained", round(difference_grams, 1), found[0].counts, candidates)
    return ShelfVerdict("ambiguous" if found else "unexplained", round(difference_grams, 1), None,
                        candidates)
