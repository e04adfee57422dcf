"""Checkout end to end: the daemon as a process, shopped through its HTTP surface."""

from __future__ import annotations

import contextlib
import time

import pytest

from tools.daemon_process import CabinetProcess

from .conftest import wait_for

pytestmark = pytest.mark.slow


def _settled(d):
    return wait_for(lambda: (s := d.state())["door"] == "closed"
                    and all(sh["stable"] for sh in s["shelves"]) and s, timeout=20,
                    what="stable shelves")


def _receipt(d, session_id):
    return wait_for(lambda: (r := d.state()["receipt"]) and r["session_id"] == session_id and r,
                    timeout=20, what="the receipt")


@contextlib.contextmanager
def configured(tmp_path, config_text: str):
    """A daemon started with a config file of `config_text`, ready with stable shelves."""
    config = tmp_path / "c.toml"
    config.write_text(config_text)
    d = CabinetProcess("--config", str(config), data_dir=tmp_path / "data")
    try:
        d.wait_ready()
        wait_for(lambda: d.url)
        _settled(d)
        yield d
    finally:
        d.kill()


@pytest.fixture
def daemon(tmp_path):
    d = CabinetProcess(data_dir=tmp_path / "data")
    d.wait_ready()
    wait_for(lambda: d.url)
    _settled(d)
    yield d
    d.kill()


def test_two_of_a_one_of_b_from_a_mixed_shelf_and_one_of_c(daemon):
    status, reply = daemon.post("/sim/authorise", {"subject": "acct-42"})
    assert status == 200
    session_id = reply["session_id"]
    assert daemon.state()["lock"] == "unlocked"
    daemon.post("/sim/door", {"state": "open"})
    daemon.post("/sim/shelf", {"shelf": 1, "take": {"water-550ml": 2, "yak-milk-250ml": 1}})
    daemon.post("/sim/shelf", {"shelf": 3, "take": {"steamed-bun": 1}})
    time.sleep(1.0)  # the shopper looks at what they took; the shelves swing for about 1 s
    daemon.post("/sim/door", {"state": "closed"})
    closed = time.monotonic()
    receipt = _receipt(daemon, session_id)
    print(f"door closed -> receipt in /api/state: {time.monotonic() - closed:.2f} s")
    assert {(l["sku"], l["count"], l["amount_fen"]) for l in receipt["lines"]} == {
        ("water-550ml", 2, 400), ("yak-milk-250ml", 1, 600), ("steamed-bun", 1, 250)}
    assert receipt["total_fen"] == 1250 and receipt["flags"] == []
    state = daemon.state()
    assert state["lock"] == "locked" and state["session"] is None
    stock = {p["sku"]: p["stock"] for p in state["products"]}
    assert stock["water-550ml"] == 10 and stock["yak-milk-250ml"] == 9
    assert state["outbox"]["pending"] >= 1


def test_authorisation_refused_while_a_shelf_is_in_fault(daemon):
    daemon.post("/sim/unplug", {"device": "shelf_peer"})
    wait_for(lambda: daemon.state()["faults"], timeout=15)
    status, reply = daemon.post("/sim/authorise", {"subject": "acct-42"})
    assert status == 409 and reply["reason"] == "shelf_fault"
    assert daemon.state()["lock"] == "locked"
    assert daemon.state()["last_refusal"]["reason"] == "shelf_fault"


def test_unlock_timeout_and_bad_authorisations(tmp_path):
    with configured(tmp_path, "[checkout]\nunlock_timeout_seconds = 3\n") as d:
        assert d.post("/sim/authorise", {"subject": "x", "role": "king"})[0] == 400
        assert d.post("/sim/authorise", {"subject": "x", "restock": True})[0] == 400
        assert d.post("/sim/authorise", {})[0] == 400
        status, reply = d.post("/sim/authorise", {"subject": "acct-1"})
        assert status == 200
        assert d.post("/sim/authorise", {"subject": "acct-2"})[1]["reason"] == "busy"
        wait_for(lambda: d.state()["lock"] == "locked" and d.state()["session"] is None,
                 timeout=10, what="relock after the unlock timeout")
        assert d.state()["alarms"] == []


AMBIGUOUS = """
version = "near-equal"
[[product]]
sku = "a"
name_zh = "甲"
name_bo = "ཀ"
name_en = "A"
price_fen = 100
unit_grams = 250.0
tolerance_grams = 2.0
[[product]]
sku = "b"
name_zh = "乙"
name_bo = "ཁ"
name_en = "B"
price_fen = 900
unit_grams = 252.0
tolerance_grams = 2.0
[[shelf]]
id = 1
stock = { "a" = 5, "b" = 5 }
"""


def test_near_equal_products_make_a_flagged_sale(tmp_path):
    planogram = tmp_path / "planogram.toml"
    planogram.write_text(AMBIGUOUS)
    with configured(tmp_path, f'[checkout]\nplanogram_file = "{planogram}"\n') as d:
        session_id = d.post("/sim/authorise", {"subject": "acct-9"})[1]["session_id"]
        d.post("/sim/door", {"state": "open"})
        d.post("/sim/shelf", {"shelf": 1, "take": {"a": 1}})
        time.sleep(1.0)
        d.post("/sim/door", {"state": "closed"})
        receipt = _receipt(d, session_id)
        assert receipt["lines"] == [] and receipt["total_fen"] == 0
        assert receipt["flags"] == ["ambiguous"]


def test_planogram_api(daemon):
    status, planogram = daemon.request("GET", "/api/planogram")
    assert status == 200 and planogram["version"] == "example-1"
    planogram["version"] = "example-2"
    planogram["shelves"][3]["stock"]["tissue-pack"] = 29
    import json
    status, reply = daemon.request("PUT", "/api/planogram", raw=json.dumps(planogram).encode())
    assert status == 200 and reply["version"] == "example-2"
    assert {p["sku"]: p["stock"] for p in daemon.state()["products"]}["tissue-pack"] == 29
    planogram["products"][0]["price_fen"] = -5
    status, reply = daemon.request("PUT", "/api/planogram", raw=json.dumps(planogram).encode())
    assert status == 400 and "price_fen" in reply["error"]
    planogram["products"][0]["price_fen"] = 300
    # Issue 15 #1 as reported: ~1 000 more products on shelf 1 bricked the next sale.
    crowded = json.loads(json.dumps(planogram))
    for i in range(1000):
        crowded["products"].append({"sku": f"x-{i}", "name_zh": "额外", "name_bo": "ཀ",
                                    "name_en": "X", "price_fen": 1, "unit_grams": 1000 + i,
                                    "tolerance_grams": 1})
        crowded["shelves"][0]["stock"][f"x-{i}"] = 0
    status, reply = daemon.request("PUT", "/api/planogram", raw=json.dumps(crowded).encode())
    assert status == 400 and "at most 24 products on one shelf" in reply["error"]
    daemon.post("/sim/authorise", {"subject": "acct-1"})
    status, reply = daemon.request("PUT", "/api/planogram", raw=b'{"product": []}')
    assert status == 400
    planogram["products"][0]["price_fen"] = 300
    status, reply = daemon.request("PUT", "/api/planogram", raw=json.dumps(planogram).encode())
    assert status == 409 and reply["reason"] == "busy"


def test_cabinet_planogram_load(daemon, tmp_path):
    import subprocess
    import sys
    from .conftest import REPO
    text = (REPO / "config" / "planogram.toml").read_text().replace('"example-1"', '"shop-3"')
    good = tmp_path / "p.toml"
    good.write_text(text)
    cli = [sys.executable, "-c", "from cabinet.cli import technician_main; "
           "raise SystemExit(technician_main())", "planogram", "load", "--url", daemon.url]
    result = subprocess.run(cli + [str(good)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "'shop-3' loaded: 6 products on 4 shelves" in result.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace("price_fen = 200", "price_fen = -200"))
    result = subprocess.run(cli + [str(bad)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "product[0].price_fen = -200" in result.stderr


def test_lock_feedback_disagreeing_is_a_lock_fault(tmp_path):
    with configured(tmp_path, "[lock]\nfeedback = true\nfeedback_seconds = 0.5\n") as d:
        wait_for(lambda: d.state()["lock_sensed"] == "locked", what="feedback")
        # An unlock whose door never opens is not a fault: the feedback follows the command.
        session = d.post("/sim/authorise", {"subject": "acct-1"})[1]
        wait_for(lambda: d.state()["lock_sensed"] == "unlocked", what="feedback follows")
        assert d.state()["alarms"] == []
        d.post("/sim/lock", {"jammed": "open"})   # the bolt stays out
        d.post("/sim/door", {"state": "open"})
        d.post("/sim/door", {"state": "closed"})
        alarm = wait_for(lambda: [a for a in d.state()["alarms"] if a["kind"] == "lock_fault"],
                         timeout=10, what="lock_fault")[0]
        assert "commanded locked but its feedback says open" in alarm["detail"]
        d.post("/sim/lock", {"jammed": None})
        wait_for(lambda: not [a for a in d.state()["alarms"] if a["kind"] == "lock_fault"],
                 timeout=10, what="lock_fault cleared")
        assert session["session_id"]
        assert d.post("/sim/lock", {"jammed": "ajar"})[0] == 400


def test_climate_endpoints_and_cli(daemon):
    import subprocess
    import sys
    cli = [sys.executable, "-c", "from cabinet.cli import technician_main; "
           "raise SystemExit(technician_main())"]
    result = subprocess.run(cli + ["setpoint", "3.5", "--url", daemon.url], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0 and daemon.state()["climate"]["setpoint_celsius"] == 3.5
    result = subprocess.run(cli + ["setpoint", "9", "--url", daemon.url], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode != 0 and "food-safety limit" in result.stderr
    result = subprocess.run(cli + ["lockout", "clear", "--technician", "tech-7", "--url",
                                   daemon.url], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "no lockout" in result.stdout
    assert daemon.post("/api/food-safety/clear", {"technician": " "})[0] == 400
    result = subprocess.run(cli + ["status", "--url", daemon.url], capture_output=True,
                            text=True, timeout=60)
    assert "setpoint 3.5 °C" in result.stdout
