"""Is the picture moving? A cheap test the camera readers run on every frame before deciding to
spend real work (QR decoding, face analysis) on it: the mean grey-level change of a 1/8-scale
thumbnail of the green channel against the previous frame's."""

from __future__ import annotations

import numpy as np


class MotionCheck:
    def __init__(self, level: float):
        self.level = level
        self._thumb: np.ndarray | None = None

    def moved(self, frame: np.ndarray) -> bool:
        thumb = (frame[::8, ::8, 1] if frame.ndim == 3 else frame[::8, ::8]).astype(np.int16)
        moved = (self._thumb is None or thumb.shape != self._thumb.shape
                 or float(np.abs(thumb - self._thumb).mean()) > self.level)
        self._thumb = thumb
        return moved
