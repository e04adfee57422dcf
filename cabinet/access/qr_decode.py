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
6. zxing-cpp on the bright patch the code is printed on (a T-shirt, a label on a bottle), its
   curved outline mapped onto a flat square (issue 23; set 4's cloth photographs)

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
    # Plain text: the code's own characters. zxing-cpp's default (human-readable) spells control
    # characters out as "<SOH>", which is not what the code says.
    return [result.text for result in zxingcpp.read_barcodes(
        image, formats=_QR, text_mode=zxingcpp.TextMode.Plain, **options)
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


def _resample(points: np.ndarray, n: int) -> np.ndarray:
    """`n` points evenly spaced along a polyline."""
    along = np.r_[0.0, np.cumsum(np.hypot(*np.diff(points, axis=0).T))]
    at = np.linspace(0.0, along[-1], n)
    return np.c_[np.interp(at, along, points[:, 0]), np.interp(at, along, points[:, 1])]


def _flattened(image: np.ndarray, size: int = 300) -> np.ndarray | None:
    """The largest bright patch in the image (the cloth or label a code is printed on), mapped
    onto a flat square: its outline is split at its four corners into four curved sides, and a
    Coons patch between them says where each pixel of the square comes from. A code bent with
    its patch comes out about flat, which zxing-cpp's perspective model alone cannot undo.
    None when no patch stands out: none a fifth of the image or more, or the whole of it."""
    import cv2
    if int(image.max()) - int(image.min()) < 32:
        return None
    _, bright = cv2.threshold(cv2.GaussianBlur(image, (5, 5), 0), 0, 255,
                              cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    k = max(3, (min(image.shape[:2]) // 20) | 1)   # closes the patch over the code's modules
    bright = cv2.morphologyEx(bright, cv2.MORPH_CLOSE, np.ones((k, k), np.uint8))
    contours, _ = cv2.findContours(bright, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return None
    outline = max(contours, key=cv2.contourArea)
    if not 0.2 <= cv2.contourArea(outline) / (image.shape[0] * image.shape[1]) < 0.95:
        return None
    outline = outline[:, 0, :].astype(np.float64)
    n = len(outline)
    total, across = outline.sum(axis=1), outline[:, 0] - outline[:, 1]
    tl, tr, br, bl = (int(np.argmin(total)), int(np.argmax(across)), int(np.argmax(total)),
                      int(np.argmin(across)))

    def side(a: int, b: int) -> np.ndarray:  # the outline from index a to b, going forwards
        return outline[a:b + 1] if a <= b else np.vstack([outline[a:], outline[:b + 1]])
    if (tr - tl) % n < (bl - tl) % n:   # the outline runs top left -> top right -> ...
        top, right = side(tl, tr), side(tr, br)
        bottom, left = side(br, bl)[::-1], side(bl, tl)[::-1]
    else:
        top, right = side(tr, tl)[::-1], side(br, tr)[::-1]
        bottom, left = side(bl, br), side(tl, bl)
    if min(len(top), len(right), len(bottom), len(left)) < 2:
        return None
    t, b, l, r = (_resample(x, size) for x in (top, bottom, left, right))
    u = np.linspace(0.0, 1.0, size)[None, :, None]
    v = np.linspace(0.0, 1.0, size)[:, None, None]
    corners = (1 - u) * (1 - v) * t[0] + u * (1 - v) * t[-1] + (1 - u) * v * b[0] + u * v * b[-1]
    where = (1 - v) * t[None] + v * b[None] + (1 - u) * l[:, None] + u * r[:, None] - corners
    return cv2.remap(image, where[..., 0].astype(np.float32), where[..., 1].astype(np.float32),
                     cv2.INTER_LINEAR, borderValue=255)


def _on_flattened_patch(image: np.ndarray) -> list[str]:
    flat = _flattened(image)
    return [] if flat is None else _zxing(flat)


def _stages():
    import cv2
    return (
        ("zxing", lambda g: _zxing(g)),
        ("zxing global histogram",
         lambda g: _zxing(g, binarizer=zxingcpp.Binarizer.GlobalHistogram)),
        ("zxing median 3", lambda g: _zxing(cv2.medianBlur(g, 3),
                                            binarizer=zxingcpp.Binarizer.GlobalHistogram)),
        ("zxing x2", lambda g: _zxing(cv2.resize(g, None, fx=2, fy=2,
                                                 interpolation=cv2.INTER_CUBIC))),
        ("opencv curved", _opencv_curved),
        ("opencv curved, closed", lambda g: _opencv_curved(
            cv2.morphologyEx(g, cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8)))),
        ("zxing on the flattened patch", _on_flattened_patch),
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
