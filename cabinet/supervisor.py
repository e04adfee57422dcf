"""Which release the cabinet runs, and going back by itself: the update state shared by the
installer (cabinet/installer.py) and the rollback (issue 20; docs/updates.md).

Standard library only, on purpose: systemd runs this file as root from a copy outside every venv
(/usr/local/lib/cabinet/supervisor.py, with the system's python3), so a broken release cannot
break its own rollback:

    ExecStartPre=+  supervisor.py starting    before every start of cabinetd (reconcile, and
                                              count a start of a release on trial)
    ExecStopPost=+  supervisor.py stopped     after every stop, with systemd's SERVICE_RESULT,
                                              EXIT_CODE and EXIT_STATUS in the environment

Under OPT (/opt/cabinet, root's): venvs/NAME/ holds each release's venv (`.complete` once whole),
`venv` is the link systemd runs (replaced in one rename), update.json is the state below. A new
release runs on trial: it must write a good health.json (DATA/updates/, its own selftest beside
the previous version's) before MAX_FAILED_STARTS failed starts; a failed selftest (it exits
EXIT_UNHEALTHY) or too many failed starts (a crash, no READY in time, the watchdog) switch the link
back to the previous release, which is kept until the next release is healthy. The daemon can
write health.json, so it is trusted only to choose between two complete, verified releases.

States: trial (switched, not yet healthy), healthy, rolled_back (reason), install_failed (reason).
Every write bumps `seq`, which the daemon uses to report each step once.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import stat
import sys
import time
from pathlib import Path

STATE_FILE = "update.json"
MAX_FAILED_STARTS = 3
# Starts of a release on trial without a verdict, counted before each start: a release that
# resets the board (the stop hook never runs) is rolled back at the start after this many.
MAX_TRIAL_STARTS = 5
HISTORY = 12   # the steps kept in update.json for the daemon to report (cabinet/update_watch.py)
STEP_KEYS = ("state", "version", "sha256", "venv", "previous", "reason", "running_version")
EXIT_RESTART = 75    # the daemon restarting itself (cabinet/commands.EXIT_RESTART): not a failure
EXIT_UNHEALTHY = 76  # a release on trial whose selftest failed (cabinet/update_watch.py)
EXIT_BAD_CONFIG = 2  # cabinetd's "fix the config": systemd does not restart it


@contextlib.contextmanager
def locked(opt: Path):
    """One writer of the state at a time: the installer and systemd's hooks may overlap."""
    with open(opt / "update.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


@contextlib.contextmanager
def installing(opt: Path):
    """Held by the installer for its whole run (a build takes minutes): a second installer waits,
    and reconcile leaves the venv being built alone. The state lock is taken only around writes,
    so systemd's hooks never wait for a build."""
    with open(opt / "install.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def install_running(opt: Path) -> bool:
    try:
        with open(opt / "install.lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False


def read_state(opt: Path) -> dict:
    try:
        state = json.loads((opt / STATE_FILE).read_text())
        return state if isinstance(state, dict) else {}
    except (OSError, ValueError):
        return {}


def write_state(opt: Path, state: dict) -> dict:
    """Replace update.json in one rename, synced, with `seq` one more than before; a new state
    (or release) is also appended to `history`, so that none goes unreported."""
    old = read_state(opt)
    seq = int(old.get("seq", 0)) + 1
    history = [h for h in old.get("history", []) if isinstance(h, dict)]
    key = ("state", "sha256", "attempt")
    if [old.get(k) for k in key] != [state.get(k) for k in key]:
        history.append({"seq": seq, **{k: state[k] for k in STEP_KEYS
                                       if state.get(k) is not None}})
    state = {**{k: v for k, v in state.items() if k != "history"}, "seq": seq,
             "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
             "history": history[-HISTORY:]}
    tmp = opt / (STATE_FILE + ".tmp")
    with open(tmp, "w") as f:
        json.dump(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o644)   # the daemon reads it to report each step
    os.replace(tmp, opt / STATE_FILE)
    _sync_folder(opt)
    return state


def running_venv(opt: Path) -> str | None:
    """The name of the venv the `venv` link points at, or None."""
    try:
        return Path(os.readlink(opt / "venv")).name
    except OSError:
        return None


def is_complete(opt: Path, name: str | None) -> bool:
    return bool(name) and (opt / "venvs" / str(name) / ".complete").is_file() \
        and (opt / "venvs" / str(name) / "bin" / "cabinetd").exists()


def switch(opt: Path, name: str) -> None:
    """Point `venv` at venvs/NAME in one rename (a power cut leaves the old link or the new)."""
    tmp = opt / "venv.new"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(Path("venvs") / name)
    os.replace(tmp, opt / "venv")
    _sync_folder(opt)


def kill_point(name: str) -> None:
    """tools/chaos.py's power cut: SIGKILL here when CABINET_UPDATE_KILL_AT names this step."""
    if os.environ.get("CABINET_UPDATE_KILL_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


def read_json(path: Path, limit: int = 65536) -> dict:
    """A small JSON file the daemon wrote, read as root: a regular file only (a FIFO or a device
    put there would hang or flood the reader), at most `limit` bytes, a dict or nothing."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return {}
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return {}
        found = json.loads(os.read(fd, limit + 1)[:limit + 1])
        return found if isinstance(found, dict) else {}
    except (OSError, ValueError):
        return {}
    finally:
        os.close(fd)


def health(data: Path) -> dict:
    return read_json(data / "updates" / "health.json")


def rollback(opt: Path, state: dict, reason: str) -> dict:
    """Back to the previous release (it is complete: it ran before the switch)."""
    previous = state.get("previous")
    if not is_complete(opt, previous):
        # Nothing to go back to: stay on trial rather than point at nothing.
        return write_state(opt, {**state, "reason": f"{reason}; no previous release to go back to"})
    new = write_state(opt, {"state": "rolled_back", "version": state.get("version"),
                            "venv": previous, "previous": None,
                            "failed_venv": state.get("venv"),
                            "running_version": state.get("previous_version"),
                            "sha256": state.get("sha256"), "attempt": state.get("attempt"),
                            "reason": reason[:500]})
    kill_point("rolling_back")
    switch(opt, previous)
    # A release sent while this one was on trial waits in ready.json: have the installer look.
    _systemctl("start", "cabinet-update.service")
    return new


def stopped(opt: Path, data: Path, env: dict) -> str:
    """After cabinetd stopped: count a failed start of a release on trial, roll back when it
    failed its selftest or failed MAX_FAILED_STARTS times."""
    state = read_state(opt)
    if state.get("state") != "trial" or running_venv(opt) != state.get("venv"):
        return "no release on trial"
    if not state.get("starts"):
        return "the previous release stopped (the one on trial has not started yet)"
    result, code, status = (env.get("SERVICE_RESULT", ""), env.get("EXIT_CODE", ""),
                            env.get("EXIT_STATUS", ""))
    if status == str(EXIT_UNHEALTHY):
        verdict = health(data)
        why = verdict.get("reason") if verdict.get("venv") == state.get("venv") else None
        rollback(opt, state, f"selftest failed: {why or 'no reason given'}")
        return "rolled back: its selftest failed"
    if result == "success" or (result == "exit-code" and status == str(EXIT_RESTART)):
        return "stopped cleanly"
    if code == "exited" and status == str(EXIT_BAD_CONFIG):
        # systemd will not restart it (RestartPreventExitStatus=2): go back now, and start it.
        rollback(opt, state, "it refused the config (exit status 2)")
        _systemctl("start", "cabinetd.service")
        return "rolled back: exit status 2"
    failures = [*state.get("failures", []), _describe(result, code, status)]
    if len(failures) >= MAX_FAILED_STARTS:
        rollback(opt, state, f"it failed {len(failures)} starts: " + "; ".join(failures))
        return "rolled back: failed starts"
    write_state(opt, {**state, "failures": failures})
    return f"failed start {len(failures)} of {MAX_FAILED_STARTS}"


def under_systemd() -> bool:
    """Whether systemd runs this process (a hook or a service), with systemctl at hand."""
    return bool(os.environ.get("INVOCATION_ID")) and shutil.which("systemctl") is not None


def _systemctl(verb: str, unit: str) -> None:
    """`systemctl --no-block VERB UNIT`, only where systemd runs this."""
    if under_systemd():
        import subprocess
        subprocess.run(["systemctl", "--no-block", verb, unit], capture_output=True, timeout=30)


def _run_by(unit: str) -> bool:
    """Whether this process runs in `unit`'s cgroup (a hook of that unit)."""
    try:
        return any(line.rstrip().endswith("/" + unit)
                   for line in Path("/proc/self/cgroup").read_text().splitlines())
    except OSError:
        return False


def reconcile(opt: Path, data: Path, *, installer: bool = False) -> str:
    """Before a start, and before the installer looks: the link names a complete venv; a switch
    a power cut interrupted is finished; a trial the release's health.json says is good becomes
    healthy (and the releases older than the previous one are removed); a build cut short is
    removed (unless an installer is building: `installer` says the caller is the one)."""
    said = []
    building = not installer and install_running(opt)
    state = read_state(opt)
    current = running_venv(opt)
    if state.get("state") == "trial" and current == state.get("previous") \
            and is_complete(opt, state.get("venv")):
        switch(opt, state["venv"])      # the state was written, the rename was not
        current = state["venv"]
        said.append(f"finished the switch to {current}")
    if state.get("state") == "rolled_back" and current == state.get("failed_venv") \
            and is_complete(opt, state.get("venv")):
        switch(opt, state["venv"])      # the rollback was written, its rename was not
        current = state["venv"]
        said.append(f"finished the rollback to {current}")
    if not is_complete(opt, current):
        fallback = next((name for name in (state.get("previous"), state.get("venv"))
                         if is_complete(opt, name)), None) or _newest_complete(opt)
        if fallback is not None:
            switch(opt, fallback)
            said.append(f"{current} is not a complete release: switched to {fallback}")
            current = fallback
    if state.get("state") == "trial" and current == state.get("venv"):
        verdict = health(data)
        if verdict.get("venv") == current and verdict.get("ok") is True:
            state = write_state(opt, {**state, "state": "healthy", "failures": []})
            said.append(f"{current} is healthy")
        elif verdict.get("venv") == current and verdict.get("ok") is False:
            # Its selftest failed but it stopped some other way before exiting 76.
            state = rollback(opt, state, f"selftest failed: {verdict.get('reason') or '?'}")
            current = running_venv(opt)
            said.append(f"rolled back to {current}: its selftest had failed")
    keep = {current, state.get("previous") if state.get("state") in ("trial", "healthy") else None}
    if state.get("state") in ("rolled_back", "install_failed"):
        keep.add(state.get("previous"))
    for folder in sorted((opt / "venvs").glob("*")) if (opt / "venvs").is_dir() else []:
        if folder.name in keep:
            continue
        if building and not (folder / ".complete").exists():
            continue
        if not (folder / ".complete").exists() or state.get("state") == "healthy" \
                or folder.name == state.get("failed_venv"):
            shutil.rmtree(folder, ignore_errors=True)
            said.append(f"removed {folder.name}")
    return "; ".join(said) or "nothing to do"


def starting(opt: Path, data: Path) -> str:
    """Before each start of cabinetd: reconcile, then count a start of a release on trial."""
    said = reconcile(opt, data)
    state = read_state(opt)
    if state.get("state") != "trial" or running_venv(opt) != state.get("venv"):
        return said
    starts = int(state.get("starts", 0)) + 1
    if starts > MAX_TRIAL_STARTS:
        rollback(opt, state, f"started {starts - 1} times without a verdict (resets?)")
        return f"{said}; rolled back: too many starts on trial"
    write_state(opt, {**state, "starts": starts})
    return f"{said}; start {starts} of the release on trial"


def _newest_complete(opt: Path) -> str | None:
    found = [p for p in (opt / "venvs").glob("*") if is_complete(opt, p.name)] \
        if (opt / "venvs").is_dir() else []
    return max(found, key=lambda p: p.stat().st_mtime).name if found else None


def _describe(result: str, code: str, status: str) -> str:
    if result == "timeout":
        return "no READY in time"
    if result == "watchdog":
        return "stopped answering the watchdog"
    if code == "exited":
        return f"exit status {status}"
    return f"{code or result or 'failed'} {status}".strip()


def _sync_folder(folder: Path) -> None:
    # (voice_pack.py has the same five lines: this file imports nothing of the package.)
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("action", choices=("starting", "stopped", "reconcile", "status"))
    p.add_argument("--opt", type=Path, default=Path("/opt/cabinet"))
    p.add_argument("--data", type=Path, default=Path("/var/lib/cabinet"))
    args = p.parse_args(argv)
    if args.action == "status":
        print(json.dumps({**read_state(args.opt), "running": running_venv(args.opt)}, indent=1))
        return 0
    if args.action == "reconcile" and _run_by("cabinetd.service"):
        # A card flashed before `starting` existed runs `reconcile` before each start: count it.
        args.action = "starting"
    if not (args.opt / "venvs").is_dir():
        return 0   # a cabinet installed by hand (one venv, no releases): nothing to supervise
    try:
        with locked(args.opt):
            said = {"stopped": lambda: stopped(args.opt, args.data, dict(os.environ)),
                    "starting": lambda: starting(args.opt, args.data),
                    "reconcile": lambda: reconcile(args.opt, args.data)}[args.action]()
    except OSError as exc:
        # Never keep cabinetd from starting: the link still names what ran last.
        print(f"cabinet supervisor: {args.action}: {exc}", file=sys.stderr)
        return 0
    print(f"cabinet supervisor: {args.action}: {said}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
