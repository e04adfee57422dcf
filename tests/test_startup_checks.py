"""What stops a start, and how it is said: `--check-config` refuses every file the daemon refuses
(they share cabinet/preflight.py), a port or data folder in use is one line, options are never
abbreviated, `--url` takes HOST:PORT; and a cabinet with no usable GPIO starts anyway, locked, with
the gpio fault and no session."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from cabinet.cli import daemon_url

from .conftest import REPO, no_devices_config, wait_for


def cabinetd(*args, cwd, timeout=60):
    return subprocess.run([sys.executable, "-m", "cabinet", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=timeout)


def technician(*args, cwd=None):
    return subprocess.run([sys.executable, "-c", "import sys; from cabinet.cli import "
                           "technician_main; sys.exit(technician_main())", *args],
                          capture_output=True, text=True, cwd=cwd, timeout=60)


def _synced_config(tmp_path, token_mode: int | None, token_text="abc\n"):
    token = tmp_path / "token"
    if token_mode is not None:
        token.write_text(token_text)
        os.chmod(token, token_mode)
    config = tmp_path / "c.toml"
    config.write_text(f"[sync]\nbackend_url = 'https://backend.example'\n"
                      f"device_token_file = '{token}'\n")
    return config


@pytest.mark.parametrize("mode, text, words", [
    (None, "abc\n", "device token file missing"),
    (0o644, "abc\n", "mode 0644; it must be 0600"),
    (0o600, "\n", "device token file is empty"),
])
def test_check_config_refuses_what_the_start_refuses(tmp_path, mode, text, words):
    config = _synced_config(tmp_path, mode, text)
    check = cabinetd("--check-config", "--config", str(config), cwd=tmp_path)
    assert check.returncode == 2 and words in check.stderr
    assert len(check.stderr.strip().splitlines()) == 1, check.stderr
    start = cabinetd("--config", str(config), "--simulate", "--data-dir", str(tmp_path / "d"),
                     "--http-port", "0", cwd=tmp_path)
    assert start.returncode == 2 and words in start.stderr
    same = technician("check-config", "--config", str(config), cwd=tmp_path)
    assert same.returncode == 2 and words in same.stderr


def test_check_config_refuses_bad_key_and_planogram_files_and_warns_on_missing_ones(tmp_path):
    keys, planogram = tmp_path / "keys.toml", tmp_path / "planogram.toml"
    config = tmp_path / "c.toml"
    config.write_text(f"[access]\nkeys_file = '{keys}'\n[checkout]\nplanogram_file = '{planogram}'\n")
    result = cabinetd("--check-config", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 0 and "OK" in result.stdout
    assert "keys.toml does not exist: access codes cannot open the door" in result.stderr
    assert "planogram.toml does not exist" in result.stderr
    keys.write_text("[[key]\nbroken")
    result = cabinetd("--check-config", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 2 and "access.keys_file" in result.stderr
    keys.unlink()
    planogram.write_text("[[product]]\nsku = 'x'\n")
    result = cabinetd("--check-config", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 2 and "checkout.planogram_file" in result.stderr
    planogram.write_text((REPO / "config" / "planogram.toml").read_text())
    assert cabinetd("--check-config", "--config", str(config), cwd=tmp_path).returncode == 0


def test_no_option_is_abbreviated(tmp_path):
    result = cabinetd("--simulat", "--http-port", "0", "--data-dir", str(tmp_path / "d"),
                      cwd=tmp_path, timeout=20)
    assert result.returncode == 2 and "unrecognized arguments: --simulat" in result.stderr
    assert not (tmp_path / "d").exists()
    result = technician("status", "--ur", "127.0.0.1:1")
    assert result.returncode == 2 and "unrecognized arguments" in result.stderr


def test_url_takes_host_and_port_or_says_what_it_expects():
    assert daemon_url("127.0.0.1:8089") == "http://127.0.0.1:8089"
    assert daemon_url("http://10.0.0.5:8080/") == "http://10.0.0.5:8080"
    assert daemon_url("localhost") == "http://localhost"
    result = technician("status", "--url", "ftp://x")
    assert result.returncode == 2 and "expected the daemon's address as http://HOST:PORT" \
        in result.stderr
    assert technician("status", "--url", "8081").returncode == 2   # a port alone: which host?
    result = technician("status", "--url", "127.0.0.1:notaport")
    assert result.returncode == 2 and "HOST:PORT" in result.stderr
    # Reaches the daemon's port and says plainly that nobody answers there.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = technician("status", "--url", f"127.0.0.1:{port}")
    assert result.returncode == 1 and f"cannot reach the daemon at http://127.0.0.1:{port}" \
        in result.stderr and "unknown url type" not in result.stderr


def test_faces_enroll_names_a_missing_photograph(tmp_path):
    result = technician("faces", "enroll", str(tmp_path / "missing.jpg"), "--member", "m",
                        "--consent")
    assert result.returncode == 1 and "missing.jpg: no such file" in result.stderr


def test_a_port_or_data_folder_in_use_is_one_line_and_touches_nothing(tmp_path):
    from tools.daemon_process import CabinetProcess

    first = CabinetProcess(data_dir=tmp_path / "first")
    try:
        first.wait_ready()
        wait_for(lambda: first.url)
        port = first.url.rsplit(":", 1)[1]
        before = (tmp_path / "first" / "cabinet.db").stat().st_mtime_ns
        taken = cabinetd("--simulate", "--http-port", port, "--data-dir",
                         str(tmp_path / "second"), cwd=tmp_path)
        assert taken.returncode == 1
        lines = taken.stderr.strip().splitlines()
        assert len(lines) == 1 and f"port {port} on 127.0.0.1 is in use" in lines[0] \
            and "--http-port" in lines[0], taken.stderr
        assert not (tmp_path / "second" / "cabinet.db").exists()
        shared = cabinetd("--simulate", "--http-port", "0", "--data-dir",
                          str(tmp_path / "first"), cwd=tmp_path)
        assert shared.returncode == 2 and "is in use by another cabinetd (pid" in shared.stderr
        assert len(shared.stderr.strip().splitlines()) == 1, shared.stderr
        assert (tmp_path / "first" / "cabinet.db").stat().st_mtime_ns == before
        assert first.state()["lock"] == "locked"
    finally:
        first.terminate()


def test_without_usable_gpio_the_daemon_starts_locked_with_the_fault(tmp_path):
    """No lgpio here (or no GPIO chip on a Pi): the lock stays de-energised, the gpio fault is
    raised and said, the door is unknown rather than closed, and no session can open."""
    config = no_devices_config(tmp_path, 'pin_factory = "lgpio"\nchip = 15')
    proc = subprocess.Popen([sys.executable, "-m", "cabinet", "--config", str(config),
                             "--data-dir", str(tmp_path / "d"), "--http-port", "0"],
                            stderr=subprocess.PIPE, text=True)
    try:
        lines: list[str] = []
        while not any("listening on" in line for line in lines):
            line = proc.stderr.readline()
            assert line, "".join(lines)
            lines.append(line)
        url = re.search(r"listening on (http://\S+)", "".join(lines)).group(1)

        def state():
            with urllib.request.urlopen(url + "/api/state", timeout=5) as reply:
                return json.load(reply)
        s = wait_for(lambda: "gpio" in state()["faults"] and state(), timeout=20, what="gpio")
        assert "GPIO unusable" in s["faults"]["gpio"]["detail"]
        assert s["lock"] == "locked" and s["door"] == "unknown"
        assert s["screen"] == {**s["screen"], "name": "out_of_service", "reason": "device_fault"}
        assert "device_fault:gpio" in {a["kind"] for a in s["alarms"]}
        assert proc.poll() is None
        time.sleep(0.5)
        assert state()["lock"] == "locked"
    finally:
        proc.terminate()
        proc.wait(20)
