"""No reply the backend (or anything pretending to be it) sends can crash or stall the uploader,
or make it mark a record delivered that was not acknowledged."""

from __future__ import annotations

import json
import socket
import threading
import time

from hypothesis import HealthCheck, example, given, settings, strategies as st

from cabinet.sync_protocol import ReplyError, parse_ack, parse_commands, retry_after

from .test_sync import add_sales, make_store, uploader_for

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-2**70, max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=15), inner,
                                                                max_size=6),
    max_leaves=25)
ack_like = st.fixed_dictionaries(
    {"stored_through": st.integers(-3, 20) | json_values},
    optional={"rejected": st.lists(st.fixed_dictionaries(
        {"seq": st.integers(-2, 20) | json_values},
        optional={"reason": st.text(max_size=10) | json_values}), max_size=4) | json_values,
        "commands": st.lists(json_values, max_size=3) | json_values,
        "server_time": st.sampled_from(["2026-11-23T12:00:00Z", "2026-11-23T12:00:00",
                                        "yesterday", ""]) | json_values})
replies = (st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode())
           | ack_like.map(lambda v: json.dumps(v).encode()))


@settings(max_examples=2000, deadline=None)
@given(raw=replies, sent=st.lists(st.integers(1, 15), min_size=1, max_size=8, unique=True))
def test_parse_ack_returns_an_ack_within_the_batch_or_a_reply_error(raw, sent):
    sent = sorted(sent)
    try:
        ack = parse_ack(raw, sent)
    except ReplyError as exc:
        assert str(exc)
        return
    assert set(ack.stored) <= set(sent) and set(ack.rejected) <= set(sent)
    assert not set(ack.stored) & set(ack.rejected)
    assert isinstance(ack.commands, list)


@settings(max_examples=1000, deadline=None)
@given(raw=replies)
def test_parse_commands_returns_a_list_or_a_reply_error(raw):
    _check_commands(raw)


def test_times_at_the_edge_of_the_calendar_are_reply_errors():
    for raw in (b'{"server_time": "0001-01-01T00:00:00+23:59"}',
                b'{"server_time": "9999-12-31T23:59:59-23:59"}'):
        _check_commands(raw)


def _check_commands(raw):
    try:
        reply = parse_commands(raw)
    except ReplyError:
        return
    assert isinstance(reply.commands, list)


@example(header="²")  # str.isdigit() is True for it; float() refuses it (found by this test)
@given(header=st.none() | st.text(max_size=40) | st.sampled_from(
    ["120", "0", "99999999999999999999", "Wed, 21 Oct 2015 07:28:00 GMT", "Fri, 31 Dec 9999"]))
def test_retry_after_is_a_bounded_wait_or_none(header):
    wait = retry_after(header, time.time())
    assert wait is None or 0 <= wait <= 3600


class RawServer:
    """A TCP server that answers every HTTP request with the bytes it is given: the worst a
    backend or a middlebox can do, byte for byte."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.reply = b""
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    data = b""
                    while b"\r\n\r\n" not in data:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                    conn.sendall(self.reply)
                except OSError:
                    pass

    def close(self):
        self.sock.close()


http_replies = st.one_of(
    st.binary(max_size=300),
    st.builds(lambda status, body, length: (
        f"HTTP/1.1 {status} X\r\nContent-Length: {length if length is not None else len(body)}"
        f"\r\nConnection: close\r\n\r\n").encode() + body,
        st.sampled_from([200, 200, 200, 201, 204, 301, 400, 401, 404, 413, 422, 429, 500, 503]),
        replies, st.none() | st.integers(0, 400)))


def test_arbitrary_http_replies_never_crash_or_stall_the_uploader_or_lose_records(tmp_path):
    store = make_store(tmp_path)
    add_sales(store, 5)
    server = RawServer()
    reports = []
    up = uploader_for(store, server.url, "token", reports.append)
    seqs = [s for (s,) in store._db.execute("SELECT seq FROM outbox ORDER BY seq")]

    @settings(max_examples=300, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(reply=http_replies)
    def one(reply):
        server.reply = reply
        delay = up.step()
        assert 0 <= delay <= 3600
        # Whatever happened, every sale is either still queued, acknowledged by a well-formed
        # reply that named it, or in the dead-letter table with the reply's words.
        queued = {s for (s,) in store._db.execute("SELECT seq FROM outbox")}
        dead = {d["seq"] for d in up.outbox.stats()["dead_letters"]}
        assert queued | dead == set(seqs)
        delivered = {s for (s,) in store._db.execute(
            "SELECT seq FROM outbox WHERE delivered_at IS NOT NULL")}
        if delivered:  # only on a whole, well-formed 200 that named exactly these
            head, _, body = reply.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 ")
            assert delivered == set(parse_ack(body, seqs).stored)
        # Put things back for the next example.
        store._db.execute("UPDATE outbox SET delivered_at = NULL")
        for d in dead:
            store._db.execute("INSERT INTO outbox (seq, record_id, kind, body, created_at) "
                              "SELECT seq, record_id, kind, body, at FROM dead_letters "
                              "WHERE seq = ?", (d,))
        store._db.execute("DELETE FROM dead_letters")
        up.limit = up.max_records

    try:
        one()
    finally:
        server.close()
    assert any(not r.ok for r in reports)
