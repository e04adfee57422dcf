"""The serial QR scanner on a real pty: lines, garbage, overlong lines, unplug and replug."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.events import CodeScanned, DeviceFaulted, DeviceRecovered, ScanUnreadable
from drivers.scanner import LineSplitter, ScannerReader
from drivers.sim.pty import PtyPort

from .conftest import wait_for


@pytest.fixture
def scanner(tmp_path, recorder):
    port = PtyPort(tmp_path / "scanner")
    reader = ScannerReader(str(port.path), baudrate=9600, max_line_bytes=64, emit=recorder)
    reader.start()
    wait_for(lambda: reader.connected, what="the port open")
    yield port, reader
    reader.close()
    port.close()


def _texts(recorder):
    return [e.text for e in recorder.of(CodeScanned)]


def test_lines_with_any_line_ending_in_pieces(scanner, recorder):
    port, reader = scanner
    port.write(b"CAB1:abc")
    port.write(b"def\r\nsecond\n")
    port.write(b"third\r")
    wait_for(lambda: len(_texts(recorder)) == 3, what="three codes")
    assert _texts(recorder) == ["CAB1:abcdef", "second", "third"]


def test_garbage_is_reported_and_the_next_code_still_reads(scanner, recorder):
    port, reader = scanner
    port.write(b"\xff\xfe\x00junk\r\n")
    port.write(b"x" * 200 + b"\r\n")          # longer than max_line_bytes: refused whole
    port.write(b"bell\x07\r\n")
    port.write("藏文 ok\r\n".encode())
    wait_for(lambda: "藏文 ok" in _texts(recorder), what="the good code")
    reasons = [e.reason for e in recorder.of(ScanUnreadable)]
    assert any("not UTF-8" in r for r in reasons)
    assert any("longer than 64 bytes" in r for r in reasons)
    assert any("control characters" in r for r in reasons)
    assert _texts(recorder) == ["藏文 ok"], "nothing cut short or garbled may pass as a code"


def test_unplug_is_a_fault_and_replug_recovers(scanner, recorder):
    port, reader = scanner
    port.write(b"one\r\n")
    wait_for(lambda: _texts(recorder) == ["one"])
    port.unplug()
    fault = wait_for(lambda: recorder.of(DeviceFaulted), what="fault")[0]
    assert fault.device == "scanner" and str(port.path) in fault.detail
    port.plug()
    wait_for(lambda: recorder.of(DeviceRecovered), timeout=15, what="recovery")
    wait_for(lambda: reader.connected, what="the port open")
    port.write(b"two\r\n")
    wait_for(lambda: _texts(recorder) == ["one", "two"], what="reading after replug")


def test_missing_port_at_start(tmp_path, recorder):
    reader = ScannerReader(str(tmp_path / "nothing"), baudrate=9600, max_line_bytes=64,
                           emit=recorder)
    reader.start()
    try:
        fault = wait_for(lambda: recorder.of(DeviceFaulted))[0]
        assert "not present" in fault.detail
    finally:
        reader.close()


@given(st.lists(st.binary(min_size=1, max_size=30), max_size=10), st.integers(1, 7))
def test_splitter_yields_the_same_lines_however_the_bytes_are_chunked(lines, chunk):
    lines = [line.replace(b"\r", b"").replace(b"\n", b"") for line in lines]
    stream = b"".join(line + b"\r\n" for line in lines)
    whole = LineSplitter(20).feed(stream)
    parts = LineSplitter(20)
    pieces = []
    for i in range(0, len(stream), chunk):
        pieces += parts.feed(stream[i:i + chunk])
    norm = lambda items: [i if isinstance(i, bytes) else "overlong" for i in items]  # noqa: E731
    assert norm(whole) == norm(pieces)
    assert [i for i in whole if isinstance(i, bytes)] == [l for l in lines if 0 < len(l) <= 20]


def test_noise_without_a_line_end_does_not_spoil_the_next_scan():
    """Issue 15 #11: bytes with no line end (noise, a scan cut off by an unplug) made the next,
    valid code unreadable. After a pause they are dropped, and the next code reads whole."""
    splitter = LineSplitter(64)
    assert splitter.feed(b"\xde\xad\xbe\xefABCD", now=10.0) == []
    got = splitter.feed(b"CAB1:code\r\n", now=12.0)
    assert isinstance(got[0], ValueError) and "no line end" in str(got[0])
    assert got[1:] == [b"CAB1:code"]
    # Within one burst nothing is dropped: a code in pieces a millisecond apart reads whole.
    assert splitter.feed(b"CAB1:", now=20.0) == []
    assert splitter.feed(b"rest\r\n", now=20.001) == [b"CAB1:rest"]


def test_noise_then_a_code_on_the_real_port(scanner, recorder):
    import time
    port, reader = scanner
    port.write(b"\xde\xad\xbe\xef\x41\x42\x43\x44")
    time.sleep(1.0)
    port.write(b"CAB1:after-noise\r\n")
    wait_for(lambda: _texts(recorder) == ["CAB1:after-noise"], what="the code after the noise")
