"""QR decoding on the ZXing test photographs: our pipeline against its peers, side by side.

For each set in tests/data/qr (sets 1-4 were used to choose the pipeline's rescues; sets 5-6 are
held out and only measured): how many photographs each decoder reads correctly at each rotation
asked for (0° by default; issue 23's goal is at every one of 0, 90, 180 and 270), and its median
milliseconds per photograph; ours today beside ours before issue 23 (tools/bench/baseline.py,
its qr_decode.py from git history). Texts are compared after normalising line ends and trailing
spaces. pyzbar needs the zbar library (Debian: libzbar0); without it its column is skipped.

    .venv/bin/python tools/bench/qr_decoding.py [--rotations 0 90 180 270] [--misses]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import cv2
import zxingcpp

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from cabinet.access.qr_decode import decode  # noqa: E402
from tools.bench import baseline  # noqa: E402
from tools.bench.baseline import against_option, machine_load  # noqa: E402

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


def zxing_default(image):
    """zxing-cpp as it comes: its default text mode and binariser."""
    return [r.text for r in zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode)
            if r.valid and r.text]


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


def _module(path: Path):
    """A module from a file outside the package (the decoder as of an earlier commit)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(f"before_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def decoders(against: str | None = None):
    found = {"ours (cabinet.access.qr_decode)": decode}
    before = baseline.tree(against, parts=("cabinet/access/qr_decode.py",))
    if before is not None:
        found[f"ours at {against}"] = _module(before / "cabinet/access/qr_decode.py").decode
    found.update({"zxing-cpp alone": zxing_default,
             "OpenCV QRCodeDetector": opencv_plain, "OpenCV QRCodeDetectorAruco": opencv_aruco})
    try:
        from pyzbar import pyzbar
        found["pyzbar (zbar)"] = lambda image: [
            r.data.decode("utf-8", errors="replace") for r in
            pyzbar.decode(image, symbols=[pyzbar.ZBarSymbol.QRCODE])]
    except (ImportError, OSError):
        print("(pyzbar skipped: the zbar library is not installed; apt install libzbar0)")
    return found


ROTATIONS = {0: None, 90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180,
             270: cv2.ROTATE_90_COUNTERCLOCKWISE}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rotations", type=int, nargs="+", default=[0], choices=sorted(ROTATIONS),
                   help="turn every photograph by these degrees (clockwise) first")
    p.add_argument("--decoders", nargs="+", metavar="NAME",
                   help="only the decoders whose name starts with one of these (e.g. ours zxing)")
    p.add_argument("--misses", action="store_true", help="list the photographs ours misses")
    against_option(p)
    args = p.parse_args()
    if not DATA.exists():
        print(f"no test photographs at {DATA}")
        return 1
    images = [(s, p, normalise(t), load(p)) for s, p, t in cases()]
    sets = sorted({s for s, *_ in images})
    found = decoders(args.against)
    if args.decoders:
        found = {n: f for n, f in found.items() if any(n.startswith(d) for d in args.decoders)}
    print(machine_load())
    for degrees in args.rotations:
        table, misses = {}, []
        turned = [(s, path, want, image if ROTATIONS[degrees] is None
                   else cv2.rotate(image, ROTATIONS[degrees])) for s, path, want, image in images]
        for name, fn in found.items():
            for set_name in sets:
                ok, times = 0, []
                for s, path, want, image in turned:
                    if s != set_name:
                        continue
                    started = time.perf_counter()
                    texts = fn(image)
                    times.append(time.perf_counter() - started)
                    hit = any(normalise(t) == want for t in texts)
                    ok += hit
                    if not hit and name == next(iter(found)):
                        misses.append(f"{s[-1]}/{path.name}")
                table[(name, set_name)] = (ok, len(times), statistics.median(times) * 1e3)
        names = list(dict.fromkeys(n for n, _ in table))
        print(f"\nrotated {degrees}°:")
        print(f"{'decoder':<36}" + "".join(f"{s[-1]:>12}" for s in sets) + f"{'total':>10}")
        for name in names:
            row = [table[(name, s)] for s in sets]
            cells = "".join(f"{ok:>4}/{n:<3}{ms:>4.1f}ms" for ok, n, ms in row)
            print(f"{name:<36}{cells}{sum(r[0] for r in row):>6}/{sum(r[1] for r in row)}")
        if args.misses:
            print("ours misses: " + " ".join(misses))
    print("(per set: decoded/photographs and median ms per photograph; sets 5 and 6 are held out)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
