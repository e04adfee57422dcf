"""Is the picture moving? A cheap test the camera readers run on every frame before deciding to
spend real work (QR decoding, face analysis) on it: the mean grey-level change of a 1/8-scale
thumbnail of the green channel against the previous frame's."""

from __future__ import annotations

import numpy as np


class MotionCheck:
    def __init__(self, level: float, *, first_is_movement: bool = True):
        """`first_is_movement`: whether the first frame counts as the picture moving (a face
        reader looks at it; the QR reader does not run its costly stages on the empty scene,
        which would load OpenCV, ~16 MB, at every start of an idle cabinet)."""
        self.level = level
        self.first_is_movement = first_is_movement
        self._thumb: np.ndarray | None = None

    def moved(self, frame: np.ndarray) -> bool:
        thumb = (frame[::8, ::8, 1] if frame.ndim == 3 else frame[::8, ::8]).astype(np.int16)
        if self._thumb is None:
            moved = self.first_is_movement
        else:
            moved = (thumb.shape != self._thumb.shape
                     or float(np.abs(thumb - self._thumb).mean()) > self.level)
        self._thumb = thumb
        return moved
