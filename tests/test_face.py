"""Face checkout: identification on the face_recognition photographs (train enrols, test and misc probe),
liveness against a still photograph, the rate limit, and the sealed, deletable enrolments.

Real parts: dlib's models through cabinet.access.face_model, the photographs in
tests/data/faces, a real SQLite file read back byte by byte. Skipped only where the face extra
is not installed (CI installs it: tools/setup.sh test)."""

from __future__ import annotations

import queue
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from cabinet.access.face import (FailedAttempts, Gallery, LivenessCheck, LivenessRules,
                                 check_embedding, EmbeddingError, yaw_ratio)
from cabinet.access.face_model import unavailable_reason

from .conftest import TEST_DATA

FACES = TEST_DATA / "faces"
needs_model = pytest.mark.skipif(unavailable_reason() is not None,
                                 reason=f"face extra not installed: {unavailable_reason()}")

# Who is in each probe photograph (misc/biden.jpg, obama.jpg and obama2.jpg are byte-for-byte
# copies of enrolment photos, so they are not probes).
PROBES = {
    "test/alex_lacamoire1.jpg": {"alex_lacamoire"},
    "test/johnsnow_test1.jpg": {"kit_harington"},
    "test/kit_with_rose.jpg": {"kit_harington", "rose_leslie"},
    "test/obama1.jpg": {"obama"},
    "test/obama_and_biden.jpg": {"obama", "biden"},
    "misc/obama3.jpg": {"obama"},
    "misc/obama_partial_face.jpg": {"obama"},
    "misc/obama_partial_face2.jpg": {"obama"},
    "misc/32bit.png": {"obama"},
}


def frame_640x480(path: Path, *, flip: bool = False) -> np.ndarray:
    """A photograph as the cabinet's camera would deliver it: 640x480 BGR."""
    import cv2
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    h, w = image.shape[:2]
    scale = min(640 / w, 480 / h)
    image = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    canvas = np.zeros((480, 640, 3), np.uint8)
    hh, ww = image.shape[:2]
    canvas[(480 - hh) // 2:(480 - hh) // 2 + hh, (640 - ww) // 2:(640 - ww) // 2 + ww] = image
    return canvas[:, ::-1].copy() if flip else canvas


@pytest.fixture(scope="module")
def model():
    from cabinet.access.face_model import FaceModel
    return FaceModel()


@pytest.fixture(scope="module")
def enrolled(model) -> dict[str, list[np.ndarray]]:
    """Every person's embeddings from train/ only."""
    return {person.name: [model.embedding_from_photo(p) for p in sorted(person.iterdir())]
            for person in sorted((FACES / "train").iterdir())}


@pytest.fixture(scope="module")
def probes(model) -> dict[str, list]:
    return {name: model.analyse(frame_640x480(FACES / name), largest_only=False)
            for name in PROBES}


# --- identification ------------------------------------------------------------------------------

@needs_model
def test_every_probe_face_is_its_person_and_nobody_else(enrolled, probes):
    gallery = Gallery(enrolled)
    for name, people in PROBES.items():
        faces = probes[name]
        assert len(faces) == len(people), name
        named = {gallery.identify(f.embedding, tolerance=0.5, margin=0.08).member_id
                 for f in faces}
        assert named == people, (name, named)


@needs_model
def test_nobody_is_accepted_when_their_person_is_not_enrolled(enrolled, probes):
    for absent in enrolled:
        gallery = Gallery({p: e for p, e in enrolled.items() if p != absent})
        for name, people in PROBES.items():
            for face in probes[name]:
                match = gallery.identify(face.embedding, tolerance=0.5, margin=0.08)
                # Each face is either refused or named as someone who really is in the photo.
                assert match.member_id is None or match.member_id in people - {absent}, \
                    (absent, name, match)
                if people == {absent}:
                    assert match.member_id is None and match.distance > 0.6, (name, match)


@needs_model
def test_the_same_face_enrolled_twice_is_refused_as_ambiguous(enrolled, probes):
    gallery = Gallery({"obama": enrolled["obama"], "obama-again": enrolled["obama"]})
    match = gallery.identify(probes["test/obama1.jpg"][0].embedding, tolerance=0.5, margin=0.08)
    assert match.member_id is None and match.reason == "ambiguous"


def test_search_agrees_with_brute_force_over_many_members():
    rng = np.random.default_rng(7)
    members = {f"m{i}": [rng.normal(0, 0.1, 128).astype(np.float32)
                         for _ in range(1 + i % 5)] for i in range(2000)}
    gallery = Gallery(members)
    for _ in range(50):
        q = rng.normal(0, 0.1, 128).astype(np.float32)
        per = {m: min(float(np.linalg.norm(q - e)) for e in es) for m, es in members.items()}
        order = sorted(per, key=per.get)
        member, d1, d2 = gallery.nearest(q)
        assert member == order[0]
        assert d1 == pytest.approx(per[order[0]], abs=1e-4)
        assert d2 == pytest.approx(per[order[1]], abs=1e-4)


def test_an_empty_gallery_names_nobody():
    match = Gallery().identify(np.zeros(128, np.float32), tolerance=0.5, margin=0.1)
    assert match.member_id is None and match.reason == "no_members"


@pytest.mark.parametrize("bad, words", [
    ([0.1] * 127, "128 numbers"), ("x" * 128, "128 numbers"), ([True] + [0.1] * 127, "numbers only"),
    ([float("nan")] + [0.1] * 127, "finite"), ([2.0] + [0.1] * 127, "between -1 and 1"),
    ([0.0] * 128, "has length 0.000"), (None, "128 numbers")])
def test_a_bad_embedding_is_refused_with_what_is_wrong(bad, words):
    with pytest.raises(EmbeddingError, match=words):
        check_embedding(bad)


# --- liveness --------------------------------------------------------------------------------------

def test_yaw_ratio_ignores_where_and_how_big_a_flat_picture_is():
    points = np.array([[100, 100], [130, 101], [170, 100], [200, 99], [160, 150]], float)
    base = yaw_ratio(points)
    angle = np.radians(12)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    assert yaw_ratio(points @ rot.T * 1.7 + [40, -25]) == pytest.approx(base, abs=1e-9)
    # A head turned the other way is the mirror image: the sign flips.
    mirrored = points.copy()
    mirrored[:, 0] *= -1
    assert yaw_ratio(mirrored[[3, 2, 1, 0, 4]]) == pytest.approx(-base, abs=1e-9)


def test_liveness_needs_a_turn_of_one_member_in_time():
    rules = LivenessRules(turn_span=0.2, attempt_seconds=8, max_gap=1.5, min_frames=3)
    check = LivenessCheck(rules)
    assert check.observe(0.0, "a", 0.0) is None and check.checking
    assert check.observe(0.5, None, 0.9) is None          # unnamed frames do not count
    assert check.observe(1.0, "a", -0.12) is None         # two frames: not enough yet
    verdict = check.observe(1.5, "a", 0.11)
    assert verdict.outcome == "live" and verdict.member_id == "a" and not check.checking

    still = LivenessCheck(rules)
    verdicts = [still.observe(t / 5, "a", 0.05) for t in range(60)]
    failed = [v for v in verdicts if v is not None]
    assert failed and all(v.outcome == "failed" and v.reason == "not_live" for v in failed)

    swap = LivenessCheck(rules)
    swap.observe(0.0, "a", -0.15)
    verdict = swap.observe(0.2, "b", 0.15)                 # another person's photo
    assert verdict.outcome == "failed" and verdict.reason == "face_changed"
    assert swap.observe(0.4, "b", 0.0) is None             # b starts afresh, no turn yet

    walker = LivenessCheck(rules)
    walker.observe(0.0, "a", 0.0)
    assert walker.nothing_seen(3.0) is None and not walker.checking  # walked past: no failure


def test_failed_attempts_pause_a_member_then_everyone():
    limits = FailedAttempts(max_failures=3, window=600, pause=900)
    assert limits.failed("a", 0) == [] and limits.failed("a", 10) == []
    assert limits.failed("a", 20) == ["a"]
    assert limits.paused_until("a", 30) == 920 and limits.paused_until("b", 30) is None
    assert limits.paused_until("a", 921) is None
    # Failures spread over time do not add up.
    assert limits.failed("b", 1000) == [] and limits.failed("b", 1700) == []
    assert limits.failed("b", 2400) == []
    # Six in a window across members pause face unlock for everyone.
    fleet = FailedAttempts(max_failures=3, window=600, pause=900)
    for i, member in enumerate("abcde"):
        assert fleet.failed(member, i) == []
    assert fleet.failed("f", 5) == ["*"]
    assert fleet.paused_until("z", 6) == 905


class FrameSource:
    """Frames handed to the reader as a camera thread would: a new id per frame."""

    def __init__(self, frames, period=0.05):
        self.frames, self.period = frames, period
        self.started = time.monotonic()

    def latest(self):
        i = int((time.monotonic() - self.started) / self.period)
        return i, 0.0, self.frames[i % len(self.frames)]


def verdicts(seen, kind: str) -> int:
    return sum(type(e).__name__ == kind for e in seen)


def run_reader(frames, enrolled, seconds, *, attempt_seconds=3.0, model_factory=None,
               until=lambda seen: verdicts(seen, "FaceRecognised")):
    """The camera thread on `frames` until `until(events so far)` (or `seconds`, an upper bound
    that only a broken reader reaches: a busy machine analyses fewer frames a second, so tests
    wait for the verdicts rather than for a time)."""
    from cabinet.access.face_camera import FaceReader, FaceSettings
    from cabinet.access.face_model import FaceModel

    events: queue.Queue = queue.Queue()
    reader = FaceReader(FrameSource(frames).latest, idle=lambda: True,
                        gallery=lambda: Gallery(enrolled), emit=events.put,
                        settings=FaceSettings(frames_per_second=10, rules=LivenessRules(
                            turn_span=0.2, attempt_seconds=attempt_seconds)),
                        model_factory=model_factory or FaceModel)
    reader.start()
    deadline = time.monotonic() + seconds
    seen = []
    while time.monotonic() < deadline:
        try:
            seen.append(events.get(timeout=0.1))
        except queue.Empty:
            pass
        if until(seen):
            break
    reader.close()
    return seen, reader


@needs_model
@pytest.mark.parametrize("photo", ["test/obama1.jpg", "test/alex_lacamoire1.jpg",
                                   "test/johnsnow_test1.jpg"])
def test_a_still_photograph_as_every_frame_never_opens(photo, enrolled):
    seen, reader = run_reader([frame_640x480(FACES / photo)], enrolled, 30.0, until=lambda s: (
        verdicts(s, "FaceRecognised") or verdicts(s, "FaceAttemptFailed")))
    kinds = [type(e).__name__ for e in seen]
    assert "FaceRecognised" not in kinds
    assert reader.frames_analysed >= LivenessRules().min_frames  # named, and still refused
    failed = [e for e in seen if type(e).__name__ == "FaceAttemptFailed"]
    assert failed and all(e.reason == "not_live" for e in failed)
    assert kinds[0] == "FaceChecking" and seen[0].active   # the screen asked for a head turn


def tilted(image: np.ndarray, degrees: float, axis: int) -> np.ndarray:
    """The picture as a camera sees it turned about its vertical (axis 0) or horizontal (1)
    centre line: a perspective warp, with a focal length of 1.2 image widths."""
    import cv2
    h, w = image.shape[:2]
    f, a = 1.2 * w, np.radians(degrees)
    corners = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    seen = []
    for x, y in corners:
        dx, dy = x - w / 2, y - h / 2
        if axis == 0:
            z, dx = dx * np.sin(a), dx * np.cos(a)
        else:
            z, dy = dy * np.sin(a), dy * np.cos(a)
        seen.append([w / 2 + f * dx / (f + z), h / 2 + f * dy / (f + z)])
    return cv2.warpPerspective(image, cv2.getPerspectiveTransform(corners, np.float32(seen)),
                               (w, h))


@needs_model
def test_a_photograph_moved_about_by_hand_never_opens(enrolled):
    """Shifted, scaled, turned in its plane and tilted by 15 degrees: still a flat picture."""
    import cv2
    base = frame_640x480(FACES / "test/obama1.jpg")
    frames = []
    for angle, scale, dx in [(0, 1, 0), (-10, 0.9, -30), (10, 1.1, 30), (-5, 1.2, 0),
                             (5, 0.85, 20), (0, 1, -40)]:
        m = cv2.getRotationMatrix2D((320, 240), angle, scale)
        m[0, 2] += dx
        frames.append(cv2.warpAffine(base, m, (640, 480)))
    for degrees, axis in [(15, 0), (-15, 0), (15, 1), (-15, 1)]:   # tilted towards the camera
        frames.append(tilted(base, degrees, axis))
    seen, _ = run_reader(frames, enrolled, 30.0, until=lambda s: (    # two attempts, both refused
        verdicts(s, "FaceRecognised") or verdicts(s, "FaceAttemptFailed") >= 2))
    assert "FaceRecognised" not in [type(e).__name__ for e in seen]
    assert [e.reason for e in seen if type(e).__name__ == "FaceAttemptFailed"][:1] == ["not_live"]


@needs_model
def test_a_head_turning_left_and_right_opens(enrolled):
    """Two real photographs of Obama looking one way, and the mirror image of one of them for
    the other way (a face turned the other way is, to a camera, nearly its mirror image)."""
    frames = [frame_640x480(FACES / "test/obama1.jpg"),
              frame_640x480(FACES / "misc/obama3.jpg"),
              frame_640x480(FACES / "test/obama1.jpg", flip=True)]
    seen, _ = run_reader(frames, enrolled, 30.0, attempt_seconds=8.0)
    recognised = [e for e in seen if type(e).__name__ == "FaceRecognised"]
    assert recognised and recognised[0].member_id == "obama" and recognised[0].span >= 0.2


_number = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32),
                    st.integers(-3, 3), st.booleans(), st.text(max_size=3), st.none())


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.lists(_number, min_size=120, max_size=130),
                 st.lists(st.floats(-0.3, 0.3), min_size=128, max_size=128), _number))
def test_check_embedding_accepts_only_descriptor_shaped_vectors(values):
    try:
        vector = check_embedding(values)
    except EmbeddingError as exc:
        assert str(exc).startswith("embedding ")
        return
    assert vector.dtype == np.float32 and vector.shape == (128,)
    assert np.all(np.isfinite(vector)) and np.abs(vector).max() <= 1.0
    assert 0.5 <= float(np.linalg.norm(vector.astype(np.float64))) <= 3.0 + 1e-6


def test_a_model_that_does_not_load_is_one_device_fault_not_a_crash():
    calls = []

    def broken():
        calls.append(1)
        raise RuntimeError("Error deserializing object of type short (truncated model file)")
    frames = [np.full((480, 640, 3), v, np.uint8) for v in (0, 120, 240)]   # a moving picture
    seen, reader = run_reader(frames, {"m": [np.full(128, 0.1, np.float32)]}, 1.5,
                              model_factory=broken, until=lambda s: False)
    faults = [e for e in seen if type(e).__name__ == "DeviceFaulted"]
    assert len(faults) == 1 and faults[0].device == "face_model"
    assert "truncated model file" in faults[0].detail
    assert len(calls) == 1 and reader.frames_analysed == 0    # not retried every frame
