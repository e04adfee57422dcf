"""Sync: the real uploader, over real HTTP, into the real reference backend (SQLite and
PostgreSQL), with and without a fault-injecting proxy in the way."""

from __future__ import annotations

import datetime as dt
import random
import time
import uuid

from cabinet.outbox import OutboxQueue
from cabinet.store import Store
from cabinet.sync import Backoff, CommandPoller, CommandsArrived, SyncReported, Transport, Uploader
from tests.conftest import RunningBackend, wait_for
from tools.backend.faults import FaultProxy


def make_store(tmp_path) -> Store:
    return Store(tmp_path / "cabinet.db", cabinet_id="cabinet-0001", software_version="test")


def add_sales(store: Store, n: int, start: int = 0) -> None:
    """Sales through the same journal and transactions as a real checkout."""
    for i in range(start, start + n):
        session = {"session_id": str(uuid.uuid4()), "authorised_at": "2026-11-23T00:00:00Z",
                   "authorisation": {"method": "qr", "subject": f"acct-{i}", "role": "shopper",
                                     "code_id": f"c{i}"}}
        store.begin_session(session)
        store.finish_session(session, "sale", {"session_id": session["session_id"],
                                               "lines": [{"sku": "water", "count": 1,
                                                          "unit_price_fen": 300,
                                                          "amount_fen": 300}],
                                               "total_fen": 300, "flags": []}, None)


def uploader_for(store, url, token, emit=None, **kw) -> Uploader:
    transport = Transport(url, "cabinet-0001", token, connect_timeout=1, read_timeout=2)
    return Uploader(OutboxQueue(store.path), transport, emit or (lambda e: None),
                    cabinet_id="cabinet-0001", backoff=Backoff(base=0.01, cap=0.05), **kw)


def drain(uploader: Uploader, store: Store, limit: int = 10000) -> None:
    for _ in range(limit):
        if store.outbox_counts()["pending"] == 0:
            return
        uploader.step()
    raise AssertionError(f"not drained: {store.outbox_counts()}")


def test_records_arrive_once_with_their_content(tmp_path, backend):
    store = make_store(tmp_path)
    add_sales(store, 30)
    store.raise_alarm("forced_open", "door opened while locked")
    reports = []
    up = uploader_for(store, backend.url, backend.device_token, reports.append, max_records=7)
    drain(up, store)
    counts = backend.storage.fleet.counts("cabinet-0001")
    assert counts == {"sale": 30, "alarm": 1}
    sales = backend.storage.fleet.records("sale", "cabinet-0001", 0, 1000)
    assert [s["body"]["total_fen"] for s in sales] == [300] * 30
    assert [s["seq"] for s in sales] == sorted(s["seq"] for s in sales)
    status, cabinets = backend.operator("GET", "cabinets")
    assert status == 200
    (cab,) = cabinets["cabinets"]
    assert cab["alarms"][0]["kind"] == "forced_open" and cab["last_seq"] == 31
    assert all(isinstance(r, SyncReported) and r.ok for r in reports)
    assert sum(r.delivered for r in reports) == 31
    # Sending everything again (as after a lost acknowledgement) stores nothing twice.
    up.outbox._db.execute("UPDATE outbox SET delivered_at = NULL")
    drain(up, store)
    assert backend.storage.fleet.counts("cabinet-0001") == {"sale": 30, "alarm": 1}


def test_backend_down_then_back_with_every_fault_delivers_exactly_once(tmp_path, backend):
    """10 000 sales queue while the backend is unreachable; then they drain through a proxy
    that injects 500s, 429s, hangs, resets, truncated replies and lost acknowledgements."""
    store = make_store(tmp_path)
    proxy = FaultProxy(backend.url, {"error500": 0.05, "rate_limit": 0.03, "hang": 0.04,
                                     "reset": 0.05, "truncate": 0.05, "lost_ack": 0.15},
                       seed=7, hang_seconds=2.5, retry_after=0)
    reports = []
    up = uploader_for(store, proxy.url, backend.device_token, reports.append, max_records=250)
    add_sales(store, 200)
    up.step()  # the proxy is not listening yet: nothing is delivered
    assert reports[-1].ok is False and store.outbox_counts()["pending"] == 200
    add_sales(store, 9800, start=200)
    assert store.outbox_counts()["pending"] == 10000
    proxy.start()
    try:
        drain(up, store)
    finally:
        proxy.close()
    server_sales = backend.storage.fleet.records("sale", "cabinet-0001", 0, 100000)
    assert len(server_sales) == 10000
    assert len({s["record_id"] for s in server_sales}) == 10000
    assert {s["body"]["session_id"] for s in server_sales} == {s["session_id"] for s in store.sales()}
    for fault in ("error500", "rate_limit", "hang", "reset", "truncate", "lost_ack"):
        assert proxy.counts[fault] > 0, f"{fault} was never injected"


def test_a_malformed_record_is_dead_lettered_and_never_blocks_the_queue(tmp_path, backend):
    store = make_store(tmp_path)
    add_sales(store, 3)
    with store.transaction():  # a record of a kind the backend does not know
        store.add_outbox("bogus", {"x": 1})
    add_sales(store, 3, start=3)
    reports = []
    up = uploader_for(store, backend.url, backend.device_token, reports.append)
    drain(up, store)
    assert backend.storage.fleet.counts("cabinet-0001") == {"sale": 6}
    stats = up.outbox.stats()
    (dead,) = stats["dead_letters"]
    assert dead["kind"] == "bogus" and "unknown kind" in dead["reason"]
    assert [d["kind"] for r in reports for d in r.dead_letters] == ["bogus"]


def test_cabinet_queue_shows_pending_last_sync_and_dead_letters(tmp_path, backend, capsys):
    from cabinet.cli import technician_main

    store = make_store(tmp_path)
    add_sales(store, 2)
    assert technician_main(["queue", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "2 records" in out and "sale 2" in out and "never" in out
    with store.transaction():
        store.add_outbox("bogus", {})
    drain(uploader_for(store, backend.url, backend.device_token), store)
    add_sales(store, 1, start=2)
    assert technician_main(["queue", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "1 records" in out and "s ago" in out
    assert "dead letters    1" in out and "bogus" in out and "unknown kind 'bogus'" in out


def test_too_large_batches_are_split_and_a_record_too_large_alone_is_dead_lettered(tmp_path,
                                                                                    backend_db_url):
    b = RunningBackend(backend_db_url, max_body=6000)
    try:
        store = make_store(tmp_path)
        add_sales(store, 40)
        with store.transaction():
            store.add_outbox("notice", {"text": "x" * 10000})
        up = uploader_for(store, b.url, b.device_token, max_records=40)
        drain(up, store)
        assert b.storage.fleet.counts("cabinet-0001") == {"sale": 40}
        assert [d["kind"] for d in up.outbox.stats()["dead_letters"]] == ["notice"]
    finally:
        b.close()


def test_retry_after_is_honoured(tmp_path, backend):
    store = make_store(tmp_path)
    add_sales(store, 1)
    proxy = FaultProxy(backend.url, {"rate_limit": 1.0}, retry_after=42).start()
    try:
        up = uploader_for(store, proxy.url, backend.device_token)
        assert up.step() == 42
        assert store.outbox_counts()["pending"] == 1
    finally:
        proxy.close()


def test_backoff_is_full_jitter_capped_at_five_minutes():
    backoff = Backoff(rng=random.Random(3))
    waits = [backoff.next() for _ in range(40)]
    assert all(0 <= w <= 300 for w in waits)
    assert max(waits[12:]) > 150, "the ceiling grows to the cap"
    assert len(set(waits)) == len(waits), "jittered, not lockstep"
    assert waits[0] <= 1
    backoff.reset()
    assert backoff.next() <= 1


def test_a_wrong_device_token_is_reported_and_nothing_is_marked_delivered(tmp_path, backend):
    store = make_store(tmp_path)
    add_sales(store, 2)
    reports = []
    up = uploader_for(store, backend.url, "not-the-token", reports.append)
    up.step()
    assert reports[-1].auth_failed and "401" in reports[-1].error
    assert store.outbox_counts()["pending"] == 2


def test_telemetry_is_thinned_over_budget_and_sales_are_kept(tmp_path):
    store = make_store(tmp_path)
    for i in range(400):
        store.add_record("telemetry", {"celsius": 4.0 + i / 1000, "pad": "x" * 200})
    add_sales(store, 50)
    queue = OutboxQueue(store.path)
    before = queue.pending_bytes()
    dropped = queue.thin_telemetry(before // 2)
    kinds = queue.stats()["pending_by_kind"]
    assert kinds["sale"] == 50
    assert dropped > 0 and kinds["telemetry"] == 400 - dropped
    assert queue.pending_bytes() <= before // 2
    # The oldest and newest samples are kept: the record still spans the whole time.
    rows = [b for (b,) in queue._db.execute("SELECT body FROM outbox WHERE kind = 'telemetry' "
                                            "ORDER BY seq")]
    assert '"celsius": 4.0,' in rows[0] and '"celsius": 4.399' in rows[-1]


def test_tls_is_verified_against_the_configured_ca(tmp_path, backend_db_url):
    cert, key, ca = _make_tls(tmp_path)
    b = RunningBackend(backend_db_url, certfile=str(cert), keyfile=str(key))
    try:
        store = make_store(tmp_path)
        add_sales(store, 2)
        reports = []
        untrusting = uploader_for(store, b.url, b.device_token, reports.append)
        untrusting.step()
        assert not reports[-1].ok and "SSL" in reports[-1].error
        trusting = uploader_for(store, b.url, b.device_token, reports.append)
        trusting.transport.verify = str(ca)
        drain(trusting, store)
        assert b.storage.fleet.counts("cabinet-0001") == {"sale": 2}
    finally:
        b.close()


def test_commands_arrive_by_long_poll_as_soon_as_issued(backend):
    events = []
    transport = Transport(backend.url, "cabinet-0001", backend.device_token)
    poller = CommandPoller(transport, events.append, wait_seconds=20)
    poller.start()
    try:
        time.sleep(0.3)  # the poll is now waiting at the backend
        status, command = backend.operator("POST", "cabinets/cabinet-0001/commands",
                                           {"type": "set_setpoint", "args": {"celsius": 5}})
        assert status == 201
        arrived = wait_for(lambda: [e for e in events if isinstance(e, CommandsArrived)],
                           timeout=5, what="the command")
        assert arrived[0].commands[0]["command_id"] == command["command_id"]
        assert arrived[0].server_time is not None
        wait_for(lambda: poller.after == command["seq"], what="the cursor to advance")
    finally:
        poller.close()


def _make_tls(folder):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cabinet test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(1)
          .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(2)
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = folder / "server.pem", folder / "server.key", folder / "ca.pem"
    paths[0].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    paths[2].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return paths


def test_the_backend_mints_access_codes_the_cabinet_accepts(tmp_path, backend_db_url):
    from cabinet.access import codes

    path, public = codes.ensure_key_pair(tmp_path / "keys", key_id=3)
    b = RunningBackend(backend_db_url, service_kw={"signing_key": codes.read_private_key(path),
                                                   "key_id": 3})
    try:
        status, minted = b.operator("POST", "access-codes", {"audience": "cabinet-0001",
                                                             "subject": "acct-77",
                                                             "lifetime_seconds": 90})
        assert status == 201 and minted["key_id"] == 3
        code = codes.verify(minted["code"], {3: public}, codes.Policy("cabinet-0001"),
                            now=time.time(), clock_trusted=True, last_trusted=None)
        assert (code.subject, code.role, code.audience) == ("acct-77", "shopper", "cabinet-0001")
        status, refused = b.operator("POST", "access-codes", {"audience": "cabinet-0001",
                                                              "subject": "x", "role": "owner"})
        assert status == 422 and "role" in refused["error"]
    finally:
        b.close()


def _faces_at_the_limit():
    """enroll_faces at its documented limits: 500 members x 5 embeddings (6.9 MB of JSON)."""
    rng = random.Random(5)
    return {"members": [{"member_id": f"m{i}", "consent": True,
                         "embeddings": [[rng.uniform(-0.3, 0.3) for _ in range(128)]
                                        for _ in range(5)]} for i in range(500)]}


def test_one_big_pending_command_never_cuts_the_cabinet_off(tmp_path, backend):
    """Issue 15 #2: a pending enroll_faces at its documented limits made every upload and
    long-poll reply too large for the cabinet: a stored sale was re-sent for ever and the commands
    behind it never arrived. The cabinet says how much it can take; the backend pages to that."""
    issued = []
    for kind, args in (("enroll_faces", _faces_at_the_limit()),
                       ("enroll_faces", _faces_at_the_limit()),
                       ("set_setpoint", {"celsius": 5})):
        status, command = backend.operator("POST", "cabinets/cabinet-0001/commands",
                                           {"type": kind, "args": args, "lifetime_seconds": 600})
        assert status == 201
        issued.append(command["command_id"])
    store = make_store(tmp_path)
    add_sales(store, 3)
    events = []
    up = uploader_for(store, backend.url, backend.device_token, events.append)
    up.transport.timeouts = (1, 30)
    drain(up, store, limit=2)
    assert backend.storage.fleet.counts("cabinet-0001") == {"sale": 3}, "stored, acknowledged, once"
    (arrived,) = [e for e in events if isinstance(e, CommandsArrived)]
    assert [c["command_id"] for c in arrived.commands] == issued[:1], "the ack holds a page"
    transport = Transport(backend.url, "cabinet-0001", backend.device_token, read_timeout=30)
    poller = CommandPoller(transport, events.append, wait_seconds=0)
    for _ in range(3):
        poller.step()
    pages = [[c["command_id"] for c in e.commands] for e in events
             if isinstance(e, CommandsArrived)]
    assert pages[1:] == [issued[:1], issued[1:]], "in order, in pages the cabinet can read"
    assert not [e for e in events if isinstance(e, SyncReported) and not e.ok]


def test_a_command_no_cabinet_can_take_is_refused_or_finished_as_too_large(backend):
    """Issue 15 #2, the backend's side: a command over the largest page is refused when issued
    (413); one that a cabinet cannot take (an old cabinet reads 4 MiB) is finished `rejected`
    with the sizes instead of blocking every reply, and the commands after it still go."""
    import requests

    huge = {"members": [{"member_id": "m", "consent": True, "embeddings": [[0.5] * 128]}],
            "padding": "x" * (7 * 1024 * 1024)}
    status, reply = backend.operator("POST", "cabinets/cabinet-0001/commands",
                                     {"type": "enroll_faces", "args": huge})
    assert status == 413 and "at most" in reply["error"]
    _, faces = backend.operator("POST", "cabinets/cabinet-0001/commands",
                                {"type": "enroll_faces", "args": _faces_at_the_limit(),
                                 "lifetime_seconds": 600})
    _, setpoint = backend.operator("POST", "cabinets/cabinet-0001/commands",
                                   {"type": "set_setpoint", "args": {"celsius": 5}})
    old_cabinet = requests.get(backend.url + "/v1/cabinets/cabinet-0001/commands",
                               headers={"Authorization": f"Bearer {backend.device_token}"},
                               timeout=30)
    assert len(old_cabinet.content) < 4 * 1024 * 1024
    assert [c["command_id"] for c in old_cabinet.json()["commands"]] == [setpoint["command_id"]]
    _, fate = backend.operator("GET", f"commands/{faces['command_id']}")
    assert fate["status"] == "rejected" and fate["detail"].startswith("too_large: ")


def test_a_reply_too_large_is_reported_and_never_asked_for_identically(tmp_path):
    """Issue 15 #2, the cabinet's side: a backend (or proxy) that ignores the cabinet's page size
    sends a reply over its limit. The poller raises the alarm's report and asks for half as much
    each time, never the same request again until one is answered."""
    import http.server
    import threading
    from urllib.parse import parse_qs, urlsplit

    from cabinet.sync_protocol import MAX_REPLY_BYTES

    asked = []

    class Oversized(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            asked.append(int(parse_qs(urlsplit(self.path).query)["max_bytes"][0]))
            body = b'{"commands": [], "pad": "' + b"x" * (MAX_REPLY_BYTES + 10) + b'"}'
            if len(asked) >= 3:
                body = b'{"commands": [], "server_time": "2026-11-30T00:00:00Z"}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Oversized)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        events = []
        transport = Transport(f"http://127.0.0.1:{server.server_port}", "cabinet-0001", "t")
        poller = CommandPoller(transport, events.append, wait_seconds=0,
                               backoff=Backoff(base=0.01, cap=0.05))
        for _ in range(3):
            poller.step()
        assert asked[0] > asked[1] > asked[2], "each request asks for less"
        reports = [e for e in events if isinstance(e, SyncReported)]
        assert [(r.ok, r.reply_too_large, r.channel) for r in reports] == [
            (False, True, "commands"), (False, True, "commands"), (True, False, "commands")]
        assert "too large" in reports[0].error
    finally:
        server.shutdown()
        server.server_close()


def test_a_cabinet_asking_for_less_for_a_while_only_defers_a_big_command(backend):
    """Review of issue 15: a 4.5 MB command was finished `rejected too_large` when the cabinet
    asked for less than usual (a half page after a reply too large, none in an ack), though its
    normal page holds it."""
    import requests

    args = {"members": [{"member_id": f"m{i}", "consent": True,
                         "embeddings": [[0.123456789012345] * 128] * 5} for i in range(250)]}
    _, big = backend.operator("POST", "cabinets/cabinet-0001/commands",
                              {"type": "enroll_faces", "args": args, "lifetime_seconds": 600})
    url = backend.url + "/v1/cabinets/cabinet-0001/commands"
    auth = {"Authorization": f"Bearer {backend.device_token}"}
    # Asked with a two-minute long-poll, it answers (empty) at once: a command waits that this
    # page is too small for, so the cabinet can grow its page back without waiting each time.
    # (Held as a long-poll, the read would time out here.)
    small = requests.get(url, params={"max_bytes": 65536, "wait": 120}, headers=auth,
                         timeout=30).json()
    assert small["commands"] == []
    assert backend.operator("GET", f"commands/{big['command_id']}")[1]["status"] == "issued"
    full = requests.get(url, params={"max_bytes": 7 << 20}, headers=auth, timeout=30).json()
    assert [c["command_id"] for c in full["commands"]] == [big["command_id"]]
