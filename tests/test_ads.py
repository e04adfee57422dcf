"""The ads cache: files fetched from a real HTTP server, kept only when the sha256 matches."""

from __future__ import annotations

import functools
import hashlib
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

from cabinet.ads import AdsCache


def test_ads_are_fetched_checked_and_pruned(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    good, other = b"\x89PNG fake ad one" * 100, b"second ad" * 50
    (served / "one.png").write_bytes(good)
    (served / "two.png").write_bytes(other)
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *a: None
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        sha_good = hashlib.sha256(good).hexdigest()
        lying = hashlib.sha256(b"not what is served").hexdigest()
        cache = AdsCache(tmp_path / "ads", [
            {"url": f"{base}/one.png", "sha256": sha_good, "seconds": 8},
            {"url": f"{base}/two.png", "sha256": lying, "seconds": 8},
            {"url": f"{base}/missing.png", "sha256": "0" * 64, "seconds": 8}],
            refuse_loopback=False)   # this test's server is on loopback
        cache.sync_once()
        ready = cache.ready()
        assert [a["sha256"] for a in ready] == [sha_good]
        assert (tmp_path / "ads" / sha_good).read_bytes() == good
        status = cache.status()
        assert status[sha_good] == "ready"
        assert status[lying].startswith("failed: checksum mismatch")
        assert "404" in status["0" * 64]
        assert sorted(p.name for p in (tmp_path / "ads").iterdir()) == [sha_good]
        cache.set_playlist([])  # a new playlist without it: the file goes
        cache.sync_once()
        assert list((tmp_path / "ads").iterdir()) == [] and cache.ready() == []
    finally:
        server.shutdown()
        server.server_close()


def test_ads_never_come_from_the_device_itself_redirects_included(tmp_path):
    """Issue 15 #10: the fetcher followed a redirect to http://127.0.0.1:<daemon>/api/health and
    stored it as an ad (an ad at /api/events would stall the ads thread for hours)."""
    from http.server import BaseHTTPRequestHandler

    class Redirect(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(302)
            self.send_header("Location", "http://127.0.0.1:9/api/events")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a):
            pass
    server = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        direct = {"url": f"http://127.0.0.1:{server.server_address[1]}/ad.png",
                  "sha256": "1" * 64, "seconds": 8}
        local_name = {"url": "http://localhost:9/ad.png", "sha256": "2" * 64, "seconds": 8}
        other = {"url": "ftp://example.org/ad.png", "sha256": "3" * 64, "seconds": 8}
        mapped = {"url": "http://[::ffff:127.0.0.1]:9/ad.png", "sha256": "4" * 64, "seconds": 8}
        cache = AdsCache(tmp_path / "ads", [direct, local_name, other, mapped])
        cache.sync_once()
        status = cache.status()
        assert "is this device" in status["1" * 64] and "is this device" in status["2" * 64]
        assert "is this device" in status["4" * 64]     # IPv4-mapped IPv6 is loopback too
        assert "not an http(s) URL" in status["3" * 64]
        # A host that is not the device, redirecting to it: refused at the redirect.
        followed = AdsCache(tmp_path / "ads2", refuse_loopback=True)
        followed.refuse_loopback = False            # let the first hop through (a test server)
        checks = []
        original = followed._check_url

        def check(url):
            checks.append(url)
            followed.refuse_loopback = len(checks) > 1   # from the redirect on: the real rule
            original(url)
        followed._check_url = check
        followed.set_playlist([direct])
        followed.sync_once()
        assert checks[-1] == "http://127.0.0.1:9/api/events"
        assert "is this device" in followed.status()["1" * 64]
        assert list((tmp_path / "ads").iterdir()) == [] and list((tmp_path / "ads2").iterdir()) == []
    finally:
        server.shutdown()
        server.server_close()



def _serve(handler):
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _cut_off_at_one_second(tmp_path, port: int, sha: str) -> None:
    """Fetch an ad from a trickling server on `port` with a one-second limit: it must end, and
    say why, well before the server would."""
    ad = {"url": f"http://127.0.0.1:{port}/ad.png", "sha256": sha, "seconds": 8}
    cache = AdsCache(tmp_path / "ads", [ad], refuse_loopback=False, timeout=5, fetch_seconds=1.0)
    done = threading.Thread(target=cache.sync_once, daemon=True)
    done.start()
    done.join(timeout=20)
    assert not done.is_alive(), "still reading a trickle long past the limit"
    assert "still downloading after 1 s" in cache.status()[sha]


def test_a_server_trickling_an_ad_is_cut_off_at_the_time_limit(tmp_path):
    """Issue 15 #10: the time limit was checked between 64 KiB chunks, so a server sending a byte
    just inside every read timeout held the ads thread for hours. The socket is shut down at the
    limit, which ends the read in progress."""
    from http.server import BaseHTTPRequestHandler

    stop = threading.Event()

    class Trickle(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            try:
                while not stop.wait(0.2):
                    self.wfile.write(b"x")
                    self.wfile.flush()
            except OSError:
                pass

        def log_message(self, *a):
            pass
    server = _serve(Trickle)
    try:
        _cut_off_at_one_second(tmp_path, server.server_address[1], "5" * 64)
        assert list((tmp_path / "ads").iterdir()) == [], "no .part left behind"
    finally:
        stop.set()
        server.shutdown()
        server.server_close()


def test_a_name_that_rebinds_to_this_device_is_refused_before_its_body_is_read(tmp_path,
                                                                                monkeypatch):
    """Issue 15 #10: the host was resolved to check it, then resolved again to connect; a name
    answering a public address first and 127.0.0.1 next (DNS rebinding) got through. The address
    actually connected to is checked too."""
    import socket as socket_module
    from http.server import BaseHTTPRequestHandler

    class Ad(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "3")
            self.end_headers()
            self.wfile.write(b"ad!")

        def log_message(self, *a):
            pass
    server = _serve(Ad)
    real = socket_module.getaddrinfo
    answers = []

    def rebinding(host, *args, **kwargs):
        if host == "ads.example" and not answers:
            answers.append("public")   # the first answer, which the check sees
            return [(socket_module.AF_INET, socket_module.SOCK_STREAM, 6, "",
                     ("93.184.216.34", 80))]
        return real("127.0.0.1" if host == "ads.example" else host, *args, **kwargs)
    monkeypatch.setattr(socket_module, "getaddrinfo", rebinding)
    try:
        ad = {"url": f"http://ads.example:{server.server_address[1]}/ad.png",
              "sha256": hashlib.sha256(b"ad!").hexdigest(), "seconds": 8}
        cache = AdsCache(tmp_path / "ads", [ad])
        cache.sync_once()
        assert answers == ["public"], "the check saw the public address"
        assert "is this device (127.0.0.1)" in cache.status()[ad["sha256"]]
        assert list((tmp_path / "ads").iterdir()) == []
    finally:
        server.shutdown()
        server.server_close()


def test_a_server_trickling_its_headers_is_cut_off_at_the_time_limit(tmp_path):
    """Review of issue 15: the time limit was armed only once the headers had come, so a server
    sending a header line a byte at a time still held the ads thread."""
    import socket

    stop = threading.Event()
    listener = socket.create_server(("127.0.0.1", 0))

    def trickle():
        conn, _ = listener.accept()
        conn.recv(65536)
        try:
            for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"x" * 10000:
                if stop.wait(0.2):
                    break
                conn.sendall(bytes([byte]))
        except OSError:
            pass
        finally:
            conn.close()
    threading.Thread(target=trickle, daemon=True).start()
    try:
        _cut_off_at_one_second(tmp_path, listener.getsockname()[1], "6" * 64)
    finally:
        stop.set()
        listener.close()
