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
    """Run a daemon as a slow board would (issue 23's "Pi-like run"): pinned to `cpus` with
    taskset and held to `percent` of one core by a cgroup CPU quota (cgroup v2's cpu.max, or v1's
    cpu.cfs_quota_us), so that a regression that only shows on a Raspberry Pi shows here. Each
    daemon gets a cgroup (a quota) of its own, joined before it execs, so that its start is held
    too and two daemons measured side by side do not share one budget. The quota needs a
    writable cgroup tree (root); without one, only the pinning applies, and `describe()` says so.
    `percent` None: no quota. `close()` removes the groups (their processes must have ended, or,
    for `hold`, be this one)."""

    # The quota's period: with the kernel's default 100 ms, 30 % means 30 ms of running then 70 ms
    # stopped, which rounds every figure up to whole periods; a 10 ms period spreads the same
    # share as a slower CPU would.
    PERIOD_US = 10_000

    def __init__(self, cpus: str | None = None, percent: float | None = None):
        self.cpus, self.percent = cpus, percent
        self.groups: list[str] = []
        self.problem: str | None = None
        self._held: tuple[int, str] | None = None   # (pid, the cgroup it came from)
        if percent is not None:
            self._root = self._controller_root()
            trial = self._new_group()   # so that describe() says at once whether a quota holds
            if trial is not None:
                os.rmdir(self.groups.pop())

    def wrap(self) -> list[str]:
        """What goes before a daemon's command (CabinetProcess(wrap=...)): it joins a new cgroup
        and execs the pinning, which execs the daemon (the pid stays the daemon's)."""
        prefix = ["taskset", "-c", self.cpus] if self.cpus else []
        group = self._new_group()
        if group is None:
            return prefix
        return ["sh", "-c", f'echo $$ > {group}/cgroup.procs && exec "$@"', "sh", *prefix]

    def hold(self, pid: int) -> None:
        """Put an already running process (this one, say) under the pinning and a quota."""
        if self.cpus:   # every thread: numpy's and OpenCV's pools exist already
            for task in os.listdir(f"/proc/{pid}/task"):
                os.sched_setaffinity(int(task), set(_cpu_list(self.cpus)))
        group = self._new_group()
        if group is not None:
            self._held = (pid, self._cgroup_of(pid))
            with open(os.path.join(group, "cgroup.procs"), "w") as f:
                f.write(str(pid))

    def close(self) -> None:
        if self._held is not None:   # back where it came from: a group with a process stays
            pid, home = self._held
            self._held = None
            for where in (home, self._root or "/sys/fs/cgroup"):
                try:
                    with open(os.path.join(where, "cgroup.procs"), "w") as f:
                        f.write(str(pid))
                    break
                except OSError:
                    continue   # a container's path from /proc that is not this mount's
        for group in self.groups:
            try:
                os.rmdir(group)
            except OSError as exc:
                print(f"(cgroup {group} left behind: {exc.strerror})")
        self.groups = []

    def describe(self) -> str:
        parts = [f"pinned to CPU {self.cpus} (taskset)"] if self.cpus else []
        if self.percent is not None:
            parts.append(f"{self.percent:g} % of a core each (cgroup, {self.PERIOD_US // 1000} ms "
                         "period)" if self._root else f"no CPU quota: {self.problem}")
        return ", ".join(parts) or "no CPU limit"

    def _controller_root(self) -> str | None:
        v2, v1 = "/sys/fs/cgroup", "/sys/fs/cgroup/cpu"
        if os.path.exists(os.path.join(v2, "cgroup.controllers")):
            return v2
        if os.path.exists(os.path.join(v1, "cpu.cfs_quota_us")):
            return v1
        self.problem = "no cgroup CPU controller here"
        return None

    def _cgroup_of(self, pid: int) -> str:
        for line in open(f"/proc/{pid}/cgroup").read().splitlines():
            _, controllers, path = line.split(":", 2)
            v2 = self._root == "/sys/fs/cgroup"
            if (v2 and controllers == "") or (not v2 and "cpu" in controllers.split(",")):
                return self._root + path
        return self._root

    def _new_group(self) -> str | None:
        if self.percent is None or self._root is None:
            return None
        quota = int(self.PERIOD_US * self.percent / 100)
        group = os.path.join(self._root, f"cabinet-bench-{os.getpid()}-{len(self.groups)}")
        try:
            os.makedirs(group)
        except OSError as exc:
            self.problem, self._root = f"cannot make a cgroup ({exc.strerror}; run as root)", None
            return None
        self.groups.append(group)
        try:
            if self._root == "/sys/fs/cgroup":
                with open(os.path.join(group, "cpu.max"), "w") as f:
                    f.write(f"{quota} {self.PERIOD_US}")
            else:
                with open(os.path.join(group, "cpu.cfs_period_us"), "w") as f:
                    f.write(str(self.PERIOD_US))
                with open(os.path.join(group, "cpu.cfs_quota_us"), "w") as f:
                    f.write(str(quota))
        except OSError as exc:
            self.problem, self._root = f"cannot set a CPU quota ({exc.strerror})", None
            os.rmdir(self.groups.pop())
            return None
        return group


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
