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


def qr_svg(text: str, *, border: int = 4) -> str:
    """The same code as an SVG (one path, a unit a module) for the kiosk page to scale crisply."""
    qr = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=border)
    qr.add_data(text)
    qr.make(fit=True)
    matrix = qr.get_matrix()
    size = len(matrix)
    path = "".join(f"M{x} {y}h1v1h-1z" for y, row in enumerate(matrix)
                   for x, dark in enumerate(row) if dark)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {size} {size}" '
            f'shape-rendering="crispEdges"><rect width="{size}" height="{size}" fill="#fff"/>'
            f'<path d="{path}" fill="#000"/></svg>')
