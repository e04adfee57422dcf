"""The repository stands on its own: a clone with nothing beside it has everything its tests,
benchmarks and docs read (issue 14)."""

from __future__ import annotations

import re
import subprocess

from .conftest import REPO, TEST_DATA

# A path that climbs out of the clone to a sibling folder (the team's shared/ is not in a clone).
OUTSIDE = re.compile(r"\.\./shared|parents\[\d\]\s*/\s*[\"']shared[\"']|parent\s*/\s*[\"']shared[\"']")


def tracked_text_files():
    names = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for name in filter(None, names):
        path = REPO / name
        if name.startswith("tests/data/") or not path.is_file():
            continue
        try:
            yield name, path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue


def test_no_file_reads_outside_the_clone():
    offenders = [f"{name}:{number}: {line.strip()}"
                 for name, text in tracked_text_files()
                 for number, line in enumerate(text.splitlines(), 1)
                 if OUTSIDE.search(line)]
    assert offenders == []


def test_the_pattern_would_catch_the_old_paths():
    assert OUTSIDE.search('REPO.parent / "' + 'shared" / "data"')
    sibling = "../" + "shared"   # spelt in two pieces so that this file does not match itself
    assert OUTSIDE.search(f"cabinet faces enroll {sibling}/data/faces/train/obama/*.jpg")
    assert not OUTSIDE.search('TEST_DATA / "faces"')


def test_the_photographs_are_in_the_repository_with_their_licences():
    photos = [p for p in (TEST_DATA / "qr").glob("zxing-qrcode-*/*")
              if p.suffix in (".png", ".jpg", ".gif")]
    assert len(photos) == 179
    assert len(list((TEST_DATA / "faces" / "train").iterdir())) == 5
    for licence in ("qr/LICENSE-Apache-2.0.txt", "faces/LICENSE-MIT.txt", "README.md"):
        assert (TEST_DATA / licence).stat().st_size > 500
