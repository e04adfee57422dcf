"""What the benchmarks share: a percentile and a polling wait (benchmarks measure; they never
assert a time)."""

from __future__ import annotations

import os
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


class CpuLimit:
    """Run the daemon as a slow board would (issue 23's "Pi-like run"): pinned to `cpus` with
    taskset and held to `percent` of one core by a cgroup CPU quota (cgroup v2's cpu.max, or v1's
    cpu.cfs_quota_us), so that a regression that only shows on a Raspberry Pi shows here. The
    quota needs a writable cgroup tree (root); without one, only the pinning applies, and
    `describe()` says so. `percent` None: no quota."""

    # The quota's period: with the kernel's default 100 ms, 30 % means 30 ms of running then 70 ms
    # stopped, which rounds every figure up to whole periods; a 10 ms period spreads the same
    # share as a slower CPU would.
    PERIOD_US = 10_000

    def __init__(self, cpus: str | None = None, percent: float | None = None):
        self.cpus, self.percent = cpus, percent
        self.group: str | None = None
        self.problem: str | None = None
        if percent is not None:
            self._make_group()

    def wrap(self) -> list[str]:
        """What goes before the daemon's command (CabinetProcess(wrap=...))."""
        return ["taskset", "-c", self.cpus] if self.cpus else []

    def apply(self, pid: int) -> None:
        """Put the process (its threads follow) under the quota."""
        if self.group is not None:
            with open(os.path.join(self.group, "cgroup.procs"), "w") as f:
                f.write(str(pid))

    def hold(self, pid: int) -> None:
        """Put an already running process (this one, say) under the pinning and the quota."""
        if self.cpus:
            os.sched_setaffinity(pid, {int(c) for c in _cpu_list(self.cpus)})
        self.apply(pid)

    def close(self) -> None:
        if self.group is not None:
            try:
                os.rmdir(self.group)
            except OSError:
                pass  # a process still in it: the kernel frees it once empty

    def describe(self) -> str:
        parts = [f"pinned to CPU {self.cpus} (taskset)"] if self.cpus else []
        if self.percent is not None:
            parts.append(f"{self.percent:g} % of a core (cgroup {self.group})" if self.group
                         else f"no CPU quota: {self.problem}")
        return ", ".join(parts) or "no CPU limit"

    def _make_group(self) -> None:
        quota = int(self.PERIOD_US * self.percent / 100)
        name = f"cabinet-bench-{os.getpid()}"
        v2, v1 = "/sys/fs/cgroup", "/sys/fs/cgroup/cpu"
        try:
            if os.path.exists(os.path.join(v2, "cgroup.controllers")):
                self.group = os.path.join(v2, name)
                os.makedirs(self.group, exist_ok=True)
                with open(os.path.join(self.group, "cpu.max"), "w") as f:
                    f.write(f"{quota} {self.PERIOD_US}")
            elif os.path.exists(os.path.join(v1, "cpu.cfs_quota_us")):
                self.group = os.path.join(v1, name)
                os.makedirs(self.group, exist_ok=True)
                with open(os.path.join(self.group, "cpu.cfs_period_us"), "w") as f:
                    f.write(str(self.PERIOD_US))
                with open(os.path.join(self.group, "cpu.cfs_quota_us"), "w") as f:
                    f.write(str(quota))
            else:
                self.problem = "no cgroup CPU controller here"
        except OSError as exc:
            self.group, self.problem = None, f"cannot make a cgroup ({exc.strerror}; run as root)"


def _cpu_list(text: str) -> list[int]:
    """taskset's list form: "0", "0,2", "0-3"."""
    cpus = []
    for part in text.split(","):
        low, _, high = part.partition("-")
        cpus.extend(range(int(low), int(high or low) + 1))
    return cpus


def cpu_limit_options(parser) -> None:
    parser.add_argument("--cpus", help="pin the daemon to these CPUs (taskset -c), e.g. 0")
    parser.add_argument("--cpu-quota", type=float, metavar="PERCENT",
                        help="hold the daemon to this share of one core (cgroup), e.g. 30")
