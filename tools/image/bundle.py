"""The wheels an image carries so that first boot can build the daemon's venv offline.

For each target (a Python and a machine, e.g. `cp311-aarch64` for Raspberry Pi OS bookworm,
`cp313-aarch64` for trixie) the daemon's wheel and every dependency of `cabinet-controller[face]`
are downloaded as wheels for that platform (`pip download --only-binary=:all: --platform …`), then
the set is proven complete by resolving the install offline against it (`pip install --dry-run
--no-index`). `bundle.json` names the targets that passed: first boot installs with `--no-index`
only for those, and asks the package index for anything else.

lgpio (the Pi's GPIO library) has PyPI wheels for CPython 3.11 and 3.12 on aarch64 only; on 3.13
it comes from Raspberry Pi OS's own apt (python3-lgpio, installed by first boot), since neither
PyPI nor Debian has it.
"""

from __future__ import annotations

import email.parser
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

# target -> (python version, newest glibc of the OS it is for: bookworm 2.36, trixie 2.41)
TARGETS = {"cp311-aarch64": ("3.11", 36), "cp313-aarch64": ("3.13", 41),
           "cp311-x86_64": ("3.11", 36), "cp313-x86_64": ("3.13", 41)}
DEFAULT_TARGETS = ("cp311-aarch64", "cp313-aarch64")
REQUIREMENT = "cabinet-controller[face]"


class BundleError(Exception):
    pass


def _tag_args(target: str) -> list[str]:
    if target not in TARGETS:
        raise BundleError(f"unknown bundle target {target!r}: one of {', '.join(TARGETS)}")
    version, glibc = TARGETS[target]
    machine = target.split("-", 1)[1]
    abi = "cp" + version.replace(".", "")
    platforms = [f"manylinux_2_{minor}_{machine}" for minor in range(17, glibc + 1)]
    platforms += [f"manylinux2014_{machine}", f"linux_{machine}"]
    return (["--only-binary=:all:", "--python-version", version, "--implementation", "cp",
             "--abi", abi, "--abi", "abi3", "--abi", "none"]
            + [arg for p in platforms for arg in ("--platform", p)])


def _pip(args: list[str], what: str) -> None:
    result = subprocess.run([sys.executable, "-m", "pip", *args, "--disable-pip-version-check"],
                            capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        lines = [l for l in (result.stderr or result.stdout).splitlines() if "ERROR" in l]
        raise BundleError(f"{what}: {' / '.join(lines[-3:]) or result.stderr.strip()[-300:]}")


def target_only_requirements(project_wheel: Path, target: str) -> list[str]:
    """The daemon's dependencies whose environment marker holds on the target but not on this
    machine. pip evaluates markers here, not for --platform, so it would leave them out (lgpio,
    `platform_machine == 'aarch64'`, was missing from the Pi's bundle that way)."""
    from packaging.requirements import Requirement

    version = TARGETS[target][0]
    env = {"platform_machine": target.split("-", 1)[1], "python_version": version,
           "python_full_version": version + ".0", "sys_platform": "linux",
           "platform_system": "Linux", "os_name": "posix", "implementation_name": "cpython",
           "platform_python_implementation": "CPython", "extra": "face"}
    with zipfile.ZipFile(project_wheel) as wheel:
        name = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = email.parser.Parser().parsestr(wheel.read(name).decode())
    out = []
    for line in metadata.get_all("Requires-Dist") or []:
        requirement = Requirement(line)
        marker = requirement.marker
        here = {"extra": "face"}
        if marker is not None and marker.evaluate(env) and not marker.evaluate(here):
            requirement.marker = None
            out.append(str(requirement))
    return out


def download(project_wheel: Path, dest: Path, targets: list[str]) -> dict:
    """Fill `dest` with the wheels for every target; return bundle.json's content."""
    complete = []
    for target in targets:
        tags = _tag_args(target)
        extra = target_only_requirements(project_wheel, target)
        _pip(["download", "--quiet", "--dest", str(dest), "--find-links", str(dest), *tags,
              f"{project_wheel}[face]", *extra], f"downloading the wheels for {target}")
        with tempfile.TemporaryDirectory() as scratch:
            _pip(["install", "--dry-run", "--quiet", "--ignore-installed", "--no-index",
                  "--find-links", str(dest), "--target", scratch, *tags, REQUIREMENT, *extra],
                 f"the bundle for {target} is incomplete")
        complete.append(target)
    return {"requirement": REQUIREMENT, "complete_for": complete,
            "files": sorted(p.name for p in dest.glob("*.whl"))}


def write_manifest(dest: Path, manifest: dict) -> Path:
    path = dest / "bundle.json"
    path.write_text(json.dumps(manifest, indent=1) + "\n")
    return path
