"""QR codes shown to the camera: a thread that decodes the newest frame while the cabinet is idle.

Decoding is CPU work (about a millisecond a frame on a PC, more on a Pi, more again when the rescue
stages run), so it has its own thread, and only while the published state says the cabinet is idle
(no session). A still scene is decoded once a second; a frame in which the picture moved (someone
holds up a phone: a cheap difference of a 1/8-scale thumbnail) is decoded at once (while it keeps
moving, at most 40 a second and about a quarter of a core), and for the next few seconds the
picture is decoded at `decode_frames_per_second` while it stays still. A phone is answered one
frame after it appears (a millisecond or two of zxing-cpp per frame on a PC), and a still scene
leaves the CPU to checkout and weighing. A code found is posted as CodeScanned with source
"camera"; the controller treats it like a scanned line (same verification, same repeat window). A
code stays "in view" while the following frames still show it and is posted again only after it has
left the picture, so a phone held still is one presentation. The rescue stages of the decoder
(costly, and rarely needed with a cooperative phone screen) run at most once per `rescue_every`
turns of the rate, only in the seconds after the picture moved, and never on a frame decoded
because it changed. Frames are not kept.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

from drivers.events import CodeScanned

from .motion import MotionCheck
from .qr_decode import decode

log = logging.getLogger(__name__)


class CameraCodeReader:
    def __init__(self, latest_frame: Callable[[], tuple[int, float, Any] | None], *,
                 idle: Callable[[], bool], emit: Callable[[object], None],
                 frames_per_second: float, rescue_every: int = 5,
                 clock: Callable[[], float] = time.monotonic,
                 wait_frame: Callable[[int | None, float], Any] | None = None):
        self._latest = latest_frame
        # The camera's "wake me at the next frame" (CameraReader.wait_newer): without it, the
        # reader looks for a new frame every 20 ms, which an idle cabinet pays for all night.
        self._wait_frame = wait_frame
        self._idle = idle
        self._emit = emit
        self._period = 1.0 / frames_per_second
        self._clock = clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="camera codes", daemon=True)
        self._rescue_period = rescue_every / frames_per_second
        self._motion = MotionCheck(self.MOTION_LEVEL, first_is_movement=False)
        self._busy_until = 0.0
        self._in_view: set[str] = set()
        self._plain_seconds = 0.0   # what the last decode without the rescue stages took
        self.frames_decoded = 0

    def start(self) -> None:
        self._thread.start()

    STILL_PERIOD = 1.0     # seconds between decodes of a still scene
    BUSY_SECONDS = 4.0     # how long a movement keeps decoding at full rate
    MOTION_LEVEL = 6.0     # mean grey-level change of the thumbnail that counts as movement
    MIN_GAP = 0.025        # between decodes of a moving picture: 40 a second at most

    def _run(self) -> None:
        seen = None
        last_decode = last_rescue = -1e9
        changed = False   # the picture moved since the last decode
        # Look at every new frame (the motion check is cheap), decode only some of them.
        while not self._next_frame(seen):
            if not self._idle():
                self._stop.wait(0.1)  # a session: no codes wanted, so no hurry to look again
                continue
            latest = self._latest()
            if latest is None or latest[0] == seen:
                continue
            seen, _, frame = latest
            now = self._clock()
            moved = self._motion.moved(frame)
            if moved:
                self._busy_until = now + self.BUSY_SECONDS
            busy = now < self._busy_until
            changed = changed or moved
            # A change of picture is decoded at once, whatever the rate: a phone just held up is
            # what the shopper waits on, and waiting for the rate's next turn cost up to a
            # period (200 ms). While the picture keeps moving (a corridor in view, a fast camera)
            # the gap is MIN_GAP, or four times what a plain decode took (about a quarter of a
            # core); a change it held back is decoded at the next frame. Frames are never
            # queued: the camera hands over its newest. A still picture is decoded at the rate.
            change_gap = max(self.MIN_GAP, 4 * self._plain_seconds)
            gap = change_gap if changed else self._period if busy else self.STILL_PERIOD
            if now - last_decode < gap:
                continue
            for_change, last_decode, changed = changed, now, False
            # The rescue stages only on a frame decoded at the rate after a movement, never on
            # one decoded because the picture changed (the first frame of a hand coming up is
            # rarely a readable code, and the frame that is must not wait behind them), nor on
            # an empty, still scene all night; at most one in `rescue_every` turns of the rate:
            # they cost tens of milliseconds a frame.
            rescue = busy and not for_change and now - last_rescue >= self._rescue_period
            if rescue:
                last_rescue = now
            started = time.perf_counter()
            try:
                texts = set(decode(frame, rescue=rescue))
            except Exception:  # a decoder bug must not end camera checkout for good
                log.exception("QR decoding failed on a frame")
                continue
            if not rescue:
                self._plain_seconds = time.perf_counter() - started
            self.frames_decoded += 1
            for text in texts - self._in_view:
                self._emit(CodeScanned(text, "camera", self._clock()))
            if texts or rescue:  # a quick miss is not proof that the code has gone
                self._in_view = texts

    def _next_frame(self, seen: int | None) -> bool:
        """Wait for a frame newer than `seen`; True when the reader is to stop."""
        if self._wait_frame is None:
            return self._stop.wait(0.02)
        self._wait_frame(seen, 0.5)
        return self._stop.is_set()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
