"""The camera: a capture source read by one grab thread that keeps only the newest frame.

OpenCV's V4L2 capture queues frames; a consumer that reads slower than the camera sees old ones. So a
grab thread reads continuously and keeps the latest frame with its time and a sequence number, and
consumers (QR and face checkout) take `latest()` when they are ready. A capture that stops
delivering (ribbon cable interference near the compressor) is a fault: released and reopened with
back-off. The capture object is injected: OpenCV's VideoCapture on the Pi, image files in simulation.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Protocol

from .reader import Backoff, FaultTracker, ReaderThread


class Capture(Protocol):
    def isOpened(self) -> bool: ...
    def read(self) -> tuple[bool, Any]: ...
    def release(self) -> None: ...


def open_v4l2(device: str, width: int, height: int, frames_per_second: float) -> Capture:
    """OpenCV capture of a V4L2 device; imported here so that a cabinet without camera never
    loads OpenCV (it costs tens of MB of resident memory)."""
    import cv2

    capture = cv2.VideoCapture(device, cv2.CAP_V4L2)
    capture.set(cv2.CAP_PROP_FRAME_WIDTH, width)
    capture.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
    capture.set(cv2.CAP_PROP_FPS, frames_per_second)
    capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)
    return capture


class CameraReader(ReaderThread):
    name = "camera"

    def __init__(self, open_capture: Callable[[], Capture], *, where: str,
                 emit: Callable[[object], None], clock: Callable[[], float] = time.monotonic,
                 read_timeout_seconds: float = 2.0):
        super().__init__()
        self._open_capture = open_capture
        self.where = where
        self._clock = clock
        self._faults = FaultTracker(emit, clock)
        self._read_timeout = read_timeout_seconds
        self._frame_lock = threading.Lock()
        self._frame_ready = threading.Condition(self._frame_lock)
        self._latest: tuple[int, float, Any] | None = None
        self._sequence = 0

    def latest(self) -> tuple[int, float, Any] | None:
        """(sequence, monotonic time, frame) of the newest frame, or None before the first.
        The frame may be shared with other consumers: treat it as read-only (copy to draw)."""
        with self._frame_lock:
            return self._latest

    def wait_newer(self, seen: int | None, timeout: float) -> tuple[int, float, Any] | None:
        """The newest frame once it is not frame `seen` (a sequence number), or whatever is there
        after `timeout` seconds: consumers sleep until a frame comes instead of polling for it."""
        with self._frame_ready:
            self._frame_ready.wait_for(
                lambda: self._latest is not None and self._latest[0] != seen, timeout)
            return self._latest

    def _run(self) -> None:
        backoff = Backoff(first=0.5, cap=30.0)
        while not self._stopping.is_set():
            capture = None
            try:
                capture = self._open_capture()
                if not capture.isOpened():
                    raise OSError("cannot open capture device")
                last_frame = time.monotonic()
                while not self._stopping.is_set():
                    ok, frame = capture.read()
                    if not ok or frame is None:
                        silent = time.monotonic() - last_frame
                        if silent >= self._read_timeout:
                            raise OSError(f"no frame for {silent:.1f} s")
                        self._stopping.wait(0.01)  # a failing capture can return at once
                        continue
                    last_frame = time.monotonic()
                    backoff.reset()
                    self._faults.ok("camera")
                    with self._frame_ready:
                        self._sequence += 1
                        self._latest = (self._sequence, self._clock(), frame)
                        self._frame_ready.notify_all()
            except Exception as exc:  # OpenCV raises cv2.error and others; all mean "reopen"
                self._faults.fault("camera", f"camera on {self.where}: {exc}")
            finally:
                if capture is not None:
                    capture.release()
            if not self._sleep(backoff.next()):
                break
