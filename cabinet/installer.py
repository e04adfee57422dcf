"""The installer (issue 20; docs/updates.md): a release the daemon verified and spooled becomes
the running one. Run as root by cabinet-update.service when DATA/updates/ready.json or
health.json changes (`python -m cabinet.installer run`), never by the daemon itself, which must
not be able to change the software that runs it.

`install_ready` verifies the spooled bundle again with the config's release key (the daemon is not
trusted), builds the release's venv in OPT/venvs/, has it check itself, marks it complete, writes
the trial state and switches the link (cabinet/supervisor.py: the state, the switch and the
rollback). The daemon notices the switch and restarts between sessions; the new version then
proves itself healthy or is rolled back.

A new venv is made next to the running one with the same base Python, its site-packages filled
with hard links of the running venv's (seconds, and no extra space until a file changes), and then
`pip install --no-index --find-links WHEELS cabinet-controller[face]==VERSION`: what the release
changed is installed from its own verified wheels, what it did not is already satisfied. Nothing
is fetched from anywhere. The new version then checks itself before anything switches to it: its
`cabinetd --check-config` with the cabinet's config, and its store opened on a copy of the
database (migrations run on the copy, never on the real one).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

from . import supervisor

PIP_SECONDS = 900
CHECK_SECONDS = 120
FREE_FLOOR_BYTES = 600 * 1024 * 1024   # pip's writes, and the 256 MiB kept for the sales
VERSION = re.compile(r"[0-9A-Za-z][0-9A-Za-z.+_]{0,39}")   # a release's version, as a name


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
    # As the running venv was made: the SD image's sees Debian's python3-lgpio (no PyPI wheel).
    system = "include-system-site-packages = true" in _read(running / "pyvenv.cfg")
    _run([base_python, "-m", "venv", "--without-pip", str(target),
          *(["--system-site-packages"] if system else [])], "creating the venv", 120)
    supervisor.kill_point("building")
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


def self_check(venv: Path, config: Path, database: Path | None, scratch: Path, *,
               running: Path | None = None) -> str:
    """The new version's own checks, before any switch: the config read by its code, and the
    store migrated on a copy of the database, which the `running` venv's version must then still
    open (so that a rollback finds a database it can read). Each runs as the database's owner,
    never as root: the release is not trusted yet, and a root-owned file beside the database
    would lock the daemon out of it. Returns the version the new venv reports."""
    scratch.mkdir(parents=True, exist_ok=True)
    owner = _owner(database.parent if database is not None else scratch)
    os.chown(scratch, *owner)
    run = lambda command, what: _run(command, what, CHECK_SECONDS, owner)  # noqa: E731
    reported = run([str(venv / "bin" / "cabinetd"), "--version"], "asking its version").split()[-1]
    run([str(venv / "bin" / "cabinetd"), "--check-config", "--config", str(config)],
        "checking the config with the new version")
    if database is not None and database.exists():
        copy = scratch / "cabinet.db"
        run([str(venv / "bin" / "python"), "-c", _COPY_AND_OPEN, str(database), str(copy)],
            "opening (migrating) a copy of the database")
        if running is not None:
            run([str(running / "bin" / "python"), "-c", _OPEN, str(copy)],
                "opening the migrated copy with the running version (a rollback must read it)")
    return reported


# A consistent copy (sqlite's backup, even while the daemon writes), then the store opened on it.
_OPEN = ("import sys; from cabinet.store import Store; "
         "s = Store(sys.argv[1], cabinet_id='check', software_version='check'); "
         "s.add_record('update', {'state': 'check'}); s.close()")
_COPY_AND_OPEN = ("import sqlite3, sys; from cabinet.store import Store\n"
                  "with sqlite3.connect(sys.argv[1]) as s, sqlite3.connect(sys.argv[2]) as t:\n"
                  "    s.backup(t)\n"
                  "Store(sys.argv[2], cabinet_id='check', software_version='check').close()")


def install_ready(opt: Path, data: Path, config: Path, key: str) -> str:
    """Install the release DATA/updates/ready.json names, if it is new: verified again, built,
    checked, switched to on trial. Call with supervisor.installing(opt) held (the state lock is
    taken here, for the writes only). Returns what it did."""
    from .release import ReleaseRefused, public_key, verify

    state = supervisor.read_state(opt)
    if state.get("state") == "trial":
        return f"{state.get('version')} is on trial: the next release waits"
    ready = _ready(data)
    if ready is None:
        return "no release waiting"
    sha256, version, attempt = ready["sha256"], ready["version"], ready["attempt"]
    if (sha256, attempt) == (state.get("sha256"), state.get("attempt")):
        # (The same release sent again is another attempt: a retry after a passing fault.)
        return f"release {version} ({sha256[:12]}) was handled already: {state.get('state')}"
    current = supervisor.running_venv(opt)
    name = f"{version}-{sha256[:12]}"
    if name == current:
        return f"release {version} ({sha256[:12]}) is the one running"
    staging, target = opt / "staging", opt / "venvs" / name
    shutil.rmtree(staging, ignore_errors=True)
    try:
        if not key:
            raise InstallFailed("no release key configured (updates.public_key)")
        # A copy of our own: the daemon could change the spooled file between checks.
        bundle, copied_sha256 = _copy_in(ready["bundle"], staging / "release.bundle")
        if copied_sha256 != sha256:
            raise InstallFailed("the spooled bundle is not the one the daemon verified")
        try:
            manifest = verify(bundle, public_key(key), staging / "unpacked")
        except ReleaseRefused as refusal:
            raise InstallFailed(f"refused: {refusal}") from None
        if manifest["version"] != version:
            raise InstallFailed(f"the bundle is {manifest['version']}, ready.json said {version}")
        if not supervisor.is_complete(opt, current):
            raise InstallFailed(f"the running release {current} is not complete")
        if not supervisor.is_complete(opt, name):   # else kept: the previous release sent again
            shutil.rmtree(target, ignore_errors=True)   # a build a power cut left behind
            free = shutil.disk_usage(opt).free
            if free < FREE_FLOOR_BYTES:
                raise InstallFailed(f"{free >> 20} MiB free on {opt}: a release's venv needs "
                                    f"{FREE_FLOOR_BYTES >> 20} MiB (remove old files)")
            build_venv(staging / "unpacked" / "wheels", version, target,
                       running=opt / "venvs" / current)
            supervisor.kill_point("built")
        self_check(target, config, data / "cabinet.db", staging / "check",
                   running=opt / "venvs" / current)
        os.sync()   # every file of the venv is on the card before it is called complete
        (target / ".complete").write_text(name + "\n")
        supervisor.kill_point("complete")
    except (InstallFailed, OSError) as exc:
        if target.name != state.get("previous"):   # never the release kept to go back to
            shutil.rmtree(target, ignore_errors=True)
        with supervisor.locked(opt):
            supervisor.write_state(opt, {"state": "install_failed", "version": version,
                                         "sha256": sha256, "attempt": attempt, "venv": current,
                                         "previous": state.get("previous"),
                                         "reason": str(exc)[:500]})
        return f"release {version} not installed: {exc}"
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _while_cabinetd_starts()
    with supervisor.locked(opt):
        if supervisor.running_venv(opt) != current:
            return f"release {version} built, but {current} no longer runs: not switched"
        (data / "updates" / "health.json").unlink(missing_ok=True)   # a verdict on another trial
        supervisor.write_state(opt, {"state": "trial", "version": version, "venv": name,
                                     "sha256": sha256, "attempt": attempt, "previous": current,
                                     "previous_version": _version_of(opt / "venvs" / current),
                                     "failures": []})
        supervisor.kill_point("state_written")
        supervisor.switch(opt, name)
        supervisor.kill_point("switched")
    return f"release {version} installed and switched to, on trial"


def _while_cabinetd_starts(limit: float = 90.0) -> None:
    """Not while systemd is starting cabinetd (under systemd only): its ExecStartPre counted the
    start of the release that ran before the switch, so the new one would run uncounted."""
    import time

    if not supervisor.under_systemd():
        return
    end = time.monotonic() + limit
    while time.monotonic() < end and subprocess.run(
            ["systemctl", "show", "-p", "ActiveState", "--value", "cabinetd.service"],
            capture_output=True, text=True, timeout=30).stdout.strip() == "activating":
        time.sleep(1)


def _ready(data: Path) -> dict | None:
    """ready.json (the daemon writes it: checked, and its bundle must be in the spool)."""
    spool = (data / "updates" / "ready").resolve()
    ready = supervisor.read_json(data / "updates" / "ready.json")
    try:
        sha256, version = str(ready["sha256"]), str(ready["version"])
        attempt = str(ready.get("attempt", ""))
        bundle = (Path(ready["path"]) / "release.bundle").resolve()
    except (OSError, ValueError, KeyError, TypeError):
        return None
    # The venv's name is made of these: nothing that could leave OPT/venvs/.
    if not re.fullmatch(r"[0-9a-f]{64}", sha256) or not VERSION.fullmatch(version) \
            or not re.fullmatch(r"[0-9a-f]{0,32}", attempt) \
            or spool not in bundle.parents or not bundle.is_file():
        return None
    return {"sha256": sha256, "version": version, "attempt": attempt, "bundle": bundle}


def _copy_in(source: Path, target: Path) -> tuple[Path, str]:
    """The spooled bundle copied into the installer's own staging (a regular file, at most the
    largest bundle, never followed through a link), hashed as it is copied."""
    from .release import MAX_BUNDLE_BYTES

    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        raise InstallFailed(f"the spooled bundle cannot be opened: {exc}") from None
    with open(fd, "rb") as src, open(target, "wb") as out:
        if not stat.S_ISREG(os.fstat(src.fileno()).st_mode):
            raise InstallFailed("the spooled bundle is not a regular file")
        left, digest = MAX_BUNDLE_BYTES + 1, hashlib.sha256()
        while chunk := src.read(min(1 << 20, left)):
            digest.update(chunk)
            out.write(chunk)
            left -= len(chunk)
            if left <= 0:
                raise InstallFailed("the spooled bundle is larger than any release")
    return target, digest.hexdigest()


def _refresh_hook(opt: Path, hooks: Path) -> None:
    """systemd's copy of supervisor.py, from the release that has proven healthy (never from one
    on trial: the rollback must not depend on the release it may have to undo)."""
    source = _site_packages(opt / "venvs" / str(supervisor.running_venv(opt))) / "cabinet" \
        / "supervisor.py"
    target = hooks / "supervisor.py"
    if not source.is_file() or (target.is_file() and target.read_bytes() == source.read_bytes()):
        return
    hooks.mkdir(parents=True, exist_ok=True)
    tmp = hooks / "supervisor.py.new"
    shutil.copyfile(source, tmp)
    os.chmod(tmp, 0o755)
    os.replace(tmp, target)
    print(f"cabinet installer: {target} refreshed from the healthy release")


def _read(path: Path) -> str:
    try:
        return path.read_text().lower()
    except OSError:
        return ""


def _version_of(venv: Path) -> str | None:
    found = sorted(_site_packages(venv).glob("cabinet_controller-*.dist-info"))
    return found[-1].name.split("-")[1].removesuffix(".dist-info") if found else None


def _owner(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_uid, st.st_gid


def _site_packages(venv: Path) -> Path:
    found = sorted(venv.glob("lib/python3*/site-packages"))
    if len(found) != 1:
        raise InstallFailed(f"{venv}: no single lib/python3.*/site-packages")
    return found[0]


def _run(command: list[str], what: str, timeout: float,
         owner: tuple[int, int] | None = None) -> str:
    as_owner = {} if owner is None or owner == (os.getuid(), os.getgid()) else \
        {"user": owner[0], "group": owner[1], "extra_groups": []}
    try:
        # From "/": `python -c` puts the working folder first on sys.path, and a checkout there
        # would be imported instead of the release.
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                                cwd="/", **as_owner)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InstallFailed(f"{what}: {exc}") from None
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise InstallFailed(f"{what} failed: {' / '.join(tail) or f'exit {result.returncode}'}")
    return result.stdout.strip()


def main(argv: list[str] | None = None) -> int:
    """`python -m cabinet.installer run`: what cabinet-update.service runs, as root."""
    import argparse

    from .config import ConfigError, load

    p = argparse.ArgumentParser(description="Install a spooled, verified release (as root).")
    p.add_argument("action", choices=("run",))
    p.add_argument("--config", type=Path, default=Path("/etc/cabinet/cabinet.toml"))
    p.add_argument("--opt", type=Path, default=Path("/opt/cabinet"))
    p.add_argument("--hooks", type=Path, default=None,
                   help="where systemd runs supervisor.py from: refreshed from a healthy release")
    args = p.parse_args(argv)
    try:
        config = load(args.config)
    except ConfigError as exc:
        print(f"cabinet installer: {exc}", file=sys.stderr)
        return 2
    data = Path(config.cabinet.data_dir)
    with supervisor.installing(args.opt):
        # A .path unit does not see a change made while its service runs: go again until
        # neither file changed during a run.
        for _ in range(5):
            before = _stamps(data)
            with supervisor.locked(args.opt):
                print(f"cabinet installer: "
                      f"{supervisor.reconcile(args.opt, data, installer=True)}")
                if args.hooks is not None and \
                        supervisor.read_state(args.opt).get("state") == "healthy":
                    _refresh_hook(args.opt, args.hooks)
            print(f"cabinet installer: "
                  f"{install_ready(args.opt, data, args.config, config.updates.public_key)}")
            if _stamps(data) == before:
                break
    return 0


def _stamps(data: Path) -> list:
    out = []
    for name in ("ready.json", "health.json"):
        try:
            st = os.stat(data / "updates" / name)
            out.append((st.st_mtime_ns, st.st_ino))
        except OSError:
            out.append(None)
    return out


if __name__ == "__main__":
    sys.exit(main())
