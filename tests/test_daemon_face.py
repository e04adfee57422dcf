"""Face checkout, black-box: the operator enrols a member from photographs at the reference
backend, the backend sends the embeddings, cabinetd --simulate enrols them; a still photograph
held to the simulated camera never opens the door; a head turning does, and the sale is charged
to the member; the technician's `cabinet faces` verbs list, delete and enrol."""

from __future__ import annotations

import base64
import contextlib
import io
import time

import pytest

from cabinet.cli import technician_main

from .conftest import wait_for
from .test_daemon_sync import _check_against_openapi, start_synced
from .test_face import FACES, frame_640x480, needs_model

pytestmark = [pytest.mark.slow, needs_model]


def show(daemon, tmp_path, name, *, flip=False):
    import cv2
    path = tmp_path / f"frame-{name.replace('/', '_')}-{flip}.png"
    if not path.exists():
        cv2.imwrite(str(path), frame_640x480(FACES / name, flip=flip))
    status, reply = daemon.post("/sim/camera", {"path": str(path)})
    assert status == 200, reply


def cli(*argv) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            code = technician_main(list(argv))
        except SystemExit as exc:
            code = exc.code
    return code, out.getvalue()


def test_enrol_at_the_backend_then_a_photo_is_refused_and_a_turning_head_opens(tmp_path):
    traffic = []
    backend, daemon = start_synced(tmp_path, traffic, "[face]\nattempt_seconds = 3.0\n")
    try:
        photos = [base64.b64encode(p.read_bytes()).decode()
                  for p in sorted((FACES / "train" / "obama").iterdir())]
        status, reply = backend.operator("POST", "cabinets/cabinet-0001/faces",
                                         {"member_id": "m-obama", "consent": False,
                                          "photos": photos})
        assert status == 422 and "consent" in reply["error"]
        status, reply = backend.operator("POST", "cabinets/cabinet-0001/faces",
                                         {"member_id": "m-obama", "consent": True,
                                          "photos": [base64.b64encode(
                                              (FACES / "test" / "obama_and_biden.jpg")
                                              .read_bytes()).decode()]})
        assert status == 422 and "faces found" in reply["error"]
        status, command = backend.operator("POST", "cabinets/cabinet-0001/faces",
                                           {"member_id": "m-obama", "consent": True,
                                            "photos": photos})
        assert status == 201 and len(command["args"]["members"][0]["embeddings"]) == 2
        wait_for(lambda: daemon.state()["face"]["members"] == 1, timeout=10,
                 what="the enrolment on the cabinet")
        done = wait_for(lambda: (c := backend.operator("GET", f"commands/{command['command_id']}")
                                 [1])["status"] != "issued" and c, timeout=10, what="the result")
        assert done["status"] == "done" and done["result"]["enrolled"] == ["m-obama"]
        import sqlite3
        with sqlite3.connect(tmp_path / "backend.db") as db:
            (args,) = db.execute("SELECT args FROM commands WHERE command_id = ?",
                                 (command["command_id"],)).fetchone()
        assert '"embeddings": 2' in args, "delivered: the backend keeps no embeddings"
        wait_for(lambda: all(s["stable"] for s in daemon.state()["shelves"]), timeout=15,
                 what="shelves stable")
        key = tmp_path / "data" / "sim" / "face.key"
        assert key.stat().st_mode & 0o777 == 0o600

        # A photograph held still in front of the camera: asked to turn, refused, never opened.
        show(daemon, tmp_path, "test/obama1.jpg")
        prompted = False
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            state = daemon.state()
            assert state["lock"] == "locked" and state["session"] is None
            prompted = prompted or state["screen"].get("prompt") == "turn_head"
            time.sleep(0.1)
        assert prompted
        assert daemon.state()["last_refusal"]["reason"] == "face_not_live"

        # A head turning left and right (two photographs and a mirror image, as the test in
        # test_face.py explains): opens, for the member.
        frames = [("test/obama1.jpg", False), ("misc/obama3.jpg", False), ("test/obama1.jpg", True)]
        deadline = time.monotonic() + 15
        i = 0
        while daemon.state()["session"] is None:
            assert time.monotonic() < deadline, daemon.log_lines[-20:]
            show(daemon, tmp_path, frames[i % 3][0], flip=frames[i % 3][1])
            i += 1
            time.sleep(0.4)
        state = daemon.state()
        assert state["session"]["method"] == "face" and state["lock"] == "unlocked"
        show(daemon, tmp_path, "misc/32bit.png")   # what the camera sees next does not matter
        daemon.post("/sim/door", {"state": "open"})
        daemon.post("/sim/shelf", {"shelf": 1, "take": {"water-550ml": 1}})
        daemon.post("/sim/door", {"state": "closed"})

        def sale_arrived():
            return backend.operator("GET", "sales?cabinet_id=cabinet-0001")[1]["records"]
        (sale,) = wait_for(sale_arrived, timeout=20, what="the sale at the backend")
        assert sale["body"]["authorisation"] == {**sale["body"]["authorisation"],
                                                 "method": "face", "subject": "m-obama"}

        # The technician's verbs.
        code, out = cli("faces", "list", "--url", daemon.url)
        assert code == 0 and "m-obama" in out and "2 embedding(s)" in out
        code, _ = cli("faces", "enroll", str(FACES / "train" / "biden" / "biden.jpg"),
                      "--member", "m-biden", "--url", daemon.url)
        assert code == 2        # no --consent
        code, out = cli("faces", "enroll", str(FACES / "train" / "biden" / "biden.jpg"),
                        "--member", "m-biden", "--consent", "--url", daemon.url)
        assert code == 0 and "2 member(s)" in out
        code, out = cli("faces", "delete", "m-obama", "m-ghost", "--url", daemon.url)
        assert code == 0 and "deleted: m-obama" in out and "not enrolled: m-ghost" in out
        assert daemon.state()["face"]["members"] == 1
        _check_against_openapi(traffic, {("POST", "/v1/operator/cabinets/cabinet-0001/faces")})
    finally:
        assert daemon.terminate() == 0, "\n".join(daemon.log_lines[-20:])
        backend.close()
