"""Face enrolments on the controller: the backend's enroll_faces/delete_faces commands, the sealed
rows in a real SQLite file (read back byte by byte after a deletion), the key kept outside it,
consent, and what the camera's conclusions do (a session, a refusal, a pause; QR unaffected)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from cabinet.events import FaceAttemptFailed, FaceChecking, FaceRecognised

from .test_commands import command, deliver, make_rig, results
from .test_checkout import SHOPPER
from .test_face import FACES, needs_model


@pytest.fixture(scope="module")
def embeddings():
    from cabinet.access.face_model import FaceModel
    model = FaceModel()
    return {p.name: [model.embedding_from_photo(f) for f in sorted(p.iterdir())]
            for p in sorted((FACES / "train").iterdir())}


def member(member_id, vectors, consent=True):
    return {"member_id": member_id, "consent": consent,
            "embeddings": [[float(x) for x in v] for v in vectors]}


def enrol(rig, *members):
    c = command("enroll_faces", {"members": list(members)})
    deliver(rig, c)
    return results(rig)[c["command_id"]]


def file_bytes(rig) -> bytes:
    db = rig.store.path
    wal = db.with_name(db.name + "-wal")
    return db.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


@needs_model
def test_enrolment_is_sealed_and_deletion_leaves_nothing_in_the_file(tmp_path, factory,
                                                                     embeddings):
    rig = make_rig(tmp_path, factory)
    result = enrol(rig, member("m-obama", embeddings["obama"]), member("m-biden", embeddings["biden"]))
    assert result["status"] == "done" and result["result"]["enrolled"] == ["m-obama", "m-biden"]
    assert rig.c.snapshot["face"]["members"] == 2
    key = tmp_path / "face.key"
    assert key.stat().st_mode & 0o777 == 0o600
    plain = np.asarray(embeddings["obama"][0], "<f4").tobytes()
    data = file_bytes(rig)
    assert plain[:16] not in data and np.asarray(embeddings["obama"][0], "<f8").tobytes()[:16] \
        not in data   # never in clear
    sealed = rig.store._db.execute(
        "SELECT sealed FROM face_members WHERE member_id = 'm-obama'").fetchone()[0]
    assert sealed[40:72] in data          # the check below can see a row that is there
    assert b"embeddings" not in str(rig.outbox("command_result")).encode()

    c = command("delete_faces", {"member_ids": ["m-obama", "m-nobody"]})
    deliver(rig, c)
    r = results(rig)[c["command_id"]]
    assert r["status"] == "done" and r["result"]["deleted"] == ["m-obama"]
    assert r["result"]["absent"] == ["m-nobody"]
    data = file_bytes(rig)
    for start in range(0, len(sealed) - 16, 16):
        assert sealed[start:start + 16] not in data, f"sealed bytes at {start} left in the file"
    assert rig.c.face.gallery.member_ids == ["m-biden"]


@needs_model
def test_consent_is_required_and_withdrawing_it_deletes(tmp_path, factory, embeddings):
    rig = make_rig(tmp_path, factory)
    r = enrol(rig, member("m-1", embeddings["rose_leslie"], consent=False))
    assert r["status"] == "rejected" and "consent must be true" in r["result"]["refused"][0]["reason"]
    assert not (tmp_path / "face.key").exists()   # nothing stored, no key made
    enrol(rig, member("m-1", embeddings["rose_leslie"]))
    assert rig.c.face.gallery.member_ids == ["m-1"]
    r = enrol(rig, {"member_id": "m-1", "consent": False})
    assert r["status"] == "done" and r["result"]["removed"] == ["m-1"]
    assert len(rig.c.face.gallery) == 0


@needs_model
@pytest.mark.parametrize("bad, words", [
    ({"member_id": "has space", "consent": True, "embeddings": [[0.1] * 128]}, "member_id"),
    ({"member_id": "m", "consent": True, "embeddings": []}, "1 to 5 embeddings"),
    ({"member_id": "m", "consent": True, "embeddings": [[0.1] * 128] * 6}, "1 to 5 embeddings"),
    ({"member_id": "m", "consent": True, "embeddings": [[0.0] * 128]}, "has length"),
    ({"member_id": "m", "consent": "yes", "embeddings": [[0.1] * 128]}, "consent must be true"),
    ("m", "member_id"),
])
def test_a_bad_member_is_refused_with_the_reason_and_the_rest_enrolled(tmp_path, factory,
                                                                       embeddings, bad, words):
    rig = make_rig(tmp_path, factory)
    r = enrol(rig, bad, member("m-good", embeddings["alex_lacamoire"]))
    assert r["status"] == "done" and r["result"]["enrolled"] == ["m-good"]
    assert words in r["result"]["refused"][0]["reason"]


@needs_model
def test_a_lost_or_wrong_key_turns_face_off_with_an_alarm_and_qr_still_works(tmp_path, factory,
                                                                             embeddings):
    rig = make_rig(tmp_path, factory)
    enrol(rig, member("m-kit", embeddings["kit_harington"]))
    key = tmp_path / "face.key"
    good = key.read_text()
    key.unlink()
    rig.crash()
    rig.door(False)
    rig.weigh()
    alarms = {a["kind"]: a["detail"] for a in rig.c.snapshot["alarms"]}
    assert "face key is missing" in alarms["face_key"] and len(rig.c.face.gallery) == 0
    assert rig.authorise(SHOPPER)            # QR codes are not affected
    key.write_text(os.urandom(32).hex())
    key.chmod(0o600)
    rig.crash()
    assert "does not open" in {a["kind"]: a["detail"] for a in rig.c.snapshot["alarms"]}["face_key"]
    key.write_text(good)
    key.chmod(0o644)
    rig.crash()
    assert "chmod 600" in {a["kind"]: a["detail"] for a in rig.c.snapshot["alarms"]}["face_key"]
    key.chmod(0o600)
    rig.crash()
    assert rig.c.face.gallery.member_ids == ["m-kit"]
    assert "face_key" not in {a["kind"] for a in rig.c.snapshot["alarms"]}


@needs_model
def test_members_enrolled_again_after_a_lost_key_work_beside_the_unreadable_rest(
        tmp_path, factory, embeddings):
    rig = make_rig(tmp_path, factory)
    enrol(rig, member("m-kit", embeddings["kit_harington"]), member("m-rose", embeddings["rose_leslie"]))
    (tmp_path / "face.key").unlink()           # lost with a replaced SD card's /etc, say
    rig.crash()
    enrol(rig, member("m-kit", embeddings["kit_harington"]))   # the backend enrols again
    rig.crash()
    assert rig.c.face.gallery.member_ids == ["m-kit"]
    detail = {a["kind"]: a["detail"] for a in rig.c.snapshot["alarms"]}["face_key"]
    assert "does not open 1 of the 2" in detail
    enrol(rig, {"member_id": "m-rose", "consent": False})    # or deleted: the alarm then clears
    rig.crash()
    assert "face_key" not in {a["kind"] for a in rig.c.snapshot["alarms"]}


@needs_model
def test_a_live_member_opens_a_session_charged_to_them(tmp_path, factory, embeddings):
    rig = make_rig(tmp_path, factory)
    enrol(rig, member("m-obama", embeddings["obama"]))
    rig.c.emit(FaceChecking(True, rig.clock()))
    rig.step()
    assert rig.c.snapshot["screen"] == {"name": "idle", "prompt": "turn_head"}
    rig.c.emit(FaceRecognised("m-obama", 0.27, rig.clock()))
    rig.step()
    session = rig.c.snapshot["session"]
    assert session["method"] == "face" and session["role"] == "shopper"
    assert not rig.out.lock.locked
    rig.door(True)
    rig.take(3, "steamed-bun", 1)
    rig.door(False)
    rig.weigh()
    (sale,) = rig.outbox("sale")
    assert sale["authorisation"]["subject"] == "m-obama" and sale["total_fen"] == 250


@needs_model
def test_failed_attempts_pause_face_unlock_and_raise_an_alarm(tmp_path, factory, embeddings):
    rig = make_rig(tmp_path, factory)
    enrol(rig, member("m-obama", embeddings["obama"]))
    for _ in range(3):
        rig.c.emit(FaceAttemptFailed("m-obama", "not_live", rig.clock()))
        rig.step()
        rig.clock.advance(10)
    state = rig.c.snapshot
    assert state["last_refusal"]["reason"] == "face_not_live"
    assert "face_attempts" in {a["kind"] for a in state["alarms"]}
    assert state["face"]["paused"]["m-obama"] > 800
    rig.c.emit(FaceRecognised("m-obama", 0.3, rig.clock()))
    rig.step()
    assert rig.c.snapshot["session"] is None and rig.out.lock.locked
    assert rig.c.snapshot["last_refusal"]["reason"] == "face_paused"
    assert rig.authorise(SHOPPER)            # a QR code still opens while face unlock is paused
    rig.door(True)
    rig.door(False)
    rig.weigh()
    assert rig.c.snapshot["session"] is None
    rig.clock.advance(15 * 60)
    rig.step()
    assert "face_attempts" not in {a["kind"] for a in rig.c.snapshot["alarms"]}
    rig.c.emit(FaceRecognised("m-obama", 0.3, rig.clock()))
    rig.step()
    assert rig.c.snapshot["session"]["method"] == "face"


@needs_model
def test_a_member_deleted_while_the_camera_looked_does_not_open(tmp_path, factory, embeddings):
    rig = make_rig(tmp_path, factory)
    enrol(rig, member("m-obama", embeddings["obama"]))
    deliver(rig, command("delete_faces", {"member_ids": ["m-obama"]}))
    rig.c.emit(FaceRecognised("m-obama", 0.3, rig.clock()))
    rig.step()
    assert rig.c.snapshot["session"] is None and rig.out.lock.locked


def test_face_commands_answer_unsupported_when_face_is_off(tmp_path, factory):
    import dataclasses
    from cabinet.config import Config, FaceSection
    from cabinet.controller import Controller

    rig = make_rig(tmp_path, factory)
    config = dataclasses.replace(Config(), face=FaceSection(enabled=False))
    rig.c = Controller(config, rig.out, rig.store, clock=rig.clock,
                       face_key=str(tmp_path / "face.key"))
    c = command("enroll_faces", {"members": [member("m", [np.full(128, 0.1)])]})
    deliver(rig, c)
    r = results(rig)[c["command_id"]]
    assert r["status"] == "unsupported" and "face.enabled is false" in r["detail"]
    assert rig.c.snapshot["face"] == {"available": False, "reason": "face.enabled is false",
                                      "members": 0, "checking": False, "paused": {}}
