"""QR codes in camera frames: zxing-cpp first, then a few cheap rescues, cheapest first.

Most frames decode on the first try (zxing-cpp with its default local-average binariser). The
rescues were chosen on the ZXing test photographs in tests/data/qr sets 1-4 (sets 5-6 are held out
and only measured), each kept because it reads photographs the earlier stages miss:

1. zxing-cpp, global-histogram binariser (uneven lighting, low contrast)
2. zxing-cpp on a 3x3 median-filtered image (print texture, JPEG noise, artistic codes)
3. zxing-cpp on a 2x upscale (small codes far from the camera)
4. OpenCV's curved-surface decoder, plain and with a white quiet zone added (a code on a bottle
   or a bent sheet of paper)
5. the same after a 3x3 morphological close, which fills the specks that glare and print texture
   punch into the dark modules of a bent, badly lit code

`decode()` stops at the first stage that reads anything, so a clean frame costs one zxing-cpp call.
OpenCV is imported only when a stage needs it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import zxingcpp

_QR = zxingcpp.BarcodeFormat.QRCode


def _gray(frame: np.ndarray) -> np.ndarray:
    if frame.ndim == 2:
        return frame
    # The green channel is most of the luminance and needs no OpenCV (tens of MB of memory in a
    # daemon that otherwise would not load it, as in simulation).
    return np.ascontiguousarray(frame[:, :, 1])


def _zxing(image: np.ndarray, **options: Any) -> list[str]:
    return [result.text for result in zxingcpp.read_barcodes(image, formats=_QR, **options)
            if result.valid and result.text]


def _pad(image: np.ndarray, share: float = 0.15) -> np.ndarray:
    import cv2
    border = int(max(image.shape[:2]) * share)
    return cv2.copyMakeBorder(image, border, border, border, border, cv2.BORDER_CONSTANT,
                              value=255)


def _opencv_curved(image: np.ndarray) -> list[str]:
    import cv2
    detector = cv2.QRCodeDetector()
    for candidate in (image, _pad(image)):
        try:
            text, _, _ = detector.detectAndDecodeCurved(candidate)
        except (cv2.error, UnicodeDecodeError):  # OpenCV 5 refuses Kanji mode; its binding
            # fails on texts that are not UTF-8
            continue
        if text:
            return [text]
    return []


def _stages():
    import cv2
    return (
        ("zxing", lambda g: _zxing(g)),
        ("zxing global histogram", lambda g: _zxing(g, binarizer=zxingcpp.Binarizer.GlobalHistogram)),
        ("zxing median 3", lambda g: _zxing(cv2.medianBlur(g, 3),
                                            binarizer=zxingcpp.Binarizer.GlobalHistogram)),
        ("zxing x2", lambda g: _zxing(cv2.resize(g, None, fx=2, fy=2,
                                                 interpolation=cv2.INTER_CUBIC))),
        ("opencv curved", _opencv_curved),
        ("opencv curved, closed", lambda g: _opencv_curved(
            cv2.morphologyEx(g, cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8)))),
    )


def decode(frame: np.ndarray, *, rescue: bool = True) -> list[str]:
    """Texts of the QR codes in a BGR or grey frame ([] when none can be read)."""
    gray = _gray(frame)
    first = _zxing(gray)
    if first or not rescue:
        return first
    for _, stage in _stages()[1:]:
        texts = stage(gray)
        if texts:
            return texts
    return []
