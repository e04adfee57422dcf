"""Software updates, the daemon's first step (cabinet/update.py, docs/updates.md): a release of this
checkout, fetched by the backend's update_software command or uploaded with `cabinet update`, is
verified with the config's release key and spooled for the installer; a bundle with one byte
changed, or signed by another key, or sent to a cabinet with no key, is refused with the reason
and nothing is spooled; a download cut mid-file is resumed. (Installing, switching and rolling
back: tests/test_update_install.py.)"""

from __future__ import annotations

import functools
import http.server
import json
import tarfile
import threading

import pytest

from cabinet.events import UpdateReported
from cabinet.release import ReleaseRefused
from cabinet.update import Updates
from tools import release

from .conftest import wait_for
from .test_commands import command, deliver, make_rig, results


@pytest.fixture(scope="module")
def releases(tmp_path_factory):
    folder = tmp_path_factory.mktemp("releases")
    public = release.keygen(folder / "key")
    good = folder / "good.release"
    release.build(folder / "key" / "release-signing-key", good, [], "0.1.2")
    other = release.keygen(folder / "other")
    foreign = folder / "foreign.release"
    release.build(folder / "other" / "release-signing-key", foreign, [], "0.1.2")
    tampered = folder / "tampered.release"
    data = bytearray(good.read_bytes())
    wheel = next(m for m in tarfile.open(good).getmembers() if m.name.endswith(".whl"))
    data[wheel.offset_data + 100] ^= 0x01
    tampered.write_bytes(bytes(data))
    return {"public": public, "other": other, "good": good, "foreign": foreign,
            "tampered": tampered}


def sha(path):
    import hashlib
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_release_by_command_is_verified_and_spooled_and_a_tampered_one_refused(
        tmp_path, factory, releases):
    www = releases["good"].parent
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    rig = make_rig(tmp_path, factory)
    updates = Updates(tmp_path / "updates", releases["public"], refuse_loopback=False,
                      outcome=lambda record: rig.c.emit(UpdateReported(record)))
    updates.start()
    rig.c.ops_context.on_update = updates.want
    try:
        c = command("update_software", {"url": f"{url}/good.release",
                                         "sha256": sha(releases["good"])})
        deliver(rig, c)
        assert results(rig)[c["command_id"]]["status"] == "done"

        def states():
            rig.step()
            return [r["state"] for r in rig.outbox("update")]
        wait_for(lambda: "verified" in states(), timeout=60, what="the release verified")
        verified = [r for r in rig.outbox("update") if r["state"] == "verified"][0]
        assert states() == ["downloading", "verified"] and verified["version"] == "0.1.2"
        ready = updates.ready()
        assert ready["version"] == "0.1.2" and ready["sha256"] == sha(releases["good"])
        spooled = list((tmp_path / "updates" / "ready").iterdir())
        assert len(spooled) == 1 and (spooled[0] / "release.bundle").read_bytes() == \
            releases["good"].read_bytes()
        assert list((spooled[0] / "unpacked" / "wheels").glob("cabinet_controller-0.1.2-*.whl"))

        for name, why in (("tampered", "sha256 differs from the signed manifest"),
                          ("foreign", "signed by another key")):
            deliver(rig, command("update_software", {"url": f"{url}/{name}.release",
                                                     "sha256": sha(releases[name])}))
            def refused():
                rig.step()
                return any(why in r.get("reason", "") for r in rig.outbox("update"))
            wait_for(refused, timeout=60, what=f"the {name} release refused")
            assert "update" in {a["kind"] for a in rig.c.snapshot["alarms"]}
            assert updates.ready() == ready, "the verified release stays the one spooled"
            assert list((tmp_path / "updates" / "ready").iterdir()) == spooled
            assert not list((tmp_path / "updates").glob("staging-*"))
    finally:
        updates.close()
        server.shutdown()


def test_a_cabinet_with_no_release_key_takes_no_update(tmp_path, releases):
    updates = Updates(tmp_path / "updates", "")
    with pytest.raises(ReleaseRefused, match="no release key configured"):
        updates.check(releases["good"], sha(releases["good"]))
    assert updates.ready() is None


def test_on_site_cabinet_update_uploads_the_bundle(tmp_path, capsys, releases):
    from cabinet.cli import technician_main
    from tools.daemon_process import CabinetProcess

    config = tmp_path / "cabinet.toml"
    config.write_text(f'[updates]\npublic_key = "{releases["public"]}"\n')
    daemon = CabinetProcess("--config", str(config), data_dir=tmp_path / "data")
    try:
        daemon.wait_ready()
        wait_for(lambda: daemon.url, timeout=10, what="the URL")
        with pytest.raises(SystemExit, match="signed by another key"):
            technician_main(["update", str(releases["foreign"]), "--url", daemon.url])
        assert technician_main(["update", str(releases["good"]), "--url", daemon.url]) == 0
        assert "release 0.1.2 verified" in capsys.readouterr().out
        ready = json.loads((tmp_path / "data" / "updates" / "ready.json").read_text())
        assert ready["version"] == "0.1.2"
    finally:
        daemon.terminate()


class Flaky(http.server.BaseHTTPRequestHandler):
    """Serves one file; the first GET is cut after `cut` bytes (the connection closes, as a
    mobile link drops; with `cut` None, before any reply); later GETs honour a Range header
    unless `ranges` is False."""
    data: bytes = b""
    cut: int | None = 0
    ranges = True
    seen: list = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        asked = self.headers.get("Range")
        type(self).seen.append(asked)
        if self.cut is None and len(self.seen) == 1:
            self.connection.shutdown(2)   # the server is not there yet
            return
        start = int(asked[len("bytes="):-1]) if asked and self.ranges else 0
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range",
                             f"bytes {start}-{len(self.data) - 1}/{len(self.data)}")
        self.send_header("Content-Length", str(len(self.data) - start))
        self.end_headers()
        if len(self.seen) == 1:
            self.wfile.write(self.data[:self.cut])
            self.wfile.flush()
            self.connection.shutdown(2)   # cut mid-body
            return
        self.wfile.write(self.data[start:])


@pytest.mark.parametrize("ranges, down_first", [(True, False), (False, False), (True, True)])
def test_a_download_cut_mid_file_is_resumed_where_it_stopped(tmp_path, releases, ranges,
                                                             down_first):
    data = releases["good"].read_bytes()
    handler = type("Handler", (Flaky,), {"data": data, "ranges": ranges, "seen": [],
                                         "cut": None if down_first else len(data) // 3})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    records = []
    updates = Updates(tmp_path / "updates", releases["public"], refuse_loopback=False,
                      outcome=records.append)
    updates.PAUSES = (0.1,)
    updates.start()
    try:
        updates.want(f"http://127.0.0.1:{server.server_address[1]}/good.release",
                     sha(releases["good"]))
        wait_for(lambda: any(r["state"] == "verified" for r in records), timeout=60,
                 what="the release verified after the cut")
    finally:
        updates.close()
        server.shutdown()
    assert handler.seen[0] is None
    assert [r["state"] for r in records] == ["downloading", "verified"]
    assert not list((tmp_path / "updates" / "incoming").iterdir()), "no part file left"
    if down_first:   # nothing had arrived: tried again, whole
        assert handler.seen == [None, None]
        return
    # The second request asks for the rest only: what was written before the cut is kept (whole
    # chunks: the one the cut broke is asked for again). A server that ignores it sends all.
    start = int(handler.seen[1][len("bytes="):-1])
    assert 0 < start <= len(data) // 3, handler.seen
    assert [r["state"] for r in records] == ["downloading", "verified"]
    assert updates.ready()["sha256"] == sha(releases["good"])
    assert not list((tmp_path / "updates" / "incoming").iterdir()), "no part file left"


def test_a_download_given_up_leaves_no_part_behind(tmp_path, releases):
    """A server that cuts every reply: resumed ATTEMPTS times, then refused with the reason,
    and the part file is gone (it would hold its room on the card for nothing)."""
    data = releases["good"].read_bytes()

    class Cutting(Flaky):
        def do_GET(self):
            type(self).seen.append(self.headers.get("Range"))
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[:70000])
            self.wfile.flush()
            self.connection.shutdown(2)
    Cutting.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Cutting)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    records = []
    updates = Updates(tmp_path / "updates", releases["public"], refuse_loopback=False,
                      outcome=records.append)
    updates.PAUSES, updates.ATTEMPTS = (0.05,), 3
    updates.start()
    try:
        updates.want(f"http://127.0.0.1:{server.server_address[1]}/good.release",
                     sha(releases["good"]))
        wait_for(lambda: any(r["state"] == "refused" for r in records), timeout=60,
                 what="the download given up")
    finally:
        updates.close()
        server.shutdown()
    assert len(Cutting.seen) == 3
    assert "gave up after 3 attempts" in records[-1]["reason"]
    assert not list((tmp_path / "updates" / "incoming").iterdir()), "no part file left"
