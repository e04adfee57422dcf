"""Face checkout, measured: our thin dlib wrapper against face_recognition, side by side.

1. Memory: resident set of a process after loading the models (ours: HOG + 5-point + ResNet;
   face_recognition: its import loads all four), over a baseline that imported numpy and OpenCV.
2. Per 640x480 frame (the test photographs letterboxed as the camera delivers them): HOG
   detection, landmarks + 128-d descriptor, 1:N search over 100 000 members, and the total from
   frame to decision; face_recognition's face_locations + face_encodings on the same frames.
   The two must give the same embedding (same models, same method): the largest difference is
   printed.
3. 1:N search per query over 10 000 and 100 000 members: ours (float32, norms precomputed,
   argpartition) against face_recognition.face_distance (float64 norm of the difference).
4. Accuracy on tests/data/faces (train enrols, test and misc probe): true accepts and false
   accepts with everyone enrolled and with the probe's person left out, for a few tolerances.

`--cpus`/`--cpu-quota` hold this process to a slow board's share of a CPU.

    .venv/bin/python tools/bench/face.py [--cpus 0 --cpu-quota 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from cabinet.access.face import Gallery  # noqa: E402
from cabinet.access.face_model import FaceModel  # noqa: E402
from tests.test_face import FACES, PROBES, frame_640x480  # noqa: E402
from tools.bench.baseline import machine_load  # noqa: E402
from tools.bench.common import CpuLimit, cpu_limit_options  # noqa: E402

RSS = ("import re; rss = lambda: int(re.search(r'VmRSS:\\s+(\\d+)', "
       "open('/proc/self/status').read()).group(1)) / 1024")


def memory() -> None:
    print("\n== memory: resident MB after loading the models (own process each) ==")
    base = f"{RSS}; import numpy, cv2; b = rss(); "
    cases = {
        "baseline (numpy + OpenCV)": "pass",
        "ours: cabinet.access.face_model.FaceModel()":
            "import sys; sys.path.insert(0, %r); from cabinet.access.face_model import FaceModel; "
            "m = FaceModel()" % str(ROOT),
        "face_recognition (import)": "import face_recognition",
    }
    for name, code in cases.items():
        out = subprocess.run([sys.executable, "-c", base + code + "; print(rss(), rss() - b)"],
                             capture_output=True, text=True)
        if out.returncode != 0:
            print(f"  {name:<46} not available: {out.stderr.strip().splitlines()[-1]}")
            continue
        total, added = map(float, out.stdout.split())
        print(f"  {name:<46} {total:6.0f} MB  (+{added:.0f} MB)")


def per_frame(model: FaceModel, gallery: Gallery) -> None:
    print("\n== per 640x480 frame, ms (median / max over the probe photographs) ==")
    import cv2
    frames = [frame_640x480(FACES / name) for name in PROBES]
    rows: dict[str, list[float]] = {k: [] for k in ("detect", "embed", "search", "total",
                                                    "fr_detect", "fr_embed")}
    worst_diff = 0.0
    try:
        import face_recognition as fr
    except Exception:
        fr = None
    for frame in frames:
        for _ in range(3):
            t0 = time.perf_counter()
            rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            boxes = model._detector(rgb, 0)
            t1 = time.perf_counter()
            box = max(boxes, key=lambda r: r.area())
            shape = model._landmarks(rgb, box)
            vector = np.asarray(model._descriptor.compute_face_descriptor(rgb, shape), np.float32)
            t2 = time.perf_counter()
            gallery.identify(vector, tolerance=0.5, margin=0.08)
            t3 = time.perf_counter()
            rows["detect"].append((t1 - t0) * 1000)
            rows["embed"].append((t2 - t1) * 1000)
            rows["search"].append((t3 - t2) * 1000)
            rows["total"].append((t3 - t0) * 1000)
            if fr is not None:
                t0 = time.perf_counter()
                locations = fr.face_locations(rgb, number_of_times_to_upsample=0)
                t1 = time.perf_counter()
                largest = max(locations, key=lambda b: (b[2] - b[0]) * (b[1] - b[3]))
                (theirs,) = fr.face_encodings(rgb, [largest])
                t2 = time.perf_counter()
                rows["fr_detect"].append((t1 - t0) * 1000)
                rows["fr_embed"].append((t2 - t1) * 1000)
                worst_diff = max(worst_diff, float(np.abs(theirs - vector).max()))

    def show(label, values):
        if values:
            print(f"  {label:<62} {statistics.median(values):7.1f} / {max(values):7.1f}")
    show("HOG detection, whole frame (upsample 0)", rows["detect"])
    show("5 landmarks + 128-d descriptor", rows["embed"])
    show(f"1:N search over {len(gallery):,} members", rows["search"])
    show("frame -> decision (the three above)", rows["total"])
    show("face_recognition: face_locations (upsample 0)", rows["fr_detect"])
    show("face_recognition: face_encodings", rows["fr_embed"])
    if fr is not None:
        print(f"  largest difference between the two embeddings: {worst_diff:.2e}")


def search(real: list[np.ndarray]) -> Gallery:
    print("\n== 1:N search, ms per query (median of 200) ==")
    try:
        import face_recognition as fr
    except Exception:
        fr = None
    rng = np.random.default_rng(1)
    big = None
    for n in (10_000, 100_000):
        # Members around real descriptors, so distances look like real ones.
        base = np.asarray(real)[rng.integers(0, len(real), n)]
        members = base + rng.normal(0, 0.06, base.shape)
        started = time.perf_counter()
        gallery = Gallery({f"m{i:06d}": [members[i]] for i in range(n)})
        build = (time.perf_counter() - started) * 1000
        queries = members[rng.integers(0, n, 200)] + rng.normal(0, 0.02, (200, 128))
        ours, theirs = [], []
        as_f64 = members.astype(np.float64)
        for q in queries:
            t0 = time.perf_counter()
            gallery.nearest(q)
            t1 = time.perf_counter()
            ours.append((t1 - t0) * 1000)
            if fr is not None:
                t0 = time.perf_counter()
                d = fr.face_distance(as_f64, q)
                np.argpartition(d, 1)[:2]
                theirs.append((time.perf_counter() - t0) * 1000)
        line = f"  {n:>7,} members: ours {statistics.median(ours):6.2f} ms"
        if theirs:
            line += f"   face_recognition.face_distance {statistics.median(theirs):6.2f} ms"
        print(line + f"   (gallery built in {build:.0f} ms, {gallery.matrix.nbytes / 2**20:.0f} MB)")
        big = gallery
    return big


def accuracy(model: FaceModel) -> list[np.ndarray]:
    print("\n== accuracy on tests/data/faces (train enrols; test + misc probe) ==")
    enrolled = {p.name: [model.embedding_from_photo(f) for f in sorted(p.iterdir())]
                for p in sorted((FACES / "train").iterdir())}
    faces = []   # (people in the photo, embedding)
    for name, people in PROBES.items():
        for face in model.analyse(frame_640x480(FACES / name), largest_only=False):
            faces.append((name, people, face.embedding))
    print(f"  {len(enrolled)} people enrolled from {sum(map(len, enrolled.values()))} photos; "
          f"{len(faces)} faces in {len(PROBES)} probe photos")
    print(f"  {'tolerance':>9}  {'true accepts':>13}  {'false accepts':>13}  "
          f"{'false accepts, person not enrolled':>34}")
    for tolerance in (0.4, 0.5, 0.6):
        full = Gallery(enrolled)
        true = false = 0
        for name, people, vector in faces:
            who = full.identify(vector, tolerance=tolerance, margin=0.08).member_id
            true += who in people
            false += who is not None and who not in people
        absent_false = trials = 0
        for left_out in enrolled:
            partial = Gallery({p: e for p, e in enrolled.items() if p != left_out})
            for name, people, vector in faces:
                if people == {left_out}:
                    trials += 1
                    absent_false += partial.identify(vector, tolerance=tolerance,
                                                     margin=0.08).member_id is not None
        mark = "  <- default" if tolerance == 0.5 else ""
        print(f"  {tolerance:>9}  {true:>6} of {len(faces):<4}  {false:>13}  "
              f"{absent_false:>20} of {trials:<11}{mark}")
    return [v for vs in enrolled.values() for v in vs]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cpu_limit_options(p)
    args = p.parse_args()
    limit = CpuLimit(args.cpus, args.cpu_quota)
    try:
        limit.hold(os.getpid())
        print(f"this process: {limit.describe()}; {machine_load()}")
        started = time.perf_counter()
        model = FaceModel()
        print(f"our models loaded in {time.perf_counter() - started:.2f} s")
        real = accuracy(model)
        gallery = search(real)
        per_frame(model, gallery)
    finally:
        limit.close()
    memory()


if __name__ == "__main__":
    main()
