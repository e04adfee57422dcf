"""The camera grab thread on the image-file capture, with real photographs from tests/data."""

from __future__ import annotations

import pytest

from drivers.camera import CameraReader
from drivers.events import DeviceFaulted, DeviceRecovered
from drivers.sim.camera import SimulatedCamera, decode_image

from .conftest import TEST_DATA, wait_for

QR_PHOTO = TEST_DATA / "qr" / "zxing-qrcode-1" / "1.png"
FACE_PHOTO = TEST_DATA / "faces" / "train" / "obama" / "obama.jpg"


def test_latest_frame_is_the_newest_scene(recorder):
    camera = SimulatedCamera(width=320, height=240, frames_per_second=50)
    reader = CameraReader(camera.open, where="sim", emit=recorder)
    reader.start()
    try:
        first = wait_for(reader.latest, what="a frame")
        assert first[2].shape == (240, 320, 3)
        photo = decode_image(QR_PHOTO.read_bytes())
        camera.show(photo)
        latest = wait_for(lambda: (f := reader.latest()) and f[2].shape == photo.shape and f,
                          what="the photo")
        assert (latest[2] == photo).all()
        assert latest[0] > first[0] and latest[1] >= first[1]
    finally:
        reader.close()
    assert not reader.running


def test_capture_failure_is_a_fault_then_reopens(recorder):
    camera = SimulatedCamera(width=160, height=120, frames_per_second=100)
    reader = CameraReader(camera.open, where="sim", emit=recorder, read_timeout_seconds=0.3)
    reader.start()
    try:
        wait_for(reader.latest)
        camera.set_plugged(False)
        fault = wait_for(lambda: recorder.of(DeviceFaulted), what="fault")[0]
        assert fault.device == "camera"
        assert "no frame for" in fault.detail or "cannot open" in fault.detail
        camera.set_plugged(True)
        wait_for(lambda: recorder.of(DeviceRecovered), timeout=10, what="recovery")
    finally:
        reader.close()


def test_decode_real_photographs():
    assert decode_image(FACE_PHOTO.read_bytes()).ndim == 3
    with pytest.raises(ValueError, match="not a PNG or JPEG"):
        decode_image(b"definitely not an image")


def test_real_opencv_capture_of_an_image_sequence(tmp_path, recorder):
    """OpenCV's own VideoCapture (image-sequence backend) in the grab thread: frames arrive, the
    end of the stream is a fault, and the capture is reopened."""
    import cv2

    photo = decode_image(QR_PHOTO.read_bytes())
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"frame{i:02d}.png"), photo)
    opened = []

    def open_capture():
        opened.append(1)
        return cv2.VideoCapture(str(tmp_path / "frame%02d.png"), cv2.CAP_IMAGES)

    reader = CameraReader(open_capture, where=str(tmp_path), emit=recorder,
                          read_timeout_seconds=0.2)
    reader.start()
    try:
        seq, at, frame = wait_for(reader.latest, what="a frame")
        assert frame.shape == photo.shape
        fault = wait_for(lambda: recorder.of(DeviceFaulted), what="end of stream")[0]
        assert str(tmp_path) in fault.detail
        wait_for(lambda: len(opened) >= 2, timeout=10, what="reopen")
    finally:
        reader.close()


def test_a_code_held_up_is_decoded_in_the_first_frame_that_shows_it(recorder):
    """The QR reader decodes a frame in which the picture moved at once, one 30 frames/s frame
    after its last decode (it once waited for the rate's next turn: up to 200 ms), and a still
    scene only at its slow rate. The clock is a fake that moves only when told: no rate lets a
    frame through."""
    import threading

    from cabinet.access.camera_codes import CameraCodeReader
    from cabinet.access.qr_render import qr_image
    from drivers.events import CodeScanned
    from drivers.sim.camera import scene_png

    from .test_controller import FakeClock

    frames = [(1, 0.0, decode_image(scene_png()))]
    newer = threading.Condition()

    def wait_frame(seen, timeout):
        with newer:
            newer.wait_for(lambda: frames[-1][0] != seen, timeout)

    def show(picture):
        with newer:
            frames.append((frames[-1][0] + 1, 0.0, decode_image(scene_png(picture))))
            newer.notify_all()

    clock = FakeClock()
    reader = CameraCodeReader(lambda: frames[-1], idle=lambda: True, emit=recorder,
                              frames_per_second=5, clock=clock, wait_frame=wait_frame)
    reader.start()
    try:
        wait_for(lambda: reader.frames_decoded == 1, what="the first frame, decoded once")
        clock.advance(1 / 30)
        show(None)  # the same empty scene again: still, and a second is not up
        show(qr_image("held up"))
        wait_for(lambda: recorder.of(CodeScanned), what="the code, from the frame it appeared in")
        assert [e.text for e in recorder.of(CodeScanned)] == ["held up"]
        assert reader.frames_decoded == 2  # the still frame was not decoded
    finally:
        reader.close()


def test_the_first_frame_of_a_movement_is_decoded_without_the_costly_rescue_stages(
        recorder, monkeypatch):
    """The frame decoded because the picture changed (a hand coming up) gets the quick decode
    only: the rescue stages (tens of ms) would make the next frame, the readable one, wait. The
    decoder is replaced by a recorder of how it was asked (what is under test is the reader's
    schedule)."""
    import threading

    import numpy as np

    from cabinet.access import camera_codes
    from cabinet.access.camera_codes import CameraCodeReader

    from .test_controller import FakeClock

    asked = []
    monkeypatch.setattr(camera_codes, "decode", lambda frame, rescue: asked.append(rescue) or [])
    frames = [(1, 0.0, np.full((480, 640, 3), 200, np.uint8))]
    newer = threading.Condition()

    def wait_frame(seen, timeout):
        with newer:
            newer.wait_for(lambda: frames[-1][0] != seen, timeout)

    clock = FakeClock()
    reader = CameraCodeReader(lambda: frames[-1], idle=lambda: True, emit=recorder,
                              frames_per_second=5, clock=clock, wait_frame=wait_frame)
    reader.start()
    try:
        wait_for(lambda: len(asked) == 1, what="the still scene's first look")
        clock.advance(5.0)   # long still: a rescue would be due by time alone
        with newer:
            frames.append((2, 0.0, np.full((480, 640, 3), 40, np.uint8)))   # it moves
            newer.notify_all()
        wait_for(lambda: len(asked) == 2, what="the changed frame, decoded at once")
        assert asked == [False, False]
    finally:
        reader.close()
