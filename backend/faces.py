"""Face enrolment from photographs: measured here with the cabinet's own model (dlib), then sent
as an enroll_faces command holding the embeddings only. The photographs are dropped in memory."""

from __future__ import annotations

import base64
import binascii
import threading

_model = None
_lock = threading.Lock()  # one photo at a time through dlib


class PhotoRefused(ValueError):
    """A photograph that is not one (base64, image, one face): the message says which."""


def embeddings(photos: list[str]) -> list[list[float]]:
    from cabinet.access.face_model import FaceModel, FaceUnavailable, PhotoError

    global _model
    vectors = []
    try:
        for i, photo in enumerate(photos):
            try:
                data = base64.b64decode(photo, validate=True)
            except (binascii.Error, ValueError):
                raise PhotoRefused(f"photos[{i}] is not base64") from None
            with _lock:
                if _model is None:
                    _model = FaceModel()
                vectors.append(_model.embedding_from_photo(data, f"photos[{i}]"))
    except FaceUnavailable as exc:
        raise PhotoRefused(f"this backend cannot measure faces: {exc}") from None
    except PhotoError as exc:
        raise PhotoRefused(str(exc)) from None
    return [[round(float(x), 6) for x in v] for v in vectors]
