"""The code a benchmark compares against, side by side in the same run: an earlier commit of this
repository, taken from its history with `git archive` (never kept twice in the tree).

BEFORE is main as it stood when issue 23's speed work began; `--against REV` picks another
commit (a release's, say) and `--against none` skips the comparison. A daemon runs from the
extracted folder as `python -m cabinet` with that folder as its working directory, so its own
`cabinet` and `drivers` packages are the ones imported. In a shallow clone without that commit
the comparison is skipped with a message, and the benchmark still measures today's code.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BEFORE = "6b123d2"  # main on 2026-12-01, before the speed work of issue 23
PARTS = ("cabinet", "drivers", "config")


def against_option(parser) -> None:
    parser.add_argument("--against", default=BEFORE, metavar="REV",
                        help=f"the earlier commit measured beside today's code (default {BEFORE}, "
                             "before issue 23's work); 'none' to skip")


def tree(rev: str | None, parts: tuple[str, ...] = PARTS) -> Path | None:
    """The folder holding `parts` as of commit `rev` (removed when the process exits); None
    when `rev` is 'none' or this clone does not have it (the reason is printed)."""
    if rev in (None, "none"):
        return None
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, *parts],
                             capture_output=True)
    if archive.returncode != 0:
        print(f"(no comparison: commit {rev} is not in this clone: "
              f"{archive.stderr.decode(errors='replace').strip()})")
        return None
    folder = Path(tempfile.mkdtemp(prefix=f"cabinet-{rev}-"))
    atexit.register(shutil.rmtree, folder, True)
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder


def side_by_side(rev: str | None) -> dict[str, Path | None]:
    """What a benchmark measures, by name: today's code (None: this checkout), and the code as
    of `rev` when this clone has it."""
    folders: dict[str, Path | None] = {"today": None}
    before = tree(rev)
    if before is not None:
        folders[f"at {rev}"] = before
    return folders


def daemon_program(folder: Path | None) -> dict:
    """CabinetProcess keyword arguments that run the daemon from `folder` (today's: none)."""
    if folder is None:
        return {}
    return {"program": [sys.executable, "-m", "cabinet"], "cwd": folder}


def machine_load() -> str:
    """The load the figures were taken under: the load averages against the cores."""
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} cores"
