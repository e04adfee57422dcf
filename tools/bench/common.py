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


def wait_idle(daemon) -> dict:
    """Until the daemon has no session, is locked, and every shelf is stable."""
    return wait(lambda: (s := daemon.state())["session"] is None and s["lock"] == "locked"
                and all(sh["stable"] for sh in s["shelves"]) and s)


def open_and_close(daemon) -> dict:
    """An authorised shopper opens and closes the door without taking anything; until the
    receipt (the session's end) is shown."""
    daemon.post("/sim/door", {"state": "open"})
    daemon.post("/sim/door", {"state": "closed"})
    return wait(lambda: daemon.state()["receipt"])
