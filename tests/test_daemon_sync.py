"""The whole path, black-box: cabinetd --simulate syncing with the reference backend on loopback.
A phone scans the screen, the operator's backend sends remote_unlock with that nonce, the shopper
takes a bottle, the sale reaches the backend; every request and reply on the way is checked
against backend/openapi.json."""

from __future__ import annotations

import os

import pytest
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse

from tools.daemon_process import CabinetProcess

from .conftest import REPO, RunningBackend, wait_for


@pytest.fixture
def traffic():
    return []


def start_synced(tmp_path, traffic, extra_config: str = "", backend_kw: dict | None = None):
    """The reference backend on loopback (every exchange appended to `traffic`) and a simulated
    cabinet syncing with it."""
    backend = RunningBackend(f"sqlite://{tmp_path}/backend.db",
                             on_exchange=lambda req, rep: traffic.append((req, rep)),
                             **(backend_kw or {}))
    token = tmp_path / "device-token"
    token.write_text(backend.device_token)
    os.chmod(token, 0o600)
    config = tmp_path / "cabinet.toml"
    config.write_text(f"[sync]\nbackend_url = '{backend.url}'\ndevice_token_file = '{token}'\n"
                      "long_poll_seconds = 20\n" + extra_config)
    daemon = CabinetProcess("--config", str(config), data_dir=tmp_path / "data")
    daemon.wait_ready()
    wait_for(lambda: daemon.url, what="the daemon's URL")
    return backend, daemon


@pytest.fixture
def synced(tmp_path, traffic):
    backend, daemon = start_synced(tmp_path, traffic)
    yield backend, daemon
    assert daemon.terminate() == 0, "\n".join(daemon.log_lines[-20:])  # the sync threads stop cleanly
    backend.close()


def _idle(daemon):
    s = daemon.state()
    return s["session"] is None and all(sh["stable"] for sh in s["shelves"]) and s


def test_remote_unlock_sale_and_setpoint_through_the_backend(synced, traffic):
    backend, daemon = synced
    state = wait_for(lambda: _idle(daemon), timeout=15, what="idle, shelves stable")
    nonce = state["screen_qr"]["url"].split("?n=")[1]

    status, command = backend.operator("POST", "cabinets/cabinet-0001/commands",
                                       {"type": "remote_unlock",
                                        "args": {"nonce": nonce, "subject": "acct-phone-1"},
                                        "lifetime_seconds": 30})
    assert status == 201
    wait_for(lambda: daemon.state()["lock"] == "unlocked", timeout=5, what="the lock to open")
    daemon.post("/sim/door", {"state": "open"})
    daemon.post("/sim/shelf", {"shelf": 1, "take": {"water-550ml": 1}})
    daemon.post("/sim/door", {"state": "closed"})
    receipt = wait_for(lambda: daemon.state()["receipt"], timeout=15, what="the receipt")
    assert receipt["total_fen"] == 200

    def sale_arrived():
        _, sales = backend.operator("GET", "sales?cabinet_id=cabinet-0001")
        return sales["records"]
    (sale,) = wait_for(sale_arrived, timeout=15, what="the sale at the backend")
    assert sale["body"]["lines"][0]["sku"] == "water-550ml"
    assert sale["body"]["authorisation"]["subject"] == "acct-phone-1"
    done = wait_for(lambda: (c := backend.operator("GET", f"commands/{command['command_id']}")[1])
                    ["status"] != "issued" and c, timeout=10, what="the command's result")
    assert done["status"] == "done" and done["result"]["session_id"] == sale["body"]["session_id"]

    # The same nonce again: refused, the door stays shut, the reason comes back.
    status, again = backend.operator("POST", "cabinets/cabinet-0001/commands",
                                     {"type": "remote_unlock",
                                      "args": {"nonce": nonce, "subject": "acct-phone-2"}})
    refused = wait_for(lambda: (c := backend.operator("GET", f"commands/{again['command_id']}")[1])
                       ["status"] != "issued" and c, timeout=10, what="the refusal")
    assert refused["status"] == "rejected" and "stale_nonce" in refused["detail"]
    assert daemon.state()["lock"] == "locked"

    status, setpoint = backend.operator("POST", "cabinets/cabinet-0001/commands",
                                        {"type": "set_setpoint", "args": {"celsius": 3.5}})
    wait_for(lambda: daemon.state()["climate"]["setpoint_celsius"] == 3.5, timeout=5,
             what="the new setpoint")
    status, cabinets = backend.operator("GET", "cabinets")
    (cab,) = cabinets["cabinets"]
    assert cab["last_seen_at"] and cab["last_seq"] >= 3
    assert daemon.state()["sync"]["last_success_at"] is not None
    status, code = backend.operator("POST", "access-codes",
                                    {"audience": "cabinet-0001", "subject": "acct-9"})
    assert status == 422 and "signing key" in code["error"]  # this backend was given none

    _check_against_openapi(traffic)


SYNC_PATHS = {("POST", "/v1/cabinets/cabinet-0001/records"),
              ("GET", "/v1/cabinets/cabinet-0001/commands"),
              ("POST", "/v1/operator/cabinets/cabinet-0001/commands"),
              ("GET", "/v1/operator/sales"), ("GET", "/v1/operator/cabinets"),
              ("POST", "/v1/operator/access-codes")}


def _check_against_openapi(traffic, expected=SYNC_PATHS):
    api = OpenAPI.from_file_path(str(REPO / "backend" / "openapi.json"))
    seen = set()
    for req, rep in traffic:
        request = MockRequest("http://127.0.0.1:8000", req["method"].lower(), req["path"],
                              args={k: v[0] for k, v in req["query"].items()},
                              headers=req["headers"], data=req["body"] or None,
                              content_type="application/json")
        response = MockResponse(rep["body"], status_code=rep["status"])
        api.validate_request(request)
        api.validate_response(request, response)
        seen.add((req["method"], req["path"]))
    assert expected <= seen, seen
