"""The operators' backend (backend/) from outside, over real HTTP on loopback, on SQLite and on a
real PostgreSQL: every attack of issue 17 gets a 4xx or a bounded, correct answer; roles hold;
every command and planogram change is in the audit log with its author; the committed OpenAPI
document is the generated one; the migrated schema is the code's."""

from __future__ import annotations

import json
import socket
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest
import requests

from .conftest import REPO, RunningBackend, wait_for


def _record(seq: int, kind: str = "sale", body=None, **extra) -> dict:
    body = body if body is not None else {
        "session_id": str(uuid.uuid4()), "total_fen": 300, "flags": [],
        "lines": [{"sku": "water", "count": 1, "unit_price_fen": 300, "amount_fen": 300}]}
    return {"record_id": str(uuid.uuid4()), "seq": seq, "kind": kind,
            "cabinet_id": "cabinet-0001", "software_version": "t",
            "created_at": "2026-11-30T08:15:00.000Z", "body": body, **extra}


def _post_raw(backend, path: str, data: bytes, token: str | None = None) -> requests.Response:
    return requests.post(backend.url + path, data=data, timeout=10, headers={
        "Authorization": f"Bearer {token or backend.device_token}",
        "Content-Type": "application/json"})


def _batch(backend, records, **extra) -> requests.Response:
    return _post_raw(backend, "/v1/cabinets/cabinet-0001/records", json.dumps(
        {"cabinet_id": "cabinet-0001", "records": records, **extra}).encode())


def _raw(url: str, data: bytes, timeout: float = 10) -> bytes:
    host, port = url.split("//", 1)[1].split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(data)
        reply = b""
        try:
            while chunk := s.recv(65536):
                reply += chunk
        except ConnectionResetError:
            pass
    return reply


# --- attacks (issue 17's list) ------------------------------------------------------------------

def test_a_negative_content_length_is_refused_unread(tmp_path):
    backend = RunningBackend(f"sqlite://{tmp_path}/backend.db")
    try:
        reply = _raw(backend.url, b"POST /v1/enrol HTTP/1.1\r\nHost: x\r\nContent-Type: "
                     b"application/json\r\nContent-Length: -1\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 400"), reply[:200]
        # Over the limit: refused on the header, before a byte of the body (none is sent).
        reply = _raw(backend.url, b"POST /v1/enrol HTTP/1.1\r\nHost: x\r\nContent-Type: "
                     b"application/json\r\nContent-Length: 999999999999\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 413") and b"body over" in reply
    finally:
        backend.close()


def test_nan_infinity_and_out_of_range_numbers_are_422_naming_the_field(backend):
    good = _record(1)
    bad = _record(2, "telemetry", {"celsius": 4.0})
    raw = json.dumps({"cabinet_id": "cabinet-0001", "records": [good, bad]}).replace(
        '"celsius": 4.0', '"celsius": NaN').encode()
    reply = _post_raw(backend, "/v1/cabinets/cabinet-0001/records", raw)
    assert reply.status_code == 422 and "body.records.1.body.celsius" in reply.json()["error"]
    # Numbers that overflow a float are Infinity too; an integer Python will not read is a 400.
    reply = _post_raw(backend, "/v1/cabinets/cabinet-0001/records",
                      raw.replace(b"NaN", b"1" * 5000))
    assert reply.status_code == 400 and "digits" in reply.json()["error"]
    for number in ("1e999", "-1.5E+400", "1" + "0" * 400 + ".0"):
        reply = _post_raw(backend, "/v1/cabinets/cabinet-0001/records",
                          raw.replace(b"NaN", number.encode()))
        assert reply.status_code == 422 and "records.1.body.celsius" in reply.json()["error"]
    for seq in (2 ** 63, 0, -1, True, "7"):
        reply = _batch(backend, [_record(1) | {"seq": seq}])
        assert reply.status_code == 422 and "records.0.seq" in reply.json()["error"], seq
    reply = _batch(backend, [_record(1)], max_command_bytes=2 ** 64)
    assert reply.status_code == 422 and "max_command_bytes" in reply.json()["error"]
    assert backend.storage.fleet.counts("cabinet-0001") == {}  # nothing of those was stored
    status, fleet = backend.operator("GET", "cabinets")
    assert status == 200 and fleet["cabinets"][0]["last_seq"] == 0
    # The operator side too: an Infinity lifetime is refused, not stored.
    reply = requests.post(backend.url + "/v1/operator/cabinets/cabinet-0001/commands",
                          data=b'{"type": "restart", "lifetime_seconds": Infinity}', timeout=10,
                          headers={"Authorization": f"Bearer {backend.operator_token}",
                                   "Content-Type": "application/json"})
    assert reply.status_code == 422 and "lifetime_seconds" in reply.json()["error"]


def test_a_sale_with_a_bad_total_is_rejected_alone_and_last_seq_does_not_move(backend):
    negative = _record(3)
    negative["body"]["total_fen"] = -300
    reply = _batch(backend, [_record(1), _record(2, "bogus"), negative])
    assert reply.status_code == 200
    ack = reply.json()
    assert ack["stored_through"] == 3
    reasons = {r["seq"]: r["reason"] for r in ack["rejected"]}
    assert set(reasons) == {2, 3}
    assert "unknown kind 'bogus'" in reasons[2] and "total_fen" in reasons[3]
    assert backend.storage.fleet.counts("cabinet-0001") == {"sale": 1}
    status, fleet = backend.operator("GET", "cabinets")
    assert fleet["cabinets"][0]["last_seq"] == 1  # rejected records never raise it
    # A NUL in a string: PostgreSQL's jsonb cannot hold it; rejected, not a 500 for ever.
    reply = _batch(backend, [_record(4, "notice", {"text": "a\x00b"})])
    assert reply.status_code == 200 and "NUL" in reply.json()["rejected"][0]["reason"]


def test_tokens_wait_and_deep_json_never_give_500(backend):
    for token in ("ключ", "密钥", "\u00ff" * 40):
        reply = requests.get(backend.url + "/v1/operator/cabinets", timeout=10,
                             headers={"Authorization": f"Bearer {token}".encode()})
        assert reply.status_code == 401, token
    for wait in ("inf", "nan", "-1", "121", "1e400"):
        reply = requests.get(backend.url + f"/v1/cabinets/cabinet-0001/commands?wait={wait}",
                             headers={"Authorization": f"Bearer {backend.device_token}"},
                             timeout=10)
        assert reply.status_code == 422 and "wait" in reply.json()["error"], wait
    reply = requests.get(backend.url + "/v1/cabinets/cabinet-0001/commands?after="
                         + str(2 ** 63), timeout=10,
                         headers={"Authorization": f"Bearer {backend.device_token}"})
    assert reply.status_code == 422 and "after" in reply.json()["error"]
    deep = b'{"cabinet_id": "cabinet-0001", "records": ' + b"[" * 20000 + b"]" * 20000 + b"}"
    reply = _post_raw(backend, "/v1/cabinets/cabinet-0001/records", deep)
    assert reply.status_code == 400 and "nested too deep" in reply.json()["error"]
    # Starlette's own refusals speak the service's error shape too.
    reply = requests.get(backend.url + "/v1/no-such-thing", timeout=10)
    assert reply.status_code == 404 and "error" in reply.json()
    reply = requests.delete(backend.url + "/v1/cabinets/cabinet-0001/records", timeout=10)
    assert reply.status_code == 405 and "error" in reply.json()


def test_strings_postgresql_cannot_hold_are_refused_one_record_at_a_time(backend):
    """A NUL character or half a surrogate pair (JSON's "\\ud800" reads as one): jsonb holds
    neither, so each such record is rejected alone with why; its neighbours are stored."""
    good = _record(1)
    nul = _record(2, "telemetry", {"note": "a\u0000b"})
    half = _record(3, "telemetry", {"note": "\ud800"})
    text = _record(4, "telemetry", {"note": "backslash-u0000 as text: \\u0000"})
    reply = _batch(backend, [good, nul, half, text])
    assert reply.status_code == 200
    reasons = {r["seq"]: r["reason"] for r in reply.json()["rejected"]}
    assert set(reasons) == {2, 3} and "NUL" in reasons[2] and "surrogate" in reasons[3]
    assert backend.storage.fleet.counts("cabinet-0001") == {"sale": 1, "telemetry": 1}
    stored = backend.storage.fleet.records("telemetry", "cabinet-0001", 0, 10)
    assert stored[0]["body"]["note"] == "backslash-u0000 as text: \\u0000"


@pytest.mark.parametrize("protocol", ["GuardedHttpTools", "GuardedH11"])
def test_a_connection_that_sends_no_request_is_closed(tmp_path, monkeypatch, protocol):
    """With either of uvicorn's parsers (httptools when installed, h11 where it is not)."""
    from backend import server

    monkeypatch.setattr(server, "HEADERS_SECONDS", 1)
    monkeypatch.setattr(server, "PROTOCOL", getattr(server, protocol))
    backend = RunningBackend(f"sqlite://{tmp_path}/backend.db")
    try:
        with socket.create_connection(("127.0.0.1", int(backend.url.rsplit(":", 1)[1])),
                                      timeout=15) as idle:
            idle.sendall(b"GET /v1/operator/cabinets HTTP/1.1\r\nHost: x\r\n")  # never ends
            assert idle.recv(100) == b"", "closed by the server, with nothing said"
    finally:
        backend.close()


def test_cabinet_a_token_never_touches_cabinet_b(backend):
    other = backend.storage.fleet.add_cabinet("cabinet-0002")
    for path in ("/v1/cabinets/cabinet-0002/records",):
        reply = _post_raw(backend, path, json.dumps(
            {"cabinet_id": "cabinet-0002", "records": [_record(1) | {
                "cabinet_id": "cabinet-0002"}]}).encode())
        assert reply.status_code == 401
    reply = requests.get(backend.url + "/v1/cabinets/cabinet-0002/commands", timeout=10,
                         headers={"Authorization": f"Bearer {backend.device_token}"})
    assert reply.status_code == 401
    # B's own token, but A in the body: refused, and nothing of A's is touched.
    reply = _post_raw(backend, "/v1/cabinets/cabinet-0002/records", json.dumps(
        {"cabinet_id": "cabinet-0001", "records": [_record(1)]}).encode(), token=other)
    assert reply.status_code == 422 and "cabinet_id" in reply.json()["error"]
    reply = _post_raw(backend, "/v1/cabinets/cabinet-0002/records", json.dumps(
        {"cabinet_id": "cabinet-0002", "records": [_record(1)]}).encode(), token=other)
    assert reply.json()["rejected"][0]["reason"].startswith("cabinet_id 'cabinet-0001'")
    assert backend.storage.fleet.counts("cabinet-0001") == {}
    # A device token is not an operator's.
    status, _ = backend.operator("GET", "cabinets", token=backend.device_token)
    assert status == 401


def test_commands_too_large_for_any_reply_are_refused_when_issued(backend):
    status, reply = backend.operator("POST", "cabinets/cabinet-0001/commands", {
        "type": "set_ads", "args": {"pad": "x" * (7 * 1024 * 1024)}})
    assert status == 413 and "at most" in reply["error"]


# --- people and roles ---------------------------------------------------------------------------

def test_roles_viewer_reads_technician_services_operator_runs_admin_manages(backend):
    viewer, technician, operator = (backend.token_for(r) for r in
                                    ("viewer", "technician", "operator"))
    assert backend.operator("GET", "cabinets", token=viewer)[0] == 200
    status, refused = backend.operator("POST", "cabinets/cabinet-0001/commands",
                                       {"type": "restart"}, token=viewer)
    assert status == 403 and "viewer may not issue restart" in refused["error"]
    assert backend.operator("POST", "cabinets/cabinet-0001/commands",
                            {"type": "clear_lockout", "args": {"by": "t"}},
                            token=technician)[0] == 201
    status, refused = backend.operator("POST", "cabinets/cabinet-0001/commands",
                                       {"type": "set_setpoint", "args": {"celsius": 4}},
                                       token=technician)
    assert status == 403
    assert backend.operator("POST", "cabinets/cabinet-0001/commands",
                            {"type": "set_setpoint", "args": {"celsius": 4}},
                            token=operator)[0] == 201
    status, refused = backend.operator("POST", "users", {
        "username": "mallory", "role": "admin", "password": "0123456789abc"}, token=operator)
    assert status == 403 and "people" in refused["error"]
    assert backend.operator("GET", "audit", token=viewer)[0] == 403
    status, made = backend.operator("POST", "users", {
        "username": "dolkar", "role": "operator", "password": "long enough pw"})
    assert status == 201 and made["role"] == "operator"
    assert backend.operator("POST", "users", {"username": "dolkar", "role": "viewer",
                                              "password": "long enough pw"})[0] == 409


def test_login_is_rate_limited_and_a_disabled_account_loses_its_tokens(backend):
    def login(password):
        return requests.post(backend.url + "/v1/auth/login", timeout=10,
                             json={"username": "admin", "password": password})
    good = login("correct horse battery")
    assert good.status_code == 200 and good.json()["kind"] == "session"
    session = good.json()["token"]
    assert backend.operator("GET", "cabinets", token=session)[0] == 200
    for _ in range(5):
        assert login("wrong").status_code == 401
    locked = login("correct horse battery")  # even the right password, for the window
    assert locked.status_code == 429 and int(locked.headers["Retry-After"]) > 0
    assert requests.post(backend.url + "/v1/auth/login", json={
        "username": "nobody", "password": "x"}, timeout=10).status_code == 401
    # An admin disables a viewer: the viewer's API token stops at once.
    viewer = backend.token_for("viewer")
    name = [u for u in backend.storage.people.users() if u["role"] == "viewer"][0]["username"]
    assert backend.operator("PATCH", f"users/{name}", {"disabled": True})[0] == 200
    assert backend.operator("GET", "cabinets", token=viewer)[0] == 401


def test_every_command_and_planogram_change_is_audited_with_its_author(backend):
    import tomllib

    operator = backend.token_for("operator")
    planogram = {"planogram": tomllib.loads((REPO / "config" / "planogram.toml").read_text())}
    # Checked with the cabinet's own rules before it leaves: the mistake named now.
    broken = {"planogram": {**planogram["planogram"], "product": [
        {**planogram["planogram"]["product"][0], "price_fen": -5}]}}
    status, refused = backend.operator("POST", "cabinets/cabinet-0001/commands",
                                       {"type": "set_planogram", "args": broken}, token=operator)
    assert status == 422 and "price_fen = -5" in refused["error"], refused
    status, refused = backend.operator("POST", "cabinets/cabinet-0001/commands",
                                       {"type": "set_planogram", "args": {}}, token=operator)
    assert status == 422 and "must be a table" in refused["error"]
    status, command = backend.operator("POST", "cabinets/cabinet-0001/commands",
                                       {"type": "set_planogram", "args": planogram},
                                       token=operator)
    assert status == 201
    backend.operator("POST", "cabinets/cabinet-0001/commands",
                     {"type": "remote_unlock", "args": {"nonce": "n", "subject": "s"}})
    status, log = backend.operator("GET", "audit?cabinet_id=cabinet-0001")
    entries = {e["action"]: e for e in log["entries"]}
    assert entries["command:set_planogram"]["actor"].startswith("operator-")
    assert entries["command:set_planogram"]["detail"]["args"] == planogram
    assert entries["command:set_planogram"]["detail"]["command_id"] == command["command_id"]
    assert entries["command:remote_unlock"]["actor"] == "admin"
    status, state = backend.operator("GET", f"commands/{command['command_id']}")
    assert state["issued_by"].startswith("operator-") and state["status"] == "issued"


# --- the protocol document and the schema ------------------------------------------------------

def test_the_committed_openapi_document_is_the_generated_one():
    from backend.cli import openapi_document

    committed = (REPO / "backend" / "openapi.json").read_text()
    assert committed == openapi_document(), (
        "backend/openapi.json is stale: run `cabinet-backend openapi > backend/openapi.json`")


def test_the_migrated_schema_is_the_code_s(backend_db_url):
    import sqlalchemy as sa
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from backend.storage.engine import make_engine, migrate
    from backend.storage.schema import metadata

    migrate(backend_db_url)
    engine = make_engine(backend_db_url)
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), metadata)
        tables = set(sa.inspect(connection).get_table_names())
    engine.dispose()
    assert differences == [], differences
    assert {"records", "commands", "users", "audit", "sales_hourly"} <= tables


# --- rollups, retention, wake-ups ---------------------------------------------------------------

def test_hourly_rollups_count_new_records_once(backend):
    sale = _record(1)
    sale["body"]["lines"].append({"sku": "tea", "count": 2, "unit_price_fen": 350,
                                  "amount_fen": 700})
    sale["body"]["door_opened_at"] = "2026-11-30T08:14:50.000Z"
    readings = [_record(i, "telemetry", {"celsius": c}) for i, c in ((2, 3.0), (3, 5.5))]
    for _ in range(2):  # the same batch twice (a lost acknowledgement): counted once
        assert _batch(backend, [sale, *readings]).status_code == 200
    status, rollups = backend.operator("GET", "cabinets/cabinet-0001/rollups")
    by_sku = {r["sku"]: r for r in rollups["sales"]}
    assert by_sku["water"]["units"] == 1 and by_sku["tea"]["revenue_fen"] == 700
    assert by_sku["tea"]["hour"] == "2026-11-30T08:00:00.000Z"
    (hour,) = rollups["climate"]
    assert (hour["samples"], hour["celsius_min"], hour["celsius_max"], hour["celsius_mean"],
            hour["door_openings"]) == (2, 3.0, 5.5, 4.25, 1)


def test_retention_prunes_old_telemetry_and_keeps_sales(backend):
    old = _record(1, "telemetry", {"celsius": 4.0}) | {"created_at": "2020-01-01T00:00:00Z"}
    sale = _record(2) | {"created_at": "2020-01-01T00:00:00Z"}
    assert _batch(backend, [old, sale, _record(3, "telemetry", {"celsius": 4.0})]
                  ).status_code == 200
    assert backend.storage.fleet.prune_telemetry(400) == 1
    assert backend.storage.fleet.counts("cabinet-0001") == {"sale": 1, "telemetry": 1}


def test_a_command_issued_on_one_instance_wakes_a_long_poll_on_another(postgres, tmp_path):
    """Two services on one PostgreSQL: the long-poll waits on B, the command is issued through
    A, and LISTEN/NOTIFY carries the wake-up across."""
    import psycopg

    with psycopg.connect(postgres.url, autocommit=True) as db:
        db.execute("DROP DATABASE IF EXISTS two_instances")
        db.execute("CREATE DATABASE two_instances")
    url = postgres.url.rsplit("/", 1)[0] + "/two_instances"
    a = RunningBackend(url)
    from backend.app import create_app
    from backend.server import ThreadedServer
    from backend.storage import Storage

    storage_b = Storage(url)
    b = ThreadedServer(create_app(storage_b)).start()
    try:
        wait_for(lambda: b.app.state.wakeups.reliable, timeout=10, what="B listening")
        got = {}

        def poll():
            reply = requests.get(b.url + "/v1/cabinets/cabinet-0001/commands?wait=30",
                                 headers={"Authorization": f"Bearer {a.device_token}"},
                                 timeout=40)
            got["at"], got["reply"] = time.monotonic(), reply.json()
        import threading
        poller = threading.Thread(target=poll)
        poller.start()
        wait_for(lambda: b.app.state.wakeups.waiting == 1, timeout=10, what="B's long-poll")
        issued = time.monotonic()
        status, command = a.operator("POST", "cabinets/cabinet-0001/commands",
                                     {"type": "restart"})
        poller.join(timeout=35)
        assert [c["command_id"] for c in got["reply"]["commands"]] == [command["command_id"]]
        print(f"issued on A -> answered on B: {(got['at'] - issued) * 1000:.0f} ms")
        assert got["at"] - issued < 25, "woken by the notification, not by the long-poll's end"
    finally:
        b.close()
        storage_b.close()
        a.close()


# --- the server: replies leave at once; stopping answers the long-polls -------------------------

def test_every_connection_has_nagle_off(backend):
    """uvicorn writes a reply's head and body separately; with Nagle on, a keep-alive client got
    the body a delayed ACK later (40 ms each). asyncio turns Nagle off only on sockets made with
    IPPROTO_TCP, which a socket bound beforehand (socket.create_server, systemd) is not."""
    with requests.Session() as session:
        session.get(backend.url + "/v1/cabinets/cabinet-0001/commands", timeout=10,
                    headers={"Authorization": f"Bearer {backend.device_token}"})
        connections = list(backend.server.server.server_state.connections)
        assert connections, "the keep-alive connection is still open"
        for protocol in connections:
            sock = protocol.transport.get_extra_info("socket")
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


@pytest.mark.parametrize("workers", [1, 2])
def test_stopping_the_service_answers_its_long_polls(postgres, workers):
    """SIGTERM to `cabinet-backend serve` (one worker, or uvicorn's supervisor of two): every
    long-poll in progress gets its empty answer at once, none is cut, nothing is logged as
    failed, and the service exits."""
    import signal
    import subprocess
    import sys
    import threading

    import psycopg

    name = f"stopping_{workers}"
    with psycopg.connect(postgres.url, autocommit=True) as db:
        db.execute(f"DROP DATABASE IF EXISTS {name}")
        db.execute(f"CREATE DATABASE {name}")
    url = postgres.url.rsplit("/", 1)[0] + "/" + name

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "backend", "--db", url, *args], cwd=REPO,
                              capture_output=True, text=True, check=True).stdout.strip()
    cli("migrate")
    tokens = {c: cli("add-cabinet", c) for c in ("cabinet-0001", "cabinet-0002")}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "backend", "--db", url, "serve", "--port",
                               str(port), "--workers", str(workers)], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        base = server.stdout.readline().split()[-1]
        answers = {}

        def poll(cabinet_id, session):
            try:
                reply = session.get(f"{base}/v1/cabinets/{cabinet_id}/commands?wait=60",
                                    headers={"Authorization": f"Bearer {tokens[cabinet_id]}"},
                                    timeout=90)
                answers[cabinet_id] = (reply.status_code, reply.json())
            except requests.RequestException as exc:
                answers[cabinet_id] = (None, repr(exc))
        sessions = {c: requests.Session() for c in tokens}
        for c, session in sessions.items():  # every worker up (slow on a loaded machine)
            wait_for(lambda: _answers(session, f"{base}/v1/cabinets/{c}/commands",
                                      {"Authorization": f"Bearer {tokens[c]}"}),
                     timeout=90, interval=0.5, what="the service up")
        pollers = [threading.Thread(target=poll, args=(c, s)) for c, s in sessions.items()]
        for p in pollers:
            p.start()
        time.sleep(5)  # both long-polls are in and waiting (their wait is 60 s)
        server.send_signal(signal.SIGTERM)
        for p in pollers:
            p.join(timeout=30)
        for session in sessions.values():
            session.close()
        # uvicorn ends by raising the signal again once it has shut down (systemd counts an
        # exit by SIGTERM as clean).
        assert server.wait(timeout=30) in (0, -signal.SIGTERM)
        log = server.stderr.read()
        assert answers == {c: (200, {"commands": [], "server_time": answers[c][1]["server_time"]})
                           for c in tokens}, answers
        assert "Exception in ASGI application" not in log, log
    finally:
        if server.poll() is None:
            server.kill()
        server.wait()


def _answers(session: requests.Session, url: str, headers: dict) -> bool:
    try:
        return session.get(url, headers=headers, timeout=5).status_code == 200
    except requests.RequestException:
        return False


# --- found by attacking this backend (2026-12-01) ----------------------------------------------

def test_records_that_once_failed_their_whole_batch_are_handled_one_at_a_time(backend):
    """Each of these gave a 500 (so the cabinet resent its batch for ever): now each is stored or
    refused on its own with a reason, and its neighbours are stored."""
    huge = _record(1, "telemetry", {"celsius": 10 ** 400})          # a float overflow in a check
    early = _record(2) | {"created_at": "0001-01-01T00:30:00+01:00"}  # no such time in UTC
    door = _record(3, "session", {"door_opened_at": "0001-01-01T00:30:00+01:00"})
    alarm = _record(4, "alarm", {"alarm_id": "a1", "state": "raised", "kind": "forced_open",
                                 "raised_at": "x" * 41})          # wider than its column
    big_sale = _record(5, "sale", {"session_id": "s", "total_fen": 0, "lines": [
        {"sku": "gold", "count": 1, "amount_fen": 2 ** 53 - 1}] * 1100})  # a BIGINT overflow
    half_id = _record(6) | {"record_id": "\ud800"}                  # echoed in the reply
    good = _record(7)
    reply = _batch(backend, [huge, early, door, alarm, big_sale, half_id, good])
    assert reply.status_code == 200, reply.text
    rejected = {r["seq"]: r for r in reply.json()["rejected"]}
    assert set(rejected) == {2, 5, 6}
    assert "outside the years" in rejected[2]["reason"]
    assert "amount_fen" in rejected[5]["reason"] and rejected[6]["record_id"] == "\\ud800"
    assert backend.storage.fleet.counts("cabinet-0001") == {
        "telemetry": 1, "session": 1, "alarm": 1, "sale": 1}
    # A key that is half a surrogate pair, beside a NaN: the 422 names it, escaped.
    reply = _post_raw(backend, "/v1/cabinets/cabinet-0001/records",
                      b'{"cabinet_id": "cabinet-0001", "records": [{"\\ud800": NaN}]}')
    assert reply.status_code == 422 and "\ud800" in reply.json()["error"]


def test_an_id_twice_in_a_batch_or_resent_with_another_seq_counts_once_as_first_sent(backend):
    first = _record(1, "sale", {"session_id": "s1", "total_fen": 100, "flags": [], "lines": [
        {"sku": "A", "count": 1, "unit_price_fen": 100, "amount_fen": 100}]})
    copy = {**first, "seq": 50, "body": {"session_id": "s1", "total_fen": 8991, "flags": [],
                                         "lines": [{"sku": "B", "count": 9,
                                                    "unit_price_fen": 999, "amount_fen": 8991}]}}
    assert _batch(backend, [first, copy]).status_code == 200
    (stored,) = backend.storage.fleet.records("sale", "cabinet-0001", 0, 10)
    assert stored["body"]["lines"][0]["sku"] == "A"
    assert [(r["sku"], r["units"], r["revenue_fen"]) for r in
            backend.storage.fleet.sales_by_hour("cabinet-0001")] == [("A", 1, 100)]
    status, fleet = backend.operator("GET", "cabinets")
    assert fleet["cabinets"][0]["last_seq"] == 1
    # Sent again later with a far seq: nothing is stored, last_seq stays.
    assert _batch(backend, [{**first, "seq": 10 ** 12}]).status_code == 200
    status, fleet = backend.operator("GET", "cabinets")
    assert fleet["cabinets"][0]["last_seq"] == 1


def test_command_args_postgresql_cannot_hold_are_422_not_500(backend):
    for args in ({"x": "a\u0000b"}, {"x": "\ud800"}, {"\ud800": 1}):
        reply = requests.post(
            backend.url + "/v1/operator/cabinets/cabinet-0001/commands", timeout=10,
            data=json.dumps({"type": "restart", "args": args}).encode(),
            headers={"Authorization": f"Bearer {backend.operator_token}",
                     "Content-Type": "application/json"})
        assert reply.status_code == 422 and "args" in reply.json()["error"], args


def test_a_token_check_in_flight_never_brings_back_a_replaced_token(postgres):
    """The check read the old token's hash; the token was replaced before the check finished:
    the old token is not believed afterwards."""
    import threading

    import psycopg
    from sqlalchemy import event

    from backend.storage import Storage
    from backend.storage.engine import migrate

    with psycopg.connect(postgres.url, autocommit=True) as db:
        db.execute("DROP DATABASE IF EXISTS token_race")
        db.execute("CREATE DATABASE token_race")
    url = postgres.url.rsplit("/", 1)[0] + "/token_race"
    migrate(url)
    storage = Storage(url)
    try:
        old = storage.fleet.add_cabinet("cabinet-0001")
        read, go = threading.Event(), threading.Event()

        @event.listens_for(storage.engine, "after_cursor_execute")
        def hold(conn, cursor, statement, params, context, executemany):
            if threading.current_thread().name == "check" and "token_sha256" in statement:
                read.set()
                go.wait(10)
        checked = {}
        check = threading.Thread(name="check", target=lambda: checked.setdefault(
            "valid", storage.fleet.authenticate("cabinet-0001", old)))
        check.start()
        assert read.wait(10)
        new = storage.fleet.add_cabinet("cabinet-0001")  # replaced while the check is open
        go.set()
        check.join(10)
        assert checked["valid"] is True  # it was valid when read
        assert not storage.fleet.recently_verified("cabinet-0001", old)
        assert storage.fleet.authenticate("cabinet-0001", new)
        assert storage.fleet.recently_verified("cabinet-0001", new)
    finally:
        storage.close()


# --- CSV exports (issue 18, on this backend) -----------------------------------------------------

def test_csv_exports_a_row_per_line_for_a_period_spreadsheet_safe_and_audited(backend):
    import csv
    import io

    def sale(seq, at, name, count):
        return _record(seq, "sale", {
            "session_id": f"s{seq}", "total_fen": 300 * count, "flags": [{"kind": "ambiguous"}],
            "authorisation": {"method": "qr", "subject": "acct-7", "role": "shopper"},
            "lines": [{"sku": "water", "name_en": name, "count": count, "unit_price_fen": 300,
                       "amount_fen": 300 * count},
                      {"sku": "tea", "count": 1, "unit_price_fen": 0, "amount_fen": 0}]}) \
            | {"created_at": at}
    records = [sale(1, "2026-11-30T07:00:00.000Z", "Water", 2),
               sale(2, "2026-11-30T09:00:00.000Z", "=HYPERLINK(\"http://x\")", 1),
               sale(3, "2026-12-01T07:00:00.000Z", "Water", 1),   # outside the period
               _record(4, "telemetry", {"celsius": 4.2, "door_open": False})
               | {"created_at": "2026-11-30T08:00:00.000Z"}]
    assert _batch(backend, records).status_code == 200
    viewer = backend.token_for("viewer")

    def export(table, **query):
        reply = requests.get(f"{backend.url}/v1/operator/exports/{table}.csv", params={
            "since": "2026-11-30T00:00:00Z", "until": "2026-12-01T00:00:00Z", **query},
            headers={"Authorization": f"Bearer {viewer}"}, timeout=10)
        return reply
    reply = export("sales", cabinet_id="cabinet-0001")
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/csv")
    assert "attachment" in reply.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(reply.text)))
    assert [(r["seq"], r["sku"], r["name_en"], r["count"], r["total_fen"]) for r in rows] == [
        ("1", "water", "Water", "2", "600"), ("1", "tea", "", "1", "600"),
        ("2", "water", "'=HYPERLINK(\"http://x\")", "1", "300"), ("2", "tea", "", "1", "300")]
    assert {r["flags"] for r in rows} == {"ambiguous"} and rows[0]["subject"] == "acct-7"
    # Asked in Beijing time, 16:00 to 08:00 next morning (08:00Z to 00:00Z): only the 09:00Z sale.
    beijing = export("sales", since="2026-11-30T16:00:00+08:00", until="2026-12-01T08:00:00+08:00")
    assert [r["seq"] for r in csv.DictReader(io.StringIO(beijing.text))] == ["2", "2"]
    rows = list(csv.DictReader(io.StringIO(export("temperature").text)))
    assert [(r["seq"], r["celsius"], r["door_open"]) for r in rows] == [("4", "4.2", "False")]
    assert list(csv.DictReader(io.StringIO(export("inventory").text))) == []
    assert export("sales", cabinet_id="cabinet-0002").text.count("\n") == 1  # the header only
    # Refused: a period backwards, a time without its zone, an unknown table, no token.
    assert export("sales", since="2026-12-02T00:00:00Z").status_code == 422
    assert export("sales", since="2026-11-30T00:00:00").status_code == 422
    assert export("stock").status_code == 422
    assert requests.get(f"{backend.url}/v1/operator/exports/sales.csv", timeout=10,
                        params={"since": "2026-11-30T00:00:00Z",
                                "until": "2026-12-01T00:00:00Z"}).status_code == 401
    audited = [e for e in backend.storage.audit() if e["action"].startswith("export:")]
    assert {e["action"] for e in audited} == {"export:sales", "export:temperature",
                                              "export:inventory"}


def test_sales_summary_by_day_hour_weekday_product_and_cabinet_in_the_operator_s_zone(backend):
    """From the hourly rollups: a sale at 23:30 UTC on Sunday is Monday 07:30 in Beijing."""
    def sale(seq, at, sku, count, price):
        return _record(seq, "sale", {"session_id": f"s{seq}", "total_fen": count * price,
                                     "flags": [], "lines": [{"sku": sku, "count": count,
                                                             "unit_price_fen": price,
                                                             "amount_fen": count * price}]}) \
            | {"created_at": at}
    assert _batch(backend, [sale(1, "2026-11-29T23:30:00.000Z", "water", 2, 200),   # Sun UTC
                            sale(2, "2026-11-30T01:10:00.000Z", "tea", 1, 350),
                            sale(3, "2026-11-30T01:50:00.000Z", "water", 1, 200),
                            sale(4, "2026-12-02T00:00:00.000Z", "water", 5, 200)]
                  ).status_code == 200  # the last one is after the period

    def summary(**query):
        reply = requests.get(f"{backend.url}/v1/operator/sales/summary", params={
            "since": "2026-11-29T00:00:00Z", "until": "2026-12-01T00:00:00Z", **query},
            headers={"Authorization": f"Bearer {backend.token_for('viewer')}"}, timeout=10)
        return reply.status_code, reply.json()
    status, beijing = summary()  # Asia/Shanghai by default
    assert status == 200 and (beijing["revenue_fen"], beijing["units"]) == (950, 4)
    assert beijing["by_day"] == [{"day": "2026-11-30", "revenue_fen": 950, "units": 4}]
    hours = {h["hour"]: h["revenue_fen"] for h in beijing["by_hour_of_day"] if h["units"]}
    assert hours == {7: 400, 9: 550} and len(beijing["by_hour_of_day"]) == 24
    assert beijing["weekday_hour_revenue_fen"][0][7] == 400  # Monday 07:00 in Beijing
    assert [(p["sku"], p["units"], p["revenue_fen"], p["sales"]) for p in
            beijing["by_product"]] == [("water", 3, 600, 2), ("tea", 1, 350, 1)]
    assert beijing["by_cabinet"] == [{"cabinet_id": "cabinet-0001", "revenue_fen": 950,
                                      "units": 4}]
    status, utc = summary(tz="UTC")
    assert [d["day"] for d in utc["by_day"]] == ["2026-11-29", "2026-11-30"]
    assert utc["weekday_hour_revenue_fen"][6][23] == 400  # Sunday 23:00 UTC
    assert summary(cabinet_id="cabinet-0002")[1]["revenue_fen"] == 0
    status, refused = summary(tz="Mars/Olympus")
    assert status == 422 and "time zone" in refused["error"]
    assert summary(until="2026-11-28T00:00:00Z")[0] == 422


def _line(sku, count, price, shelf=1):
    return {"sku": sku, "shelf": shelf, "count": count, "unit_price_fen": price,
            "amount_fen": count * price, "name_zh": sku, "name_en": sku}


def test_stock_follows_snapshots_and_sales_and_a_pick_list_reaches_par(backend):
    restock = _record(1, "inventory", {"mode": "restock", "flags": [],
                                       "stock": {"1": {"water": 10, "tea": 4}, "2": {"bun": 0}}})
    sales = [_record(2, body={"total_fen": 400, "flags": [], "lines": [_line("water", 2, 200)]}),
             _record(3, body={"total_fen": 350, "flags": [], "lines": [_line("tea", 1, 350)]}),
             # Sold before it was ever counted: its price is known, its count is not.
             _record(4, body={"total_fen": 500, "flags": [], "lines": [_line("milk", 1, 500, 3)]})]
    assert _batch(backend, [restock] + sales).json()["stored_through"] == 4
    assert _batch(backend, [restock] + sales).status_code == 200     # resent: nothing twice
    status, listed = backend.operator("GET", "stock?cabinet_id=cabinet-0001")
    stock = {p["sku"]: p for p in listed["products"]}
    assert {s: p["count"] for s, p in stock.items()} == {"water": 8, "tea": 3, "bun": 0,
                                                         "milk": None}
    assert stock["water"]["price_fen"] == 200 and stock["milk"]["shelf"] == 3
    assert stock["water"]["counted_at"].startswith("2026-11-30T08:15")
    # Par levels by an operator; a viewer may not.
    status, _ = backend.operator("PUT", "cabinets/cabinet-0001/par",
                                 {"pars": {"water": 12, "tea": 6, "milk": 5}},
                                 token=backend.token_for("viewer"))
    assert status == 403
    status, _ = backend.operator("PUT", "cabinets/cabinet-0001/par",
                                 {"pars": {"water": 12, "tea": 6, "milk": 5}})
    assert status == 200
    status, picks = backend.operator("GET", "pick-list?cabinet_id=cabinet-0001&days_ahead=0")
    bring = {line["sku"]: line["bring"] for line in picks["lines"]}
    assert bring == {"water": 4, "tea": 3, "milk": None}          # milk: count it on site
    status, bad = backend.operator("PUT", "cabinets/cabinet-0001/par", {"pars": {"water": -1}})
    assert status == 422 and "pars" in bad["error"] + str(bad.get("fields"))
    (entry,) = [e for e in backend.storage.audit() if e["action"] == "set_par"]
    assert entry["actor"] == "admin"


def test_a_flagged_sale_is_resolved_once_by_an_adjustment_that_moves_stock_and_sales(backend):
    restock = _record(1, "inventory", {"mode": "restock", "flags": [],
                                       "stock": {"1": {"water": 10}, "2": {"tea": 5}}})
    flagged = _record(2, body={
        "total_fen": 200, "lines": [_line("water", 1, 200)],
        "flags": [{"kind": "unexplained", "shelf": 2, "difference_grams": -540.0,
                   "candidates": []}]})
    unauthorised = _record(3, "inventory", {"mode": "unauthorised", "flags": [],
                                            "lines": [_line("tea", 1, 350, 2)], "value_fen": 350,
                                            "stock": {"2": {"tea": 4}}})
    clean = _record(4, body={"total_fen": 200, "flags": [], "lines": [_line("water", 1, 200)]})
    assert _batch(backend, [restock, flagged, unauthorised, clean]).status_code == 200
    status, queue = backend.operator("GET", "reviews")
    assert queue["open"] == 2
    assert [(r["record_id"], r["reason"]) for r in queue["reviews"]] == [
        (flagged["record_id"], "unexplained"), (unauthorised["record_id"], "unauthorised removal")]
    assert queue["reviews"][0]["record"]["body"]["flags"][0]["shelf"] == 2
    path = f"cabinets/cabinet-0001/records/{flagged['record_id']}/adjustment"
    # A viewer and a technician may not; bad lines are refused with the field named.
    assert backend.operator("POST", path, {"action": "void"},
                            token=backend.token_for("technician"))[0] == 403
    status, bad = backend.operator("POST", path, {"action": "lines", "lines": [
        {"sku": "tea", "count": -1, "unit_price_fen": 350}]})
    assert status == 422 and "count" in json.dumps(bad)
    status, bad = backend.operator("POST", path, {"action": "void", "lines": [
        {"sku": "tea", "count": 1, "unit_price_fen": 350}]})
    assert status == 422 and "only with action 'lines'" in json.dumps(bad)
    # Really taken: the water and a tea the shelf could not explain.
    status, adjustment = backend.operator("POST", path, {"action": "lines", "note": "video", "lines": [
        {"sku": "water", "count": 1, "unit_price_fen": 200},
        {"sku": "tea", "count": 1, "unit_price_fen": 350}]})
    assert status == 201, adjustment
    assert (adjustment["revenue_delta_fen"], adjustment["units_delta"]) == (350, 1)
    assert backend.operator("POST", path, {"action": "void"})[0] == 409   # once
    stock = {p["sku"]: p["count"] for p in backend.operator(
        "GET", "stock?cabinet_id=cabinet-0001")[1]["products"]}
    assert stock == {"water": 8, "tea": 3}   # the snapshot's 4 teas less the one resolved
    summary = backend.operator("GET", "sales/summary?since=2026-11-30T00:00:00Z"
                               "&until=2026-12-01T00:00:00Z")[1]
    assert summary["revenue_fen"] == 200 + 550 and summary["units"] == 3
    assert {p["sku"]: p["sales"] for p in summary["by_product"]} == {"water": 2, "tea": 1}
    # The record is as the cabinet sent it.
    (stored,) = [r for r in backend.storage.fleet.records("sale", "cabinet-0001", 0, 10)
                 if r["record_id"] == flagged["record_id"]]
    assert stored == flagged
    # The unauthorised removal is accepted with a note, not voided.
    path = f"cabinets/cabinet-0001/records/{unauthorised['record_id']}/adjustment"
    status, refused = backend.operator("POST", path, {"action": "void"})
    assert status == 409 and "accepted with a note" in refused["error"]
    assert backend.operator("POST", path, {"action": "accept", "note": "ward stock"})[0] == 201
    status, queue = backend.operator("GET", "reviews")
    assert queue["open"] == 0 and queue["reviews"] == []
    resolved = backend.operator("GET", "reviews?resolved=true")[1]["reviews"]
    assert [r["adjustment"]["action"] for r in resolved] == ["accept", "lines"]
    # A refund of a clean sale: the money back, the stock unchanged.
    path = f"cabinets/cabinet-0001/records/{clean['record_id']}/adjustment"
    assert backend.operator("POST", path, {"action": "refund"})[1]["revenue_delta_fen"] == -200
    assert backend.operator("GET", "sales/summary?since=2026-11-30T00:00:00Z&until="
                            "2026-12-01T00:00:00Z")[1]["revenue_fen"] == 550
    reply = requests.get(f"{backend.url}/v1/operator/exports/adjustments.csv", params={
        "since": "2026-01-01T00:00:00Z", "until": "2027-01-01T00:00:00Z"},
        headers={"Authorization": f"Bearer {backend.operator_token}"}, timeout=10)
    import csv
    import io
    rows = list(csv.DictReader(io.StringIO(reply.text)))
    assert [(r["action"], r["sku"], r["revenue_delta_fen"]) for r in rows] == [
        ("lines", "water", "350"), ("lines", "tea", "350"), ("accept", "", "0"),
        ("refund", "", "-200")]
    assert backend.operator("POST", "cabinets/cabinet-0001/records/"
                            "00000000-0000-4000-8000-000000000000/adjustment",
                            {"action": "void"})[0] == 404


def test_the_fleet_s_rollups_agree_with_each_cabinet_s_across_day_edges(backend):
    """The fleet's summary reads fleet-hourly and cabinet-daily rollups; its figures must be
    the sum of each cabinet's own, for a period whose ends fall inside UTC days."""
    import random

    backend.storage.fleet.add_cabinet("cabinet-0002")
    rng = random.Random(7)
    start = datetime(2026, 11, 20, tzinfo=timezone.utc)
    for cabinet in ("cabinet-0001", "cabinet-0002"):
        records = []
        for seq in range(1, 200):
            at = start + timedelta(minutes=rng.randrange(0, 8 * 24 * 60))
            sku, count = rng.choice(["water", "tea", "bun"]), rng.randrange(1, 4)
            records.append(_record(seq, "sale", {"total_fen": count * 150, "flags": [],
                                                 "lines": [{"sku": sku, "count": count,
                                                            "unit_price_fen": 150,
                                                            "amount_fen": count * 150}]})
                           | {"created_at": at.isoformat(), "cabinet_id": cabinet})
        rejected, _ = backend.storage.receive(cabinet, records, None)
        assert rejected == []
    # A refund at one of them moves the fleet's figures too.
    (refunded,) = backend.storage.fleet.records("sale", "cabinet-0002", 0, 1)
    backend.storage.reviews.resolve("cabinet-0002", refunded["record_id"], "refund", [], "",
                                    "admin")
    query = "since=2026-11-21T09:30:00%2B08:00&until=2026-11-26T17:00:00%2B08:00&tz=Asia/Shanghai"
    fleet = backend.operator("GET", f"sales/summary?{query}")[1]
    each = [backend.operator("GET", f"sales/summary?{query}&cabinet_id={c}")[1]
            for c in ("cabinet-0001", "cabinet-0002")]
    assert fleet["revenue_fen"] == sum(s["revenue_fen"] for s in each) > 0
    assert fleet["units"] == sum(s["units"] for s in each)
    assert {c["cabinet_id"]: c["revenue_fen"] for c in fleet["by_cabinet"]} == {
        s["by_cabinet"][0]["cabinet_id"]: s["revenue_fen"] for s in each}
    assert [d["revenue_fen"] for d in fleet["by_day"]] == [
        sum(x) for x in zip(*[[d["revenue_fen"] for d in s["by_day"]] for s in each])]
    products = {p["sku"]: p["units"] for p in fleet["by_product"]}
    assert products == {sku: sum(p["units"] for s in each for p in s["by_product"]
                                 if p["sku"] == sku) for sku in products}


def test_migration_0006_fills_the_fleet_s_rollups_from_the_hourly_one(backend_db_url):
    import sqlalchemy as sa

    from backend.storage.engine import make_engine, migrate
    from backend.storage.schema import sales_cabinet_daily, sales_fleet_hourly, sales_hourly

    migrate(backend_db_url, "0005")
    engine = make_engine(backend_db_url)
    hour = datetime(2026, 11, 30, 23, tzinfo=timezone.utc)
    with engine.begin() as connection:
        connection.execute(sa.insert(sales_hourly), [
            {"cabinet_id": c, "hour": hour + timedelta(hours=h), "sku": "tea", "units": 2,
             "revenue_fen": 700, "sales": 2} for c in ("a", "b") for h in (0, 1)])
    migrate(backend_db_url)
    with engine.connect() as connection:
        fleet = connection.execute(sa.select(sales_fleet_hourly).order_by(
            sales_fleet_hourly.c.hour)).all()
        daily = connection.execute(sa.select(sales_cabinet_daily).order_by(
            sales_cabinet_daily.c.day, sales_cabinet_daily.c.cabinet_id)).all()
    engine.dispose()
    assert [(r.units, r.revenue_fen) for r in fleet] == [(4, 1400), (4, 1400)]
    assert [(r.day.replace(tzinfo=timezone.utc).day, r.cabinet_id, r.units) for r in daily] == [
        (30, "a", 2), (30, "b", 2), (1, "a", 2), (1, "b", 2)]


def test_numbers_too_wide_for_their_columns_in_stock_never_fail_the_batch(backend):
    """Shelf numbers and counts a cabinet sends in snapshots and sale lines are kept only when
    they fit (a 20-digit shelf once would have overflowed its column and failed the batch, which
    the cabinet then resends for ever)."""
    wide = 10 ** 20
    records = [
        _record(1, "inventory", {"mode": "restock", "flags": [], "stock": {
            str(wide): {"water": 3}, "1": {"tea": wide, "bun": 4}}}),
        _record(2, body={"total_fen": 200, "flags": [], "lines": [
            {"sku": "water", "shelf": wide, "count": 1, "unit_price_fen": wide,
             "amount_fen": 200}]}),
        _record(3, "planogram", {"reason": "start", "planogram": {
            "version": "x", "products": [{"sku": "milk", "price_fen": wide, "name_en": "Milk"}],
            "shelves": [{"id": 2, "stock": {"milk": -5}}]}}),
    ]
    reply = _batch(backend, records)
    assert reply.status_code == 200 and reply.json()["rejected"] == []
    stock = {p["sku"]: p for p in backend.operator("GET", "stock")[1]["products"]}
    assert stock["bun"]["count"] == 4 and "tea" not in stock
    assert stock["water"]["shelf"] is None and stock["water"]["price_fen"] is None
    assert stock["milk"]["count"] is None and stock["milk"]["price_fen"] is None
    # An operator's adjustment is bounded like a sale's line.
    status, refused = backend.operator(
        "POST", f"cabinets/cabinet-0001/records/{records[1]['record_id']}/adjustment",
        {"action": "lines", "lines": [{"sku": "water", "count": 10 ** 6,
                                       "unit_price_fen": 10 ** 10}]})
    assert status == 422 and "at most 10000000000 fen a line" in json.dumps(refused)


def test_records_the_back_office_reads_are_refused_alone_or_ignored_never_a_500(backend):
    """Found by a hostile pass: each of these once failed the whole batch (resent for ever)."""
    def sale(seq, **body):
        return _record(seq, body={"total_fen": 100, "flags": [], "lines": [
            {"sku": "tea", "count": 1, "amount_fen": 100}], **body})
    records = [sale(1, lines=[{"count": 1, "amount_fen": 100}]),            # no sku
               sale(2, lines=[{"sku": ["x"], "count": 1, "amount_fen": 100}]),
               sale(3, flags=5), sale(4, flags=[{"kind": []}]),
               _record(5, "inventory", {"mode": "restock", "flags": [], "stock": {"²": {"a": 1}}}),
               _record(6, "planogram", {"reason": "start", "planogram": {"products": 5,
                                                                         "shelves": 7}}),
               sale(7)]
    reply = _batch(backend, records)
    assert reply.status_code == 200, reply.text
    rejected = {r["seq"]: r["reason"] for r in reply.json()["rejected"]}
    assert sorted(rejected) == [1, 2, 3, 4]
    assert "sku" in rejected[1] and "flags" in rejected[3]
    assert reply.json()["stored_through"] == 7


def test_periods_outside_the_calendar_and_par_for_no_cabinet_are_refused(backend):
    for path in ("cabinets/cabinet-0001/climate", "cabinets/cabinet-0001/telemetry",
                 "sales/transactions", "exports/adjustments.csv"):
        status, reply = backend.operator(
            "GET", f"{path}?since=0001-01-01T00:00:00%2B01:00&until=2026-01-01T00:00:00Z")
        assert status == 422 and "since" in json.dumps(reply), path
    status, reply = backend.operator("GET", "sales/summary?since=9999-12-31T01:00:00Z"
                                     "&until=9999-12-31T02:00:00Z")
    assert status == 422
    status, reply = backend.operator("PUT", "cabinets/no-such-cabinet/par", {"pars": {"a": 3}})
    assert status == 404 and backend.operator("GET", "stock")[1]["products"] == []
