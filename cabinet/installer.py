"""Building a release's venv offline, fast: the installer's first part (issue 20; not yet run by
anything but its tests: docs/updates.md says what will run it, as root, and switch to it).

A new venv is made next to the running one with the same base Python, its site-packages filled
with hard links of the running venv's (seconds, and no extra space until a file changes), and then
`pip install --no-index --find-links WHEELS cabinet-controller[face]==VERSION`: what the release
changed is installed from its own verified wheels, what it did not is already satisfied. Nothing
is fetched from anywhere. The new version then checks itself before anything switches to it: its
`cabinetd --check-config` with the cabinet's config, and its store opened on a copy of the
database (migrations run on the copy, never on the real one).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

PIP_SECONDS = 900
CHECK_SECONDS = 120


class InstallFailed(Exception):
    """The release could not be installed or failed its own checks; the message says where."""


def build_venv(wheels: Path, version: str, target: Path, *, running: Path | None = None,
               base_python: str | None = None) -> Path:
    """A venv at `target` with release `version` installed from `wheels` and nothing fetched;
    `running`: the venv whose packages are hard-linked in (this one by default)."""
    running = Path(running or sys.prefix)
    base_python = base_python or getattr(sys, "_base_executable", sys.executable)
    if target.exists():
        raise InstallFailed(f"{target} exists already")
    _run([base_python, "-m", "venv", "--without-pip", str(target)], "creating the venv", 120)
    try:
        source = _site_packages(running)
        destination = _site_packages(target)
        shutil.rmtree(destination)
        # Hard links: a file pip later replaces in the new venv is unlinked there only.
        shutil.copytree(source, destination, copy_function=os.link, symlinks=True)
        _run([str(target / "bin" / "python"), "-m", "pip", "install", "--quiet",
              "--disable-pip-version-check", "--no-index", "--find-links", str(wheels),
              f"cabinet-controller[face]=={version}"],
             f"installing {version} from the release's wheels", PIP_SECONDS)
        return target
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise


def self_check(venv: Path, config: Path, database: Path | None, scratch: Path) -> str:
    """The new version's own checks, before any switch: the config read by its code, and the
    store migrated on a copy of the database. Returns the version it reports."""
    reported = _run([str(venv / "bin" / "cabinetd"), "--version"], "asking its version",
                    CHECK_SECONDS).split()[-1]
    _run([str(venv / "bin" / "cabinetd"), "--check-config", "--config", str(config)],
         "checking the config with the new version", CHECK_SECONDS)
    if database is not None and database.exists():
        scratch.mkdir(parents=True, exist_ok=True)
        copy = scratch / "cabinet.db"
        with sqlite3.connect(database) as source, sqlite3.connect(copy) as target:
            source.backup(target)   # a consistent copy, even while the daemon writes
        _run([str(venv / "bin" / "python"), "-c",
              "import sys; from cabinet.store import Store; "
              "Store(sys.argv[1], cabinet_id='check', software_version='check').close()",
              str(copy)], "opening (migrating) a copy of the database", CHECK_SECONDS)
    return reported


def _site_packages(venv: Path) -> Path:
    found = sorted(venv.glob("lib/python3*/site-packages"))
    if len(found) != 1:
        raise InstallFailed(f"{venv}: no single lib/python3.*/site-packages")
    return found[0]


def _run(command: list[str], what: str, timeout: float) -> str:
    try:
        # From "/": `python -c` puts the working folder first on sys.path, and a checkout there
        # would be imported instead of the release.
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                                cwd="/")
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InstallFailed(f"{what}: {exc}") from None
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise InstallFailed(f"{what} failed: {' / '.join(tail) or f'exit {result.returncode}'}")
    return result.stdout.strip()
