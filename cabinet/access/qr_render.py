"""QR codes as images: the screen's code (phone scan) and test pictures, from the qrcode library.

Only its module matrix is used, so no imaging library (Pillow) is needed: the matrix, quiet zone
included, is scaled to a grey uint8 image with numpy.
"""

from __future__ import annotations

import numpy as np
import qrcode


def qr_image(text: str, *, box: int = 5, border: int = 4) -> np.ndarray:
    """A black-on-white QR code of `text` (error correction M), `box` pixels a module."""
    qr = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=border)
    qr.add_data(text)
    qr.make(fit=True)
    modules = np.array(qr.get_matrix(), dtype=bool)
    return np.kron(np.where(modules, 0, 255).astype(np.uint8), np.ones((box, box), np.uint8))


def qr_version(text: str) -> int:
    qr = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M)
    qr.add_data(text)
    qr.make(fit=True)
    return qr.version
