"""Faces shown to the camera: a thread that looks for an enrolled member while the cabinet is idle.

Like the QR reader beside it, it takes the camera's newest frame, and only while the published
state says the cabinet is idle and someone is enrolled. A frame costs about 0.1 s on a PC (HOG
detection on the frame scaled to `detect_width`, then the 128-d descriptor of the largest face),
so frames are analysed at `frames_per_second` at most, and only while the picture is moving or a
face is being followed: an empty, still scene costs one motion check per frame and nothing more.

Each analysed frame goes to the gallery (who is it?) and the liveness check (is the head turning?).
The controller hears only conclusions: FaceChecking when a member is named and the head turn is
awaited (the screen asks for it), FaceRecognised when the turn is seen, FaceAttemptFailed when
the time ran out or the face changed. The model is loaded on first need (about 40 MB resident),
so a cabinet with no one enrolled pays nothing. Frames and faces are dropped once measured.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from ..events import DeviceFaulted, DeviceRecovered, FaceAttemptFailed, FaceChecking, FaceRecognised
from .face import Gallery, LivenessCheck, LivenessRules
from .motion import MotionCheck

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FaceSettings:
    tolerance: float = 0.5
    margin: float = 0.08
    frames_per_second: float = 5.0
    detect_width: int = 640
    min_face_pixels: int = 80
    rules: LivenessRules = LivenessRules()


class FaceReader:
    STILL_PERIOD = 1.0     # a still scene with a face in it: one look a second
    BUSY_SECONDS = 3.0     # how long movement keeps analysis at full rate
    MOTION_LEVEL = 4.0     # mean grey-level change of a 1/8-scale thumbnail that counts as movement

    def __init__(self, latest_frame: Callable[[], tuple[int, float, Any] | None], *,
                 idle: Callable[[], bool], gallery: Callable[[], Gallery],
                 emit: Callable[[object], None], settings: FaceSettings,
                 model_factory: Callable[[], Any], clock: Callable[[], float] = time.monotonic,
                 wait_frame: Callable[[int | None, float], Any] | None = None):
        self._latest = latest_frame
        self._wait_frame = wait_frame  # CameraReader.wait_newer: sleep until a frame, not 20 ms
        self._idle = idle
        self._gallery = gallery
        self._emit = emit
        self.settings = settings
        self._model_factory = model_factory
        self._model = None
        self._model_retry_at = 0.0
        self._model_faulted = False
        self._clock = clock
        self._liveness = LivenessCheck(settings.rules)
        self._checking = False
        self._motion = MotionCheck(self.MOTION_LEVEL)
        self._busy_until = 0.0
        self._face_in_view = False
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, name="camera faces", daemon=True)
        self.frames_analysed = 0

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._halt.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        seen = None
        last = -1e9
        pause = 0.02
        while not self._wait(pause, seen):
            gallery = self._gallery()
            if not len(gallery) or not self._idle():
                # Nobody enrolled, or a session open: look again in a while, not every frame.
                self._set_checking(False)
                self._liveness.attempt = None
                pause = 0.5
                continue
            pause = 0.0 if self._wait_frame is not None else 0.02
            latest = self._latest()
            if latest is None or latest[0] == seen:
                continue
            seen, _, frame = latest
            now = self._clock()
            if self._motion.moved(frame):
                self._busy_until = now + self.BUSY_SECONDS
            if now < self._busy_until or self._liveness.checking:
                period = 1.0 / self.settings.frames_per_second
            elif self._face_in_view:
                period = self.STILL_PERIOD
            else:
                continue       # still and empty: nothing to look at until something moves
            if now - last < period:
                continue
            last = now
            try:
                self._analyse(frame, gallery, now)
            except Exception:  # a model failure must not end face checkout for good
                log.exception("face analysis failed on a frame")
                self._halt.wait(1.0)

    def _wait(self, pause: float, seen: int | None) -> bool:
        """Sleep `pause`, or (0) until the camera's next frame; True when the reader is to stop."""
        if pause or self._wait_frame is None:
            return self._halt.wait(pause or 0.02)
        self._wait_frame(seen, 0.5)
        return self._halt.is_set()

    MODEL_RETRY_SECONDS = 60.0

    def _analyse(self, frame, gallery: Gallery, now: float) -> None:
        if self._model is None:
            if now < self._model_retry_at:
                return
            started = time.perf_counter()
            try:
                self._model = self._model_factory()
            except Exception as exc:  # a damaged model file: say so once, try again later
                self._model_retry_at = now + self.MODEL_RETRY_SECONDS
                if not self._model_faulted:
                    self._model_faulted = True
                    log.error("face model did not load: %s", exc)
                    self._emit(DeviceFaulted("face_model", f"the face model did not load: "
                                                           f"{exc}"[:300], now))
                return
            log.info("face model loaded in %.1f s", time.perf_counter() - started)
            if self._model_faulted:
                self._model_faulted = False
                self._emit(DeviceRecovered("face_model", now))
        s = self.settings
        faces = self._model.analyse(frame, detect_width=s.detect_width,
                                    min_width=s.min_face_pixels)
        self.frames_analysed += 1
        self._face_in_view = bool(faces)
        if not faces:
            verdict = self._liveness.nothing_seen(now)
        else:
            face = faces[0]
            match = gallery.identify(face.embedding, tolerance=s.tolerance, margin=s.margin)
            verdict = self._liveness.observe(now, match.member_id, face.yaw)
            log.debug("face: %s at %.3f (runner-up %.3f), yaw %.3f", match.member_id or
                      match.reason, match.distance, match.runner_up, face.yaw)
        del frame, faces        # nothing of the picture outlives this call
        if verdict is not None:
            # One presentation, one verdict: the same still scene is not analysed again until the
            # picture moves (a photograph left in front of the camera costs one attempt, not one
            # every few seconds, and no CPU after that).
            self._face_in_view = False
            self._busy_until = 0.0
            if verdict.outcome == "live":
                self._emit(FaceRecognised(verdict.member_id, verdict.span, now))
            else:
                self._emit(FaceAttemptFailed(verdict.member_id, verdict.reason, now))
        self._set_checking(self._liveness.checking)

    def _set_checking(self, checking: bool) -> None:
        if checking != self._checking:
            self._checking = checking
            self._emit(FaceChecking(checking, self._clock()))
