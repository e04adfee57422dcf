"""The fuzz targets (tools/fuzz/: access codes, face enrolment entries) run for a bounded time in
CI."""

from __future__ import annotations

import subprocess
import sys

import pytest

from .conftest import REPO

atheris = pytest.importorskip("atheris", reason="atheris has wheels for x86_64 only")


@pytest.mark.parametrize("target", ["fuzz_codes.py", "fuzz_face_members.py"])
def test_fuzz_target_finds_nothing(tmp_path, target):
    result = subprocess.run([sys.executable, str(REPO / "tools" / "fuzz" / target),
                             "-max_total_time=20", f"-artifact_prefix={tmp_path}/"],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    runs = [line for line in result.stderr.splitlines() if line.startswith("Done ")]
    print(runs[-1] if runs else result.stderr[-500:])
    assert result.returncode == 0, result.stderr[-2000:]
    assert runs, "the fuzzer ran"
