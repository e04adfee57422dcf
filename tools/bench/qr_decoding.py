"""QR decoding on the ZXing test photographs: our pipeline against its peers, side by side.

For each set in tests/data/qr (sets 1-4 were used to choose the pipeline's rescues; sets 5-6 are
held out and only measured): how many photographs each decoder reads correctly at 0°, and its
median milliseconds per photograph. Texts are compared after normalising line ends and trailing
spaces. pyzbar needs the zbar library (Debian: libzbar0); without it its column is skipped.

    .venv/bin/python tools/bench/qr_decoding.py
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from cabinet.access.qr_decode import decode, _zxing  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "tests" / "data" / "qr"


def normalise(text: str) -> str:
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "\n".join(line.rstrip() for line in lines).strip()


def load(path: Path):
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:  # OpenCV's imread has no GIF reader; its video reader has
        ok, frame = cv2.VideoCapture(str(path)).read()
        image = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if ok else None
    return image


def cases():
    for folder in sorted(DATA.glob("zxing-qrcode-*")):
        for image in sorted(folder.iterdir()):
            expected = image.with_suffix(".txt")
            if image.suffix in (".png", ".jpg", ".jpeg", ".gif") and expected.exists():
                yield folder.name, image, expected.read_text(encoding="utf-8", errors="replace")


def opencv_plain(image):
    try:
        text, _, _ = cv2.QRCodeDetector().detectAndDecode(image)
    except (cv2.error, UnicodeDecodeError):  # OpenCV's Python binding chokes on non-UTF-8
        return []
    return [text] if text else []


def opencv_aruco(image):
    try:
        ok, texts, _, _ = cv2.QRCodeDetectorAruco().detectAndDecodeMulti(image)
    except (cv2.error, UnicodeDecodeError):  # OpenCV's Python binding chokes on non-UTF-8
        return []
    return [t for t in texts if t] if ok else []


def decoders():
    found = {"ours (cabinet.access.qr_decode)": decode, "zxing-cpp alone": _zxing,
             "OpenCV QRCodeDetector": opencv_plain, "OpenCV QRCodeDetectorAruco": opencv_aruco}
    try:
        from pyzbar import pyzbar
        found["pyzbar (zbar)"] = lambda image: [
            r.data.decode("utf-8", errors="replace") for r in
            pyzbar.decode(image, symbols=[pyzbar.ZBarSymbol.QRCODE])]
    except (ImportError, OSError):
        print("(pyzbar skipped: the zbar library is not installed; apt install libzbar0)")
    return found


def main() -> int:
    if not DATA.exists():
        print(f"no test photographs at {DATA}")
        return 1
    images = [(s, p, normalise(t), load(p)) for s, p, t in cases()]
    sets = sorted({s for s, *_ in images})
    table = {}
    for name, fn in decoders().items():
        for set_name in sets:
            ok, times = 0, []
            for s, path, want, image in images:
                if s != set_name:
                    continue
                started = time.perf_counter()
                texts = fn(image)
                times.append(time.perf_counter() - started)
                ok += any(normalise(t) == want for t in texts)
            table[(name, set_name)] = (ok, len(times), statistics.median(times) * 1e3)
    names = list(dict.fromkeys(n for n, _ in table))
    print(f"{'decoder':<34}" + "".join(f"{s[-1]:>12}" for s in sets) + f"{'total':>10}")
    for name in names:
        row = [table[(name, s)] for s in sets]
        cells = "".join(f"{ok:>4}/{n:<3}{ms:>4.1f}ms" for ok, n, ms in row)
        print(f"{name:<34}{cells}{sum(r[0] for r in row):>6}/{sum(r[1] for r in row)}")
    print("(per set: decoded/photographs and median ms per photograph; sets 5 and 6 are held out)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
