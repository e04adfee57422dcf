"""A camera that serves image files, with the same read() contract as OpenCV's VideoCapture.

The simulation (or a test) sets the image the camera sees; every read() returns a copy of it at the
configured frame rate, as a camera pointed at a still scene would. Before any image is set it sees a
grey frame. `play()` shows several images in turn (a head turning: a photograph and its mirror
image). `unplug()` makes reads fail, as a camera lost to interference does.
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
        grey = np.full((height, width, 3), 128, dtype=np.uint8)
        grey.flags.writeable = False
        self._frames, self._seconds_per_frame, self._since = (grey,), 1.0, time.monotonic()
        self._period = 1.0 / frames_per_second
        self._lock = threading.Lock()
        self._next = time.monotonic()
        self.plugged = True
        self.released = False

    def show(self, frame: np.ndarray) -> None:
        self.play([frame], 1.0)

    def play(self, frames: list[np.ndarray], seconds_per_frame: float) -> None:
        frames = tuple(f.copy() for f in frames)
        for f in frames:
            f.flags.writeable = False  # every read() hands out these arrays: nobody may draw on them
        with self._lock:
            self._frames, self._seconds_per_frame = frames, seconds_per_frame
            self._since = time.monotonic()

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
            shown = int((time.monotonic() - self._since) / self._seconds_per_frame)
            return True, self._frames[shown % len(self._frames)]

    def release(self) -> None:
        self.released = True


class SimulatedCamera:
    """Hands out a fresh ImageFileCapture per open, all showing the same scene."""

    def __init__(self, *, width: int, height: int, frames_per_second: float):
        self._args = dict(width=width, height=height, frames_per_second=frames_per_second)
        self._scene: tuple[list[np.ndarray], float] | None = None
        self.plugged = True
        self._current: ImageFileCapture | None = None

    def open(self) -> ImageFileCapture:
        capture = ImageFileCapture(**self._args)
        capture.plugged = self.plugged
        if self._scene is not None:
            capture.play(*self._scene)
        self._current = capture
        return capture

    def show(self, frame: np.ndarray) -> None:
        self.play([frame], 1.0)

    def play(self, frames: list[np.ndarray], seconds_per_frame: float) -> None:
        self._scene = (frames, seconds_per_frame)
        if self._current is not None:
            self._current.play(frames, seconds_per_frame)

    def set_plugged(self, plugged: bool) -> None:
        self.plugged = plugged
        if self._current is not None:
            self._current.plugged = plugged
