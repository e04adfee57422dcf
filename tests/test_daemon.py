"""Black-box: `cabinetd --simulate` as a real process, driven only through its HTTP surface."""

from __future__ import annotations

import json
import time

import pytest

from tools.daemon_process import CabinetProcess

from .conftest import TEST_DATA, no_devices_config, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def daemon(tmp_path):
    d = CabinetProcess(data_dir=tmp_path / "data")
    d.wait_ready()
    wait_for(lambda: d.url, what="the URL in the log")
    yield d
    d.kill()


def test_answers_state_locked_within_five_seconds(tmp_path):
    started = time.monotonic()
    d = CabinetProcess(data_dir=tmp_path / "data")
    try:
        state = wait_for(lambda: d.url and d.state(), timeout=5, what="/api/state")
        assert time.monotonic() - started < 5
        assert state["lock"] == "locked"
        assert state["cabinet_id"] and state["software_version"]
        assert any("listening on http://127.0.0.1:" in line for line in d.log_lines[:3])
    finally:
        d.kill()


def test_ready_means_the_door_and_lock_are_known(tmp_path):
    """READY (what systemd, the kiosk and the tests wait for) comes after the controller has
    handled the door's first reading: a CI run once saw "unknown" just after READY."""
    d = CabinetProcess(data_dir=tmp_path / "data")
    try:
        d.wait_ready()
        wait_for(lambda: d.url, what="the URL in the log")
        state = d.state()
        assert state["door"] == "closed" and state["lock"] == "locked"
    finally:
        d.kill()


def test_state_has_every_device(daemon):
    state = wait_for(lambda: (s := daemon.state())["temperature"] and all(
        sh["stable"] for sh in s["shelves"]) and s, timeout=15, what="all shelves stable")
    assert state["door"] == "closed" and state["faults"] == {}
    assert [s["shelf"] for s in state["shelves"]] == [1, 2, 3, 4]
    assert abs(state["shelves"][0]["stable_grams"]
               - state["simulation"]["shelves"]["1"]["true_grams"]) < 10


def test_forced_open(daemon):
    status, body = daemon.post("/sim/door", {"state": "open"})
    assert status == 200
    state = wait_for(lambda: (s := daemon.state())["alarms"] and s, what="alarm")
    assert state["alarms"][0]["kind"] == "forced_open"
    assert state["door"] == "open" and state["lock"] == "locked"
    assert state["relays"]["buzzer"] is True
    daemon.post("/sim/door", {"state": "closed"})
    wait_for(lambda: not daemon.state()["relays"]["buzzer"], what="buzzer off")


def test_shelf_take_changes_the_stable_weight(daemon):
    before = wait_for(lambda: daemon.state()["shelves"][0]["stable_grams"], timeout=15)
    status, body = daemon.post("/sim/shelf", {"shelf": 1, "take": {"yak-milk-250ml": 2}})
    assert status == 200 and body["shelf"]["items"]["yak-milk-250ml"] == 8
    wait_for(lambda: (g := daemon.state()["shelves"][0]["stable_grams"]) is not None
             and abs(g - (before - 524)) < 5, timeout=15, what="the new stable weight")
    status, body = daemon.post("/sim/shelf", {"shelf": 1, "put_back": {"yak-milk-250ml": 1}})
    assert status == 200 and body["shelf"]["items"]["yak-milk-250ml"] == 9


@pytest.mark.parametrize("device, faulted", [
    ("shelf_peer", {"shelf:1", "shelf:2", "shelf:3", "shelf:4"}),
    ("shelves", {"shelf:1", "shelf:2", "shelf:3", "shelf:4"}),
    ("scanner", {"scanner"}),
    ("thermometer", {"thermometer"}),
    ("camera", {"camera"}),
])
def test_device_loss_is_a_fault_that_clears_when_it_comes_back(daemon, device, faulted):
    wait_for(lambda: daemon.state()["temperature"], timeout=15, what="first temperature")
    assert daemon.post("/sim/unplug", {"device": device})[0] == 200
    state = wait_for(lambda: faulted <= set((s := daemon.state())["faults"]) and s, timeout=15,
                     what=f"{device} fault")
    assert daemon.proc.poll() is None, "the daemon keeps running"
    assert {a["kind"] for a in state["alarms"]} >= {f"device_fault:{d}" for d in faulted}
    assert daemon.post("/sim/plug", {"device": device})[0] == 200
    wait_for(lambda: not (faulted & set(daemon.state()["faults"])), timeout=30,
             what=f"{device} recovery")
    assert not [a for a in daemon.state()["alarms"] if a["kind"].startswith("device_fault")]


def test_scanner_line_reaches_the_controller(daemon):
    # The scanner's port may still be opening (pyserial flushes on open), so send until it is read.
    scan = wait_for(lambda: daemon.post("/sim/scan", {"text": "CAB:hello"})[0] == 200
                    and daemon.state()["last_scan"], what="the scan")
    assert scan["length"] == 9
    daemon.post("/sim/scan", {"hex": "fffe0d0a"})
    wait_for(lambda: "not UTF-8" in daemon.state()["last_scan"]["result"], what="unreadable scan")
    daemon.post("/sim/scan", {"text": "x"})
    wait_for(lambda: daemon.state()["last_scan"].get("length") == 1, what="the next scan")


def test_camera_ambient_and_thermometer_controls(daemon):
    photo = TEST_DATA / "qr" / "zxing-qrcode-1" / "1.png"
    assert daemon.post("/sim/camera", raw=photo.read_bytes(), content_type="image/png")[0] == 200
    assert daemon.post("/sim/camera", {"path": str(photo)})[0] == 200
    assert daemon.post("/sim/ambient", {"celsius": -20})[0] == 200
    assert daemon.state()["simulation"]["ambient_celsius"] == -20
    assert daemon.post("/sim/thermometer", {"fault": "power_on"})[0] == 200
    fault = wait_for(lambda: daemon.state()["faults"].get("thermometer"), timeout=15)
    assert "power-on value" in fault["detail"]


@pytest.mark.parametrize("path, body, status, words", [
    ("/sim/door", {"state": "ajar"}, 400, "\"open\" or \"closed\""),
    ("/sim/door", {}, 400, "missing 'state'"),
    ("/sim/shelf", {"shelf": 9, "take": {"x": 1}}, 400, "no shelf 9"),
    ("/sim/shelf", {"shelf": 1, "take": {"caviar": 1}}, 400, "no 'caviar'"),
    ("/sim/shelf", {"shelf": 1, "take": {"water-550ml": 99}}, 400, "only 12"),
    ("/sim/shelf", {"shelf": 1, "take": {"water-550ml": -1}}, 400, "positive integer"),
    ("/sim/shelf", {"shelf": "1", "grams": 5}, 400, "'shelf' must be int"),
    ("/sim/ambient", {"celsius": 500}, 400, "between -50 and 60"),
    ("/sim/scan", {"text": "a\nb"}, 400, "no CR or LF"),
    ("/sim/camera", {"path": "/nonexistent.png"}, 400, "cannot read image"),
    ("/sim/unplug", {"device": "toaster"}, 400, "unknown device"),
    ("/sim/teleport", {}, 404, "no such simulation control"),
])
def test_bad_requests_get_specific_errors(daemon, path, body, status, words):
    got, reply = daemon.post(path, body)
    assert got == status and words in reply["error"]
    assert daemon.state()["lock"] == "locked"


def test_not_json_and_bad_image(daemon):
    status, reply = daemon.post("/sim/door", raw=b"{nope", content_type="application/json")
    assert status == 400 and "not JSON" in reply["error"]
    status, reply = daemon.post("/sim/camera", raw=b"GIF89a...", content_type="image/png")
    assert status == 400 and "not a PNG or JPEG" in reply["error"]


def test_sigterm_stops_cleanly_with_stopping(tmp_path):
    d = CabinetProcess(data_dir=tmp_path / "data")
    d.wait_ready()
    notifications = d.notifications
    assert d.terminate() == 0
    assert any("STOPPING=1" in m for _, m in notifications)


def test_watchdog_is_fed(tmp_path):
    d = CabinetProcess(data_dir=tmp_path / "data", watchdog_usec=1_000_000)
    try:
        d.wait_ready()
        wait_for(lambda: sum("WATCHDOG=1" in m for _, m in d.notifications) >= 3, timeout=10)
    finally:
        d.kill()


def test_power_cut_and_restart_keeps_alarms_and_starts_locked(tmp_path):
    d = CabinetProcess(data_dir=tmp_path / "data")
    d.wait_ready()
    wait_for(lambda: d.url)
    d.post("/sim/door", {"state": "open"})
    wait_for(lambda: d.state()["alarms"], what="alarm")
    d.post("/sim/power")
    assert d.proc.wait(10) == -9
    d.close()
    again = CabinetProcess(data_dir=tmp_path / "data")
    try:
        again.wait_ready()
        wait_for(lambda: again.url)
        state = again.state()
        assert state["lock"] == "locked"
        assert [a["kind"] for a in state["alarms"]] == ["forced_open"]
        assert state["outbox"]["pending"] >= 1
    finally:
        again.kill()


def test_real_mode_with_missing_devices_keeps_running(tmp_path):
    """Without --simulate, on mock pins, with no serial ports: faults, not a crash."""
    import subprocess
    import sys
    config = no_devices_config(tmp_path, 'pin_factory = "mock"')
    proc = subprocess.Popen([sys.executable, "-m", "cabinet", "--config", str(config),
                             "--data-dir", str(tmp_path / "d"), "--http-port", "0"],
                            stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            lines.append(proc.stderr.readline())
            joined = "".join(lines)
            if "scanner fault" in joined and "shelf:4 fault" in joined and "thermometer fault" in joined:
                break
        joined = "".join(lines)
        assert "no-rs485: serial port not present" in joined
        assert "no-scanner: serial port not present" in joined
        assert "no DS18B20" in joined or "cannot list 1-Wire" in joined
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(20)


def _raw_request(url: str, head: str, body: bytes = b"", read_timeout: float = 10) -> bytes:
    """One request written by hand (headers a client library would refuse to send)."""
    import socket
    host, port = url.split("//", 1)[1].split(":")
    with socket.create_connection((host, int(port)), timeout=read_timeout) as s:
        s.sendall(head.encode() + b"\r\n\r\n" + body)
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    return reply


def test_negative_content_length_is_refused_without_reading_the_body(daemon):
    """Issue 15 #5: `Content-Length: -1` made the server read everything the client sent."""
    head = ("POST /api/speak HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            "Content-Length: -1")
    reply = _raw_request(daemon.url, head, b"x" * (256 * 1024))
    assert reply.startswith(b"HTTP/1.1 400") and b"bad Content-Length" in reply
    assert daemon.state()["lock"] == "locked"


@pytest.mark.parametrize("path, raw, words", [
    ("/api/climate/setpoint", b'{"celsius": ' + b"9" * 400 + b"}", "finite number"),
    ("/api/climate/setpoint", b'{"celsius": ' + b"9" * 5000 + b"}", "not JSON"),
    ("/api/climate/setpoint", b'{"celsius": NaN}', "not a JSON number"),
    ("/api/faces/delete", b"[" * 20000 + b"]" * 20000, "nested too deep"),
    ("/sim/ambient", b'{"celsius": ' + b"1" * 400 + b"}", "finite number"),
    ("/sim/door", b"[" * 30000, "not JSON"),
])
def test_huge_numbers_and_deep_json_get_400_with_the_reason(daemon, path, raw, words):
    """Issue 15 #9: these dropped the connection (OverflowError, RecursionError, ValueError)."""
    status, reply = daemon.post(path, raw=raw, content_type="application/json")
    assert status == 400 and words in reply["error"], reply
    assert daemon.state()["climate"]["setpoint_celsius"] != 9e400


def test_a_planogram_nested_too_deep_is_a_400(daemon):
    import urllib.error
    import urllib.request
    request = urllib.request.Request(daemon.url + "/api/planogram", data=b"[" * 100000,
                                     method="PUT", headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 400 and b"nested too deep" in refused.value.read()


def test_a_setpoint_set_survives_a_power_cut(tmp_path):
    """Issue 15 #8: `cabinet setpoint 2` reported done, then a power cut, and the cabinet came
    back holding the config's 4 °C."""
    d = CabinetProcess(data_dir=tmp_path / "data")
    try:
        d.wait_ready()
        wait_for(lambda: d.url)
        assert d.state()["climate"]["setpoint_set_at"] is None      # the config's value
        status, _ = d.post("/api/climate/setpoint", {"celsius": 2})
        assert status == 200
        d.post("/sim/power")
        d.proc.wait(10)
    finally:
        d.kill()
    again = CabinetProcess(data_dir=tmp_path / "data")
    try:
        again.wait_ready()
        wait_for(lambda: again.url)
        climate = again.state()["climate"]
        assert climate["setpoint_celsius"] == 2 and climate["setpoint_set_at"]
    finally:
        again.kill()


@pytest.mark.parametrize("headers, words", [
    ({"Host": "evil.example"}, "Host 'evil.example'"),
    ({"Host": "127.0.0.1", "Origin": "http://evil.example"}, "Origin 'http://evil.example'"),
    ({"Host": "127.0.0.1", "Origin": "null"}, "Origin 'null'"),
])
def test_state_changes_from_anywhere_but_the_cabinet_are_refused(daemon, headers, words):
    """Issue 15 #6: a page in any browser (an Origin) or DNS rebinding (a foreign Host) could
    delete members, clear a lockout or pulse the lock through the selftest."""
    import urllib.error
    import urllib.request
    for path, body in (("/api/faces/delete", b'{"member_ids": ["m"]}'),
                       ("/api/food-safety/clear", b'{"technician": "x"}'),
                       ("/api/selftest", b"{}"), ("/sim/door", b'{"state": "open"}')):
        request = urllib.request.Request(daemon.url + path, data=body, method="POST",
                                         headers={"Content-Type": "text/plain", **headers})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 403 and words in json.loads(refused.value.read())["error"]
    state = daemon.state()
    assert state["door"] == "closed" and state["lock"] == "locked"
    # The cabinet's own page (same origin) and tools (no Origin) are let in.
    port = daemon.url.rsplit(":", 1)[1]
    ok = urllib.request.Request(daemon.url + "/api/speak", method="POST",
                                data=b'{"message": "scan_short", "lang": "en"}',
                                headers={"Origin": f"http://127.0.0.1:{port}",
                                         "Content-Type": "application/json"})
    with urllib.request.urlopen(ok, timeout=10) as reply:
        assert reply.status == 200


def test_idle_connections_are_capped_and_timed_out(daemon):
    """Issue 15 #7: 1 039 idle connections under systemd's limit of 1 024 open files made
    /api/state time out and the thermometer fault with "Too many open files". Now a connection
    past the cap is closed at once, idle ones are closed after IDLE_SECONDS, and the daemon's own
    files stay openable."""
    import socket
    from cabinet.ui.server import IDLE_SECONDS, MAX_CONNECTIONS
    host, port = daemon.url.split("//", 1)[1].split(":")
    held = []
    try:
        for _ in range(MAX_CONNECTIONS + 60):
            s = socket.create_connection((host, int(port)), timeout=5)
            held.append(s)
        time.sleep(1.0)
        closed = 0
        for s in held:
            s.setblocking(False)
            try:
                closed += s.recv(1) == b""      # closed by the server: end of stream
            except BlockingIOError:
                pass                            # still open, idle
        assert closed >= 60, f"only {closed} of the connections past the cap were closed"
        state = wait_for(lambda: _state_or_none(daemon), timeout=IDLE_SECONDS + 15,
                         what="/api/state once the idle connections timed out")
        assert "thermometer" not in state["faults"] and state["lock"] == "locked"
    finally:
        for s in held:
            s.close()


def _state_or_none(daemon):
    try:
        return daemon.state()
    except OSError:
        return None


def test_session_end_through_the_cli(daemon):
    from cabinet.cli import technician_main
    import contextlib
    import io
    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as refused:
        technician_main(["session", "end", "--technician", "dawa", "--url", daemon.url])
    assert "no session is open" in str(refused.value)
    wait_for(lambda: all(s["stable"] for s in daemon.state()["shelves"]), timeout=20)
    assert daemon.post("/sim/authorise", {"subject": "acct-1"})[0] == 200
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert technician_main(["session", "end", "--technician", "dawa",
                                "--url", daemon.url]) == 0
    assert "ended (it was authorised)" in out.getvalue()
    assert daemon.state()["session"] is None and daemon.state()["lock"] == "locked"


def test_any_json_on_the_local_api_is_answered_and_never_moves_the_lock(daemon):
    """Issue 15: arbitrary JSON to every state-changing endpoint of the local API: always an
    answer (200, 400, 404 or 409 with a JSON error), never a dropped connection, and the lock
    stays locked (/api/selftest, which cycles the lock when asked, is left out)."""
    import urllib.error
    import urllib.request

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats()
                          | st.text(max_size=6),
                          lambda inner: st.lists(inner, max_size=3)
                          | st.dictionaries(st.sampled_from(
                              ["celsius", "shelf", "step", "grams", "message", "lang", "members",
                               "member_ids", "technician", "kind", "x"]), inner, max_size=4),
                          max_leaves=10)
    paths = st.sampled_from(["climate/setpoint", "calibrate", "speak", "faces/enrol",
                             "faces/delete", "food-safety/clear", "alarms/clear", "session/end",
                             "nothing-here"])

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(path=paths, body=values)
    def check(path, body):
        request = urllib.request.Request(daemon.url + "/api/" + path, method="POST",
                                         data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as reply:
                status, answer = reply.status, json.load(reply)
        except urllib.error.HTTPError as err:
            status, answer = err.code, json.load(err)
        assert status in (200, 400, 404, 409), (path, body, status, answer)
        assert status == 200 or answer["error"]
        assert daemon.state()["lock"] == "locked"
    check()
