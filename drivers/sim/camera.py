"""A camera that serves image files, with the same read() contract as OpenCV's VideoCapture.

The simulation (or a test) sets the image the camera sees; every read() returns a copy of it at the
configured frame rate, as a camera pointed at a still scene would. Before any image is set it sees a
grey frame. `unplug()` makes reads fail, as a camera lost to interference does.
"""

from __future__ import annotations

import threading
import time

import numpy as np


def decode_image(data: bytes) -> np.ndarray:
    """PNG/JPEG bytes to a BGR frame; ValueError when the bytes are not an image OpenCV reads."""
    import cv2  # only when an image is posted: keeps OpenCV out of an idle simulated daemon

    frame = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if frame is None:
        raise ValueError("not a PNG or JPEG image OpenCV can decode")
    return frame


def scene_png(picture: np.ndarray | None = None, *, width: int = 640, height: int = 480) -> bytes:
    """PNG bytes of a grey scene with `picture` (grey uint8) near its top left, like a phone held
    up to the camera; an empty scene without one."""
    import cv2

    canvas = np.full((height, width), 200, np.uint8)
    if picture is not None:
        h, w = picture.shape[:2]
        canvas[20:20 + h, 100:100 + w] = picture
    return cv2.imencode(".png", canvas)[1].tobytes()


class ImageFileCapture:
    def __init__(self, *, width: int = 640, height: int = 480, frames_per_second: float = 15.0):
        self._frame = np.full((height, width, 3), 128, dtype=np.uint8)
        self._frame.flags.writeable = False
        self._period = 1.0 / frames_per_second
        self._lock = threading.Lock()
        self._next = time.monotonic()
        self.plugged = True
        self.released = False

    def show(self, frame: np.ndarray) -> None:
        frame = frame.copy()
        frame.flags.writeable = False  # every read() hands out this one array: nobody may draw on it
        with self._lock:
            self._frame = frame

    def show_file(self, path: str) -> None:
        with open(path, "rb") as f:
            self.show(decode_image(f.read()))

    def isOpened(self) -> bool:
        return self.plugged and not self.released

    def read(self) -> tuple[bool, np.ndarray | None]:
        delay = self._next - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        self._next = max(self._next + self._period, time.monotonic())
        if not self.plugged or self.released:
            return False, None
        with self._lock:
            return True, self._frame

    def release(self) -> None:
        self.released = True


class SimulatedCamera:
    """Hands out a fresh ImageFileCapture per open, all showing the same scene."""

    def __init__(self, *, width: int, height: int, frames_per_second: float):
        self._args = dict(width=width, height=height, frames_per_second=frames_per_second)
        self._scene: np.ndarray | None = None
        self.plugged = True
        self._current: ImageFileCapture | None = None

    def open(self) -> ImageFileCapture:
        capture = ImageFileCapture(**self._args)
        capture.plugged = self.plugged
        if self._scene is not None:
            capture.show(self._scene)
        self._current = capture
        return capture

    def show(self, frame: np.ndarray) -> None:
        self._scene = frame
        if self._current is not None:
            self._current.show(frame)

    def set_plugged(self, plugged: bool) -> None:
        self.plugged = plugged
        if self._current is not None:
            self._current.plugged = plugged
