"""`cabinet selftest` against the simulated cabinet: all PASS; one shelf's board without power
fails that line, with a hint, and the command exits 1."""

from __future__ import annotations

from cabinet.cli import technician_main

from .conftest import wait_for
from .test_daemon import daemon  # noqa: F401  (the fixture)


def test_selftest_passes_then_names_the_dead_shelf(daemon, capsys):
    wait_for(lambda: (s := daemon.state())["temperature"] and all(
        sh["stable"] for sh in s["shelves"]), timeout=20, what="a settled cabinet")
    assert technician_main(["selftest", "--url", daemon.url]) == 0
    out = capsys.readouterr().out
    assert "15 passed, 0 failed" in out
    for name in ("lock", "door switch", "shelf 1", "shelf 4", "temperature sensor",
                 "compressor relay", "camera and QR decoding", "scanner", "database"):
        assert f"] {name:<24} PASS" in out, name
    assert daemon.state()["lock"] == "locked", "the lock cycle ends locked"

    assert daemon.post("/sim/unplug", {"device": "shelf:2"})[0] == 200
    wait_for(lambda: "shelf:2" in daemon.state()["faults"], timeout=15, what="the shelf fault")
    assert technician_main(["selftest", "--url", daemon.url]) == 1
    out = capsys.readouterr().out
    assert "] shelf 2                  FAIL" in out
    assert "] shelf 1                  PASS" in out and "] shelf 3                  PASS" in out
    assert "shelf 2: check the RS485 cable and power of the load-cell board (Modbus address 2" in out
    assert "14 passed, 1 failed" in out
    assert daemon.post("/sim/plug", {"device": "shelf:2"})[0] == 200
    wait_for(lambda: "shelf:2" not in daemon.state()["faults"], timeout=15, what="recovery")
