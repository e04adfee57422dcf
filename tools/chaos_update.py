"""Chaos test for software updates: the power cut at every step of an install and a rollback.

The companion of tools/chaos.py (which cuts the power under sessions). For each step of
cabinet/installer.py and cabinet/supervisor.py where a cut could leave something half done, a
cabinet with release A installed (as first boot leaves it) is given release B, and the installer
(or the rollback) is SIGKILLed right there (CABINET_UPDATE_KILL_AT, cabinet/supervisor.kill_point).
Then the power comes back as systemd brings it back: cabinetd's ExecStartPre (`supervisor.py
reconcile`) and cabinetd itself from the `venv` link. It checks that

- the link names a complete release, and cabinetd starts from it and says READY;
- after the installer runs again (the path unit would), the update ends where it should: B on
  trial (or A again, for a cut during the rollback), with no half-built venv or staging left.

SIGKILL stops the writer at the step as a power cut would; what a cut also loses, writes still in
the page cache, the code answers with fsync before each step that depends on them.

    .venv/bin/python tools/chaos_update.py [--work DIR]     # builds its two releases
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from cabinet import supervisor  # noqa: E402
from cabinet.installer import build_venv  # noqa: E402
from cabinet.release import public_key, verify  # noqa: E402
from cabinet.update import Updates  # noqa: E402
from tools.daemon_process import CabinetProcess  # noqa: E402

INSTALL_STEPS = ("building", "built", "complete", "state_written", "switched")
ROLLBACK_STEPS = ("rolling_back",)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def version_of(bundle: Path) -> str:
    with tarfile.open(bundle) as tar:
        return json.load(tar.extractfile("release.json"))["version"]


class Cabinet:
    """OPT with release A as first boot leaves it, DATA, a config naming both."""

    def __init__(self, work: Path, key: str, first: Path):
        self.opt, self.data, self.config = work / "opt", work / "data", work / "cabinet.toml"
        self.data.mkdir(parents=True)
        version = verify(first, public_key(key), work / "unpacked")["version"]
        name = f"{version}-{sha256(first)[:12]}"
        venv = build_venv(work / "unpacked" / "wheels", version, self.opt / "venvs" / name,
                          running=Path(sys.prefix))
        (venv / ".complete").write_text(name)
        supervisor.switch(self.opt, name)
        self.first = name
        self.config.write_text(
            f"[cabinet]\ndata_dir = '{self.data}'\n"
            f"[checkout]\nplanogram_file = '{ROOT / 'config' / 'planogram.toml'}'\n"
            f"[updates]\npublic_key = '{key}'\ninstall_dir = '{self.opt}'\n")
        self.key = key

    def spool(self, bundle: Path) -> None:
        """As the daemon does with a bundle it fetched (cabinet/update.py)."""
        Updates(self.data / "updates", self.key).check(bundle, sha256(bundle))

    def installer(self, kill_at: str | None = None) -> int:
        env = {**os.environ, "CABINET_UPDATE_KILL_AT": kill_at or ""}
        return subprocess.run([str(self.opt / "venv" / "bin" / "python"), "-m",
                               "cabinet.installer", "run", "--config", str(self.config),
                               "--opt", str(self.opt)], env=env, cwd="/",
                              capture_output=True, text=True, timeout=600).returncode

    def hook(self, action: str, env: dict | None = None, kill_at: str | None = None) -> int:
        """supervisor.py as cabinetd's unit runs it (the checkout's copy, the system Python)."""
        full = {**os.environ, **(env or {}), "CABINET_UPDATE_KILL_AT": kill_at or ""}
        return subprocess.run([getattr(sys, "_base_executable", sys.executable),
                               str(ROOT / "cabinet" / "supervisor.py"), action, "--opt",
                               str(self.opt), "--data", str(self.data)], env=full,
                              capture_output=True, text=True, timeout=120).returncode

    def power_on(self) -> str:
        """ExecStartPre, then cabinetd from the link until READY; returns its version."""
        self.hook("starting")
        current = supervisor.running_venv(self.opt)
        if not supervisor.is_complete(self.opt, current):
            raise AssertionError(f"the link names {current}, not a complete release")
        daemon = CabinetProcess("--config", str(self.config), data_dir=self.data,
                                program=[str(self.opt / "venv" / "bin" / "cabinetd")],
                                cwd=self.data)
        try:
            daemon.wait_ready(60)
            version = daemon.state()["software_version"]
        finally:
            daemon.terminate()
        return version


def cut(work: Path, key: str, first: Path, second: Path, step: str) -> list[str]:
    """One cabinet, one cut at `step`; the problems found (none: empty)."""
    problems = []
    cabinet = Cabinet(work, key, first)
    cabinet.spool(second)
    new_version = version_of(second)
    if step in INSTALL_STEPS:
        status = cabinet.installer(kill_at=step)
        if status != -9:
            problems.append(f"{step}: the installer was not cut there (exit {status})")
    else:
        if cabinet.installer() != 0:
            return [f"{step}: the installer failed before the cut"]
        cabinet.hook("starting")   # the release on trial started, then failed its selftest
        cabinet.hook("stopped", {"SERVICE_RESULT": "exit-code", "EXIT_CODE": "exited",
                                 "EXIT_STATUS": str(supervisor.EXIT_UNHEALTHY)}, kill_at=step)
    try:
        running = cabinet.power_on()
    except Exception as exc:   # noqa: BLE001 - the finding is the report
        return problems + [f"{step}: no cabinet after the cut: {exc}"]
    cabinet.installer()
    state = supervisor.read_state(cabinet.opt)
    current = supervisor.running_venv(cabinet.opt)
    if step in INSTALL_STEPS:
        if state.get("state") != "trial" or not current.startswith(new_version + "-"):
            problems.append(f"{step}: after the installer ran again: {state.get('state')} on "
                            f"{current}, not {new_version} on trial")
    elif state.get("state") != "rolled_back" or current != cabinet.first:
        problems.append(f"{step}: after the cut in the rollback: {state.get('state')} on "
                        f"{current}, not rolled back to {cabinet.first}")
    if cabinet.power_on() not in (running, new_version) and step in INSTALL_STEPS:
        problems.append(f"{step}: started on an unexpected version")
    leftovers = [p.name for p in (cabinet.opt / "venvs").iterdir()
                 if not (p / ".complete").exists()]
    if leftovers or (cabinet.opt / "staging").exists():
        problems.append(f"{step}: left behind: {leftovers or 'staging'}")
    return problems


def main(argv: list[str] | None = None) -> int:
    from tools import release

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", type=Path, help="a folder to work in (default: a temporary one)")
    p.add_argument("--steps", nargs="*", default=[*INSTALL_STEPS, *ROLLBACK_STEPS])
    args = p.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="chaos-update-"))
    key = release.keygen(work / "key")
    bundles = []
    for version in ("0.90.0", "0.91.0"):
        bundles.append(work / f"cabinet-{version}")
        release.build(work / "key" / "release-signing-key", bundles[-1], [], version)
    problems = []
    for step in args.steps:
        found = cut(work / step, key, *bundles, step)
        print(f"power cut at {step:<14} {'ok' if not found else '; '.join(found)}", flush=True)
        problems += found
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{len(args.steps)} cuts, {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
