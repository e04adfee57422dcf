"""The operations table (cabinet/operations.py): one statement of each operation, the same answer
whichever transport asked (a backend command, the local HTTP API, the `cabinet` CLI)."""

from __future__ import annotations

import json

import re
import subprocess
import sys

import pytest

from cabinet import operations

from .conftest import REPO, wait_for
from .test_daemon_sync import start_synced


def _fate(backend, command_id):
    return wait_for(lambda: (c := backend.operator("GET", f"commands/{command_id}")[1])
                    ["status"] != "issued" and c, timeout=15, what="the command's result")


@pytest.mark.parametrize("op, args, cli, reason", [
    # An argument out of range: the climate's one rule, the same words in all three.
    ("set_setpoint", {"celsius": 99}, ["setpoint", "99"],
     "setpoint 99 °C: must be -5 to 15 °C and keep the band below the food-safety limit (5 °C)"),
    # A refusal from the controller: its words, the same in all three.
    ("end_session", {"by": "dawa"}, ["session", "end", "--technician", "dawa"],
     "no session is open"),
])
def test_the_same_bad_request_gets_the_same_reason_from_every_transport(tmp_path, op, args, cli,
                                                                        reason):
    backend, daemon = start_synced(tmp_path, [])
    try:
        wait_for(lambda: daemon.state()["session"] is None, timeout=15, what="idle")
        status, command = backend.operator("POST", "cabinets/cabinet-0001/commands",
                                           {"type": op, "args": args})
        assert status == 201
        by_command = _fate(backend, command["command_id"])
        assert by_command["status"] == "rejected"
        route = operations.OPERATIONS[op].route
        body = {{"by": "technician"}.get(k, k): v for k, v in args.items()}
        status, by_http = daemon.post(f"/api/{route}", body)
        assert status in (400, 409)
        ran = subprocess.run([sys.executable, "-c", "from cabinet.cli import technician_main; "
                              "raise SystemExit(technician_main())", *cli, "--url", daemon.url],
                             capture_output=True, text=True, cwd=REPO, timeout=30)
        assert ran.returncode == 1
        by_cli = ran.stderr.strip().removeprefix("cabinet: the daemon refused: ")
        assert by_command["detail"].endswith(reason), by_command
        assert by_http["error"] == by_cli == reason, (by_http, ran.stderr)
    finally:
        daemon.terminate()
        backend.close()


def test_every_backend_operation_is_in_the_protocol_and_every_route_in_the_docs():
    """The table is the one statement: the OpenAPI document's command types and the local API's
    documentation follow it."""
    openapi = json.loads((REPO / "backend" / "openapi.json").read_text())
    enum = openapi["components"]["schemas"]["CommandType"]["enum"]
    assert sorted(enum) == sorted(operations.BACKEND_TYPES)
    sync_doc = (REPO / "docs" / "sync.md").read_text()
    for name in operations.BACKEND_TYPES:
        assert f"| {name} |" in sync_doc, f"{name} is not in docs/sync.md's command table"
    api_doc = (REPO / "docs" / "http-api.md").read_text()
    for route in operations.ROUTES:
        assert f"POST /api/{route}" in api_doc, f"POST /api/{route} is not in docs/http-api.md"


def test_arguments_are_checked_by_the_schema_with_the_transports_names():
    op = operations.OPERATIONS["clear_alarm"]
    with pytest.raises(operations.OperationError) as missing:
        operations.checked(op, {"kind": "forced_open"}, op.renamed)
    assert str(missing.value) == "technician is required"   # the local API's name for it
    with pytest.raises(operations.OperationError) as as_command:
        operations.checked(op, {"kind": "forced_open"})
    assert str(as_command.value) == "by is required"        # a command's
    for bad in (9e999, float("nan"), 10 ** 400, True, "3"):
        with pytest.raises(operations.OperationError) as refused:
            operations.checked(operations.OPERATIONS["set_setpoint"], {"celsius": bad})
        assert refused.value.kind == "invalid" and "celsius must be a" in str(refused.value)
    assert operations.checked(operations.OPERATIONS["set_setpoint"], {"celsius": 3}) == \
        {"celsius": 3}


def test_an_empty_playlist_or_id_list_is_an_answer_not_a_mistake():
    """An empty ads playlist clears the ads (and frees the card); enrolling nobody is a mistake."""
    ops = operations.OPERATIONS
    assert operations.checked(ops["set_ads"], {"playlist": []}) == {"playlist": []}
    assert operations.checked(ops["delete_faces"], {"member_ids": []}) == {"member_ids": []}
    with pytest.raises(operations.OperationError, match="members must be a non-empty list"):
        operations.checked(ops["enroll_faces"], {"members": []})


def test_a_malformed_argument_gets_the_schemas_words():
    with pytest.raises(operations.OperationError, match="celsius must be a finite number"):
        operations.checked(operations.OPERATIONS["set_setpoint"], {"celsius": "cold"})
