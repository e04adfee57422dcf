"""Run cabinetd as systemd/cabinetd.service says, where systemd is not PID 1 (tests, chaos).

The unit file is read, not restated: its ExecStartPre, ExecStart and ExecStopPost lines (with
`paths` substituted: /opt/cabinet to a test's folder, say), TimeoutStartSec, RestartSec,
Restart=on-failure and RestartPreventExitStatus. What systemd does with them and this repeats:
each start runs ExecStartPre, then ExecStart under a notify socket (tools/daemon_process.py); no
READY within TimeoutStartSec is result `timeout` (killed); an exit is `success` (status 0 or a
SIGTERM it was sent) or `exit-code`; ExecStopPost then runs with SERVICE_RESULT, EXIT_CODE and
EXIT_STATUS in its environment; a failure is started again after RestartSec unless its status is
in RestartPreventExitStatus. `PathTrigger` stands in for a .path unit with PathChanged=: it runs
its service's ExecStart whenever one of the paths is written. The boot test
(tools/image/boot_test.py) runs the same units under the real systemd.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tools.daemon_process import CabinetProcess  # noqa: E402


def unit_settings(unit: Path, paths: dict[str, str]) -> dict[str, list[str]]:
    """`Key: [values]` of the unit's [Service] (and [Path]) lines, paths substituted."""
    settings: dict[str, list[str]] = {}
    for raw in unit.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", "[")) or "=" not in line:
            continue
        key, value = line.split("=", 1)
        for old, new in sorted(paths.items(), key=lambda kv: -len(kv[0])):
            value = value.replace(old, new)
        settings.setdefault(key, []).append(value)
    return settings


def command_of(value: str) -> tuple[list[str], bool]:
    """An Exec line's argv and whether its failure is ignored (the "-" prefix; "+" needs nothing
    here: the tests run as one user)."""
    prefix = re.match(r"[-+@:!]*", value).group(0)
    return shlex.split(value[len(prefix):]), "-" in prefix


def _seconds(value: str) -> float:
    found = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|min)?", value.strip())
    number, unit = float(found.group(1)), found.group(2) or "s"
    return number * {"ms": 0.001, "s": 1, "min": 60}[unit]


class UnitRunner:
    """cabinetd under the unit's start, stop and restart rules, in a thread of its own."""

    def __init__(self, unit: Path, paths: dict[str, str], *, data_dir: Path,
                 extra_args: tuple[str, ...] = (), env: dict | None = None,
                 timeout_start: float | None = None, restart_seconds: float | None = None):
        s = unit_settings(unit, paths)
        self.start_pre = [command_of(v) for v in s.get("ExecStartPre", [])]
        self.stop_post = [command_of(v) for v in s.get("ExecStopPost", [])]
        (self.start_cmd, _), = [command_of(v) for v in s["ExecStart"]]
        self.timeout_start = timeout_start or _seconds(s.get("TimeoutStartSec", ["90"])[0])
        self.restart_seconds = restart_seconds if restart_seconds is not None \
            else _seconds(s.get("RestartSec", ["0.1"])[0])
        self.prevent = {int(v) for line in s.get("RestartPreventExitStatus", [])
                        for v in line.split()}
        assert s.get("Restart") == ["on-failure"], "only Restart=on-failure is repeated here"
        self.data_dir, self.extra_args, self.env = data_dir, extra_args, env or {}
        self.runs: list[dict] = []          # every start: its result, code, status
        self.hook_output: list[str] = []
        self.daemon: CabinetProcess | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="unit-runner", daemon=True)

    def start(self) -> "UnitRunner":
        self._thread.start()
        return self

    def ready_daemon(self, timeout: float = 60) -> CabinetProcess:
        """The daemon once it has said READY and its URL is known."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            daemon = self.daemon
            if daemon is not None and daemon.proc.poll() is None and daemon.url and any(
                    "READY=1" in m for _, m in list(daemon.notifications)):
                return daemon
            time.sleep(0.05)
        raise TimeoutError(f"no ready cabinetd within {timeout} s; runs: {self.runs}")

    def stop(self, timeout: float = 30) -> None:
        self._stopping.set()
        daemon = self.daemon
        if daemon is not None and daemon.proc.poll() is None:
            daemon.proc.terminate()
        self._thread.join(timeout)

    # --- the loop ---------------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stopping.is_set():
            for argv, ignore in self.start_pre:
                self._hook(argv, ignore, {})
            started = time.monotonic()
            daemon = CabinetProcess(*self.extra_args, data_dir=self.data_dir, env=self.env,
                                    program=self.start_cmd, cwd=self.data_dir)
            self.daemon = daemon
            result = self._wait(daemon, started)
            self.runs.append(result)
            env = {"SERVICE_RESULT": result["result"], "EXIT_CODE": result["code"],
                   "EXIT_STATUS": result["status"]}
            for argv, ignore in self.stop_post:
                self._hook(argv, ignore, env)
            daemon.close()
            failed = result["result"] != "success"
            if self._stopping.is_set() or not failed or (
                    result["code"] == "exited" and int(result["status"]) in self.prevent):
                return
            self._stopping.wait(self.restart_seconds)

    def _wait(self, daemon: CabinetProcess, started: float) -> dict:
        ready = False
        while True:
            status = daemon.proc.poll()
            if status is not None:
                break
            if not ready:
                ready = any("READY=1" in m for _, m in list(daemon.notifications))
                if not ready and time.monotonic() - started > self.timeout_start:
                    daemon.proc.kill()
                    daemon.proc.wait()
                    return {"result": "timeout", "code": "killed", "status": "KILL",
                            "log": daemon.log_lines[-5:]}
            time.sleep(0.05)
        if status < 0:
            stopped_by_us = self._stopping.is_set() and -status == 15
            return {"result": "success" if stopped_by_us else "signal", "code": "killed",
                    "status": {9: "KILL", 15: "TERM", 6: "ABRT", 11: "SEGV"}.get(-status,
                                                                                 str(-status)),
                    "log": daemon.log_lines[-5:]}
        return {"result": "success" if status == 0 else "exit-code", "code": "exited",
                "status": str(status), "log": daemon.log_lines[-5:]}

    def _hook(self, argv: list[str], ignore: bool, env: dict) -> None:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=120,
                                  env={**os.environ, **env}, cwd="/")
        except FileNotFoundError:
            if ignore:
                return
            raise
        self.hook_output.append((done.stdout + done.stderr).strip())
        if done.returncode != 0 and not ignore:
            raise RuntimeError(f"{argv}: exit {done.returncode}: {done.stderr[-500:]}")


class PathTrigger:
    """A .path unit's PathChanged=: its service's ExecStart run whenever a path is written."""

    def __init__(self, path_unit: Path, service_unit: Path, paths: dict[str, str],
                 poll_seconds: float = 0.2):
        self.watched = [Path(p) for p in unit_settings(path_unit, paths)["PathChanged"]]
        service = unit_settings(service_unit, paths)
        self.commands = [command_of(v)[0] for v in (*service.get("ExecStartPre", []),
                                                     *service["ExecStart"])]
        self.poll_seconds = poll_seconds
        self.output: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="path-trigger", daemon=True)

    def start(self) -> "PathTrigger":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)

    def run_now(self) -> str:
        out = ""
        for command in self.commands:
            done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd="/")
            out += (done.stdout + done.stderr).strip() + "\n"
        self.output.append(out.strip())
        return out.strip()

    def _stamp(self) -> list:
        return [(p.stat().st_mtime_ns, p.stat().st_ino) if p.exists() else None
                for p in self.watched]

    def _loop(self) -> None:
        seen = self._stamp()
        while not self._stop.wait(self.poll_seconds):
            now = self._stamp()
            if now != seen:
                seen = now
                self.run_now()
