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
            {"url": f"{base}/missing.png", "sha256": "0" * 64, "seconds": 8}])
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
