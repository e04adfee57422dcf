"""`cabinet selftest` against the simulated cabinet: all PASS; one shelf's board without power
fails that line, with a hint, and the command exits 1."""

from __future__ import annotations

import time

import pytest

from cabinet.cli import technician_main

from .conftest import wait_for
from .test_daemon import daemon  # noqa: F401  (the fixture)


def test_selftest_passes_then_names_the_dead_shelf(daemon, capsys):
    wait_for(lambda: (s := daemon.state())["temperature"] and all(
        sh["stable"] for sh in s["shelves"]), timeout=20, what="a settled cabinet")
    assert technician_main(["selftest", "--url", daemon.url]) == 0
    out = capsys.readouterr().out
    assert "16 passed, 0 failed" in out
    for name in ("lock", "door switch", "shelf 1", "shelf 4", "temperature sensor",
                 "compressor relay", "camera and QR decoding", "face checkout", "scanner",
                 "database"):
        assert f"] {name:<24} PASS" in out, name
    assert daemon.state()["lock"] == "locked", "the lock cycle ends locked"

    assert daemon.post("/sim/unplug", {"device": "shelf:2"})[0] == 200
    wait_for(lambda: "shelf:2" in daemon.state()["faults"], timeout=15, what="the shelf fault")
    assert technician_main(["selftest", "--url", daemon.url]) == 1
    out = capsys.readouterr().out
    assert "] shelf 2                  FAIL" in out
    assert "] shelf 1                  PASS" in out and "] shelf 3                  PASS" in out
    assert "shelf 2: check the RS485 cable and power of the load-cell board (Modbus address 2" in out
    assert "15 passed, 1 failed" in out
    assert daemon.post("/sim/plug", {"device": "shelf:2"})[0] == 200
    wait_for(lambda: "shelf:2" not in daemon.state()["faults"], timeout=15, what="recovery")


def test_calibrate_fixes_a_load_cell_that_reads_5_percent_high(tmp_path, capsys):
    from tools.daemon_process import CabinetProcess

    from cabinet.calibration import CalibrationError, scale_from

    config = tmp_path / "c.toml"
    config.write_text("[simulation]\nload_cell_gain = 1.05\nnoise_grams = 0.2\n")

    def start():
        d = CabinetProcess("--config", str(config), data_dir=tmp_path / "data")
        d.wait_ready()
        wait_for(lambda: d.url, what="the URL")
        return d

    def settled(d, shelf, near=None, away_from=None):
        """The shelf's stable weight once it has settled where expected."""
        def ok():
            s = d.state()["shelves"][shelf - 1]
            g = s["stable_grams"]
            if not s["stable"] or g is None or abs((s["grams"] or 0) - g) > 2:
                return None
            if near is not None and abs(g - near) > 3:
                return None
            if away_from is not None and abs(g - away_from) < 100:
                return None
            return g
        return wait_for(ok, timeout=20, what=f"shelf {shelf} settled")

    d = start()
    try:
        before = settled(d, 4)
        for p in d.state()["products"]:
            if p["shelf"] == 4 and p["stock"]:
                d.post("/sim/shelf", {"shelf": 4, "take": {p["sku"]: p["stock"]}})
        empty = settled(d, 4, near=1500 * 1.05)  # the tray alone, read 5 % high
        time.sleep(1.5)  # the swing of the simulated tray dies down
        status, tare = d.post("/api/calibrate", {"shelf": 4, "step": "tare"})
        assert status == 200, tare
        d.post("/sim/shelf", {"shelf": 4, "grams": 2000.0})
        loaded = settled(d, 4, away_from=empty)
        assert abs(loaded - (1500 + 2000) * 1.05) < 5, "before calibration: 5 % high"
        time.sleep(1.5)
        status, span = d.post("/api/calibrate", {"shelf": 4, "step": "span", "grams": 2000.0})
        assert status == 200, span
        assert abs(span["change_percent"] - (1 / 1.05 - 1) * 100) < 0.2
        settled(d, 4, near=2000.0)  # the tray tared away, the weight read true
        status, err = d.post("/api/calibrate", {"shelf": 4, "step": "span", "grams": 2000.0})
        assert status == 400 and "tare the empty shelf first" in err["error"]
    finally:
        d.terminate()
    d = start()  # the factors survive a restart
    try:
        settled(d, 4, near=2000.0)
    finally:
        d.terminate()
    assert before > empty
    with pytest.raises(CalibrationError, match="swapped"):
        scale_from(1000, 900, 500)
    with pytest.raises(CalibrationError, match="heavier"):
        scale_from(1000, 1010, 500)


def test_cabinet_logs_reads_the_journal():
    import shutil
    import subprocess
    import sys

    if shutil.which("journalctl") is None:
        pytest.fail("journalctl missing: tools/setup.sh test installs systemd")
    cabinet = str(__import__("pathlib").Path(sys.executable).with_name("cabinet"))
    result = subprocess.run([cabinet, "logs", "-n", "5"], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0, result.stderr
    bad = subprocess.run([cabinet, "logs", "--priority", "loud"], capture_output=True, text=True)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
