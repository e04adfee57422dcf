"""The daemon's side of an update after the installer (issue 20; docs/updates.md): it reads the
state the installer and the rollback keep (cabinet/supervisor.py), reports each step once, and
does what falls to the version that runs:

- the previous version, once the installer has switched away from it, runs the health selftest
  (the baseline the new version is held to) and asks the controller to restart between sessions;
- the version on trial runs the same selftest after READY and writes its verdict to
  DATA/updates/health.json: a line that passed under the previous version and fails now is a
  failed update, and the daemon then exits EXIT_UNHEALTHY between sessions (the supervisor rolls
  back); a good verdict has the installer's service mark it healthy;
- a version running after a rollback reports `rolled_back` with the reason and raises the
  `update_failed` alarm.

The selftest's lock line reads the relay and its feedback without cycling the lock (nobody is at
the cabinet), and the lines about the world rather than the software (backend, clock) are left out.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Iterable

from . import supervisor

log = logging.getLogger("cabinetd.update")
NOT_THE_SOFTWARE = {"backend", "clock"}   # selftest lines the world fails, not a release
POLL_SECONDS = 2.0


class UpdateWatch:
    def __init__(self, opt: str | Path, updates: str | Path, *,
                 report: Callable[[dict[str, Any]], Any],
                 restart: Callable[[int, str], None],
                 selftest: Callable[[], Iterable[dict[str, Any]]],
                 venv: str | None = None, poll_seconds: float = POLL_SECONDS):
        """`report`: an `update` step to record (returns False when it could not be);
        `restart(exit_status, reason)`: stop between sessions; `selftest`: the health check's
        lines (the lock not cycled); `venv`: the name of the venv this daemon runs from (its
        sys.prefix)."""
        self.opt, self.updates = Path(opt), Path(updates)
        self.report, self.restart, self.selftest = report, restart, selftest
        self.venv = venv if venv is not None else Path(sys.prefix).name
        self.poll_seconds = poll_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="update-watch", daemon=True)

    def start(self) -> None:
        if (self.opt / "venvs").is_dir():   # else installed by hand: no releases to watch
            self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll()
            except Exception:   # never the daemon's end: the next poll tries again
                log.exception("update watch")
            self._stop.wait(self.poll_seconds)

    # --- one look at the state --------------------------------------------------------------------
    def poll(self) -> None:
        state = supervisor.read_state(self.opt)
        seq = state.get("seq")
        if not seq:
            return
        kind, me = state.get("state"), self.venv
        on_trial = kind == "trial" and state.get("venv") == me
        reported = self._reported()
        if seq != reported:
            # A state started again (update.json lost) has lower numbers: report it all.
            since = reported if isinstance(reported, int) and reported < seq else 0
            recorded = True
            for step in state.get("history", []):
                if isinstance(step, dict) and isinstance(step.get("seq"), int) \
                        and step["seq"] > since:
                    recorded = self._report_step(step) and recorded
            if recorded:   # else (the daemon stopping) the next start reports them again
                self._write("reported.json", {"seq": seq})
        if kind == "trial" and state.get("previous") == me and not self._stop.is_set():
            self._hand_over(state)
        elif on_trial and self._verdict().get("venv") != me:
            self._prove(state)
        elif on_trial and self._verdict().get("ok") is False:   # judged, not yet gone back
            self.restart(supervisor.EXIT_UNHEALTHY, f"selftest failed: "
                                                    f"{self._verdict().get('reason')}")

    def _report_step(self, state: dict[str, Any]) -> bool:
        """One step of update.json's history (whichever version reads it first reports it);
        False if it could not be recorded."""
        kind, version = state.get("state"), state.get("version")
        base = {"version": version, "sha256": state.get("sha256")}
        said = []
        if kind == "trial":
            said += [self.report({"state": "installed", **base}),
                     self.report({"state": "switched", **base})]
        elif kind == "healthy":
            said.append(self.report({"state": "healthy", **base}))
        elif kind == "rolled_back":
            said.append(self.report({"state": "rolled_back", **base,
                                     "reason": state.get("reason", ""),
                                     "running": state.get("running_version")}))
        elif kind == "install_failed":
            said.append(self.report({"state": "install_failed", **base,
                                     "reason": state.get("reason", "")}))
        return all(r is not False for r in said)   # (None: a report that cannot tell)

    def _hand_over(self, state: dict[str, Any]) -> None:
        """The previous version: the baseline, then a restart onto the new one between sessions."""
        if self._read("baseline.json").get("seq") != state["seq"]:
            self._write("baseline.json", {"seq": state["seq"], "venv": self.venv,
                                          "passed": sorted(self._passed_lines()[0])})
            log.info("switched to %s: restarting between sessions", state.get("version"))
        self.restart(supervisor.EXIT_RESTART, f"software update to {state.get('version')}")

    def _prove(self, state: dict[str, Any]) -> None:
        """The version on trial: its health verdict, held to the previous version's lines."""
        passed, failed = self._passed_lines()
        baseline = self._read("baseline.json")
        # Without the previous version's lines (it never got to run them), only the database
        # line holds the release back: a device already failing must not undo a good release.
        required = set(baseline.get("passed", [])) if baseline.get("venv") == state.get(
            "previous") else {"database"}
        broken = sorted(f for f in failed if f in required)
        reason = "; ".join(f"{name}: {failed[name]}" for name in broken)[:400]
        self._write("health.json", {"venv": self.venv, "version": state.get("version"),
                                    "ok": not broken, "reason": reason,
                                    "passed": sorted(passed)})
        if broken:
            log.error("release %s failed its health selftest: %s", state.get("version"), reason)
            self.restart(supervisor.EXIT_UNHEALTHY, f"selftest failed: {reason}")
        else:
            log.info("release %s passed its health selftest", state.get("version"))

    def _passed_lines(self) -> tuple[set[str], dict[str, str]]:
        passed, failed = set(), {}
        for line in self.selftest():
            if line["name"] in NOT_THE_SOFTWARE:
                continue
            if line["ok"]:
                passed.add(line["name"])
            else:
                failed[line["name"]] = line.get("detail", "")
        return passed, failed

    # --- its files --------------------------------------------------------------------------------
    def _verdict(self) -> dict[str, Any]:
        return self._read("health.json")

    def _reported(self) -> Any:
        return self._read("reported.json").get("seq")

    def _read(self, name: str) -> dict[str, Any]:
        try:
            found = json.loads((self.updates / name).read_text())
            return found if isinstance(found, dict) else {}
        except (OSError, ValueError):
            return {}

    def _write(self, name: str, value: dict[str, Any]) -> None:
        self.updates.mkdir(parents=True, exist_ok=True)
        tmp = self.updates / f"{name}.tmp"
        with open(tmp, "w") as f:
            json.dump(value, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.updates / name)
