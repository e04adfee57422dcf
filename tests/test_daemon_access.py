"""Access codes end to end: a code on the serial scanner opens the door once, even across a crash."""

from __future__ import annotations

import time

import pytest

from cabinet.access.codes import mint, read_private_key
from cabinet.access.qr_render import qr_image
from drivers.sim.camera import scene_png
from tools.daemon_process import CabinetProcess

from .conftest import wait_for

pytestmark = pytest.mark.slow


def _start(data):
    d = CabinetProcess(data_dir=data)
    d.wait_ready()
    wait_for(lambda: d.url)
    wait_for(lambda: (s := d.state())["door"] == "closed"
             and all(sh["stable"] for sh in s["shelves"]), timeout=20)
    return d


def _scan(d, token, what):
    """Send the code until the scanner's port is open and the daemon has read it."""
    before = (d.state()["last_scan"] or {}).get("at")
    return wait_for(lambda: d.post("/sim/scan", {"text": token})[0] == 200
                    and (s := d.state()["last_scan"]) and s["at"] != before and s,
                    timeout=10, what=what)


def test_scanned_code_opens_once_even_after_a_power_cut(tmp_path):
    data = tmp_path / "data"
    d = _start(data)
    try:
        key = read_private_key(data / "sim" / "access-signing-key")
        token = mint(key, key_id=0, audience="cabinet-0001", subject="acct-42", role="shopper",
                     issued_at=int(time.time()), lifetime_seconds=120)
        scan = _scan(d, token, "the code")
        assert scan["result"].startswith("opened session")
        state = d.state()
        assert state["lock"] == "unlocked" and state["session"]["method"] == "scanner"
        d.post("/sim/power")
        d.proc.wait(10)
    finally:
        d.kill()
    d = _start(data)
    try:
        time.sleep(3.5)  # past the repeat window: this is a second presentation
        scan = _scan(d, token, "the replay")
        assert scan["result"] == "refused: already_used"
        assert d.state()["lock"] == "locked"
        assert d.state()["last_refusal"]["reason"] == "already_used"
        expired = mint(key, key_id=0, audience="cabinet-0001", subject="acct-1", role="shopper",
                       issued_at=int(time.time()) - 600, lifetime_seconds=90)
        assert _scan(d, expired, "expired")["result"] == "refused: expired"
        other = mint(key, key_id=0, audience="cabinet-0002", subject="acct-1", role="shopper",
                     issued_at=int(time.time()), lifetime_seconds=90)
        assert _scan(d, other, "wrong cabinet")["result"] == "refused: wrong_cabinet"
        assert _scan(d, "hello", "garbage")["result"] == "refused: malformed"
        assert d.state()["lock"] == "locked"
    finally:
        d.kill()


def test_scanner_noise_does_not_cost_the_next_shopper_their_scan(tmp_path):
    """Issue 15 #11, as reported: `/sim/scan {"hex": "deadbeef41424344"}` (no line end), then a
    valid code, was refused as `unreadable: not UTF-8 at byte 2`."""
    data = tmp_path / "data"
    d = _start(data)
    try:
        _scan(d, "warm-up", "the scanner's port open")   # refused: malformed; the port is open
        assert d.post("/sim/scan", {"hex": "deadbeef41424344"})[0] == 200
        time.sleep(1.0)   # the shopper steps up
        key = read_private_key(data / "sim" / "access-signing-key")
        token = mint(key, key_id=0, audience="cabinet-0001", subject="acct-9", role="shopper",
                     issued_at=int(time.time()), lifetime_seconds=120)
        assert d.post("/sim/scan", {"text": token})[0] == 200
        wait_for(lambda: d.state()["lock"] == "unlocked", what="the door opened for the code")
    finally:
        d.kill()


def test_code_shown_to_the_camera_opens_once(tmp_path):
    data = tmp_path / "data"
    d = _start(data)
    try:
        key = read_private_key(data / "sim" / "access-signing-key")
        token = mint(key, key_id=0, audience="cabinet-0001", subject="acct-77", role="shopper",
                     issued_at=int(time.time()), lifetime_seconds=120)
        assert d.post("/sim/camera", raw=scene_png(qr_image(token)),
                      content_type="image/png")[0] == 200
        state = wait_for(lambda: (s := d.state())["session"] and s, timeout=10, what="session")
        assert state["session"]["method"] == "camera" and state["lock"] == "unlocked"
        time.sleep(4)  # the phone is still held up: one presentation, no "already used"
        assert d.state()["last_refusal"] is None
    finally:
        d.kill()


def test_phone_scan_remote_unlock(tmp_path):
    d = _start(tmp_path / "data")
    try:
        qr = d.state()["screen_qr"]
        assert qr["url"].startswith("https://backend.invalid/open/cabinet-0001?n=")
        nonce = qr["url"].split("?n=")[1]
        status, reply = d.post("/sim/remote_unlock", {"nonce": nonce, "subject": "acct-5"})
        assert status == 200 and d.state()["lock"] == "unlocked"
        assert d.state()["session"]["method"] == "phone"
        status, reply = d.post("/sim/remote_unlock", {"nonce": nonce, "subject": "acct-5"})
        assert status == 409 and reply["reason"] in ("stale_nonce", "busy")
        assert d.post("/sim/remote_unlock", {"nonce": "x" * 22, "subject": "a"})[1]["reason"] \
            == "stale_nonce"
    finally:
        d.kill()
