"""What the benchmarks share: a percentile and a polling wait (benchmarks measure; they never
assert a time)."""

from __future__ import annotations

import time


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def wait(predicate, timeout=30.0, interval=0.005):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError
