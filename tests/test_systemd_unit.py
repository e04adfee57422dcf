"""systemd/cabinetd.service: accepted by systemd-analyze verify, and its hardening exposure."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO

UNIT = REPO / "systemd" / "cabinetd.service"
analyze = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(analyze is None, reason="systemd-analyze not installed "
                                   "(tools/setup.sh test installs it on Debian)")


def _unit_in(tmp_path: Path) -> Path:
    # verify checks that ExecStart exists: point it at this checkout's cabinetd.
    cabinetd = Path(sys.executable).with_name("cabinetd")
    unit = tmp_path / "cabinetd.service"
    unit.write_text(UNIT.read_text().replace("/opt/cabinet/venv/bin/cabinetd", str(cabinetd)))
    return unit


def test_unit_declares_what_the_daemon_relies_on():
    text = UNIT.read_text()
    for line in ("Type=notify", "WatchdogSec=", "Restart=on-failure", "User=cabinet",
                 "SupplementaryGroups=gpio dialout video", "NoNewPrivileges=yes",
                 "ProtectSystem=strict", "StateDirectory=cabinet", "RestartPreventExitStatus=2"):
        assert line in text, line


@needs_analyze
def test_systemd_analyze_verify_accepts_it(tmp_path):
    result = subprocess.run([analyze, "verify", str(_unit_in(tmp_path))], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "cabinetd.service" not in result.stderr, result.stderr


@needs_analyze
def test_security_exposure_is_low(tmp_path, capsys):
    result = subprocess.run([analyze, "security", "--offline=yes", "--no-pager",
                             str(_unit_in(tmp_path))], capture_output=True, text=True, timeout=60)
    found = re.search(r"Overall exposure level for cabinetd.service: ([0-9.]+)", result.stdout)
    assert found, result.stdout[-500:] + result.stderr
    with capsys.disabled():  # shown in the CI log, not only on failure
        print(f"\nsystemd-analyze security exposure of cabinetd.service: {found.group(1)}")
    assert float(found.group(1)) <= 4.0


KIOSK = REPO / "systemd" / "cabinet-kiosk.service"


def test_kiosk_unit_shows_the_daemons_page():
    from cabinet.config import Config

    text = KIOSK.read_text()
    assert f"--app=http://127.0.0.1:{Config().http.port}/" in text
    assert "--kiosk" in text and "Restart=always" in text and "NoNewPrivileges=yes" in text


@needs_analyze
def test_systemd_analyze_verify_accepts_the_kiosk_unit(tmp_path):
    # cage is only on the cabinet: verify the unit's syntax with an executable that exists here.
    unit = tmp_path / "cabinet-kiosk.service"
    unit.write_text(KIOSK.read_text().replace("/usr/bin/cage", shutil.which("true")))
    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True,
                            timeout=60)
    assert "cabinet-kiosk.service:" not in result.stderr, result.stderr


@needs_analyze
def test_systemd_analyze_verify_accepts_the_first_boot_unit():
    unit = REPO / "systemd" / "cabinet-firstboot.service"
    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True,
                            timeout=60)
    assert "cabinet-firstboot.service:" not in result.stderr, result.stderr


@needs_analyze
def test_systemd_analyze_verify_accepts_the_backend_unit(tmp_path):
    """The operators' backend's unit, pointed at this checkout's cabinet-backend."""
    program = Path(sys.executable).with_name("cabinet-backend")
    unit = tmp_path / "cabinet-backend.service"
    unit.write_text((REPO / "systemd" / "cabinet-backend.service").read_text().replace(
        "/opt/cabinet-backend/venv/bin/cabinet-backend", str(program)))
    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True,
                            timeout=60)
    assert "cabinet-backend.service:" not in result.stderr, result.stderr
    result = subprocess.run([analyze, "security", "--offline=yes", "--no-pager", str(unit)],
                            capture_output=True, text=True, timeout=60)
    exposure = float(re.search(r"Overall exposure level for \S+: (\d+\.\d+)",
                               result.stdout).group(1))
    print(f"\nsystemd-analyze security exposure of cabinet-backend.service: {exposure}")
    assert exposure < 2.5


@needs_analyze
def test_systemd_analyze_verify_accepts_the_update_units(tmp_path):
    """cabinet-update.path and .service (the installer), pointed at this checkout's Python."""
    for name in ("cabinet-update.service", "cabinet-update.path"):
        text = (REPO / "systemd" / name).read_text().replace(
            "/opt/cabinet/venv/bin/python", sys.executable)
        (tmp_path / name).write_text(text)
    result = subprocess.run([analyze, "verify", str(tmp_path / "cabinet-update.path"),
                             str(tmp_path / "cabinet-update.service")], capture_output=True,
                            text=True, timeout=60)
    assert "cabinet-update." not in result.stderr, result.stderr
    unit = (REPO / "systemd" / "cabinetd.service").read_text()
    for hook in ("ExecStartPre=+-/usr/bin/python3 /usr/local/lib/cabinet/supervisor.py starting",
                 "ExecStopPost=+-/usr/bin/python3 /usr/local/lib/cabinet/supervisor.py stopped"):
        assert hook in unit, hook
