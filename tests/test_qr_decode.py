"""QR decoding: real photographs, and our own access codes drawn as QR codes."""

from __future__ import annotations

import time

import cv2
import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cabinet.access.codes import mint
from cabinet.access.qr_decode import decode
from cabinet.access.qr_render import qr_image, qr_version

from .conftest import TEST_DATA

SET1 = TEST_DATA / "qr" / "zxing-qrcode-1"


def test_reads_a_real_photograph():
    image = cv2.imread(str(SET1 / "1.png"))
    assert decode(image) == [(SET1 / "1.txt").read_text()]


def test_rescue_stages_read_what_zxing_alone_misses():
    # Set 2 photograph 12 is an artistic code without a quiet zone: the median stage reads it.
    folder = TEST_DATA / "qr" / "zxing-qrcode-2"
    image = cv2.imread(str(folder / "12.png"))
    want = (folder / "12.txt").read_text().strip()
    assert decode(image, rescue=False) == []
    assert [t.strip() for t in decode(image)] == [want]


def test_nothing_in_a_blank_frame():
    assert decode(np.full((480, 640, 3), 128, np.uint8)) == []


def test_an_access_code_round_trips_through_a_qr_image_and_its_version():
    token = mint(Ed25519PrivateKey.generate(), key_id=3, audience="cabinet-0001",
                 subject="acct-1234567", role="shopper", issued_at=int(time.time()),
                 lifetime_seconds=90)
    version = qr_version(token)
    print(f"{len(token)}-character code -> QR version {version} at error correction M")
    assert version <= 10, "small enough to read from a phone screen at arm's length"
    assert decode(qr_image(token, box=6)) == [token]


def test_at_least_174_of_the_179_zxing_photographs_at_every_rotation():
    from tools.bench.qr_decoding import cases, load, normalise

    photographs = [(set_name, load(path), normalise(text)) for set_name, path, text in cases()]
    assert len(photographs) == 179
    for turn in (None, cv2.ROTATE_90_CLOCKWISE, cv2.ROTATE_180, cv2.ROTATE_90_COUNTERCLOCKWISE):
        per_set: dict[str, list[int]] = {}
        for set_name, image, want in photographs:
            turned = image if turn is None else cv2.rotate(image, turn)
            per_set.setdefault(set_name, []).append(
                any(normalise(t) == want for t in decode(turned)))
        total = sum(sum(v) for v in per_set.values())
        assert total >= 174, (turn, {k: f"{sum(v)}/{len(v)}" for k, v in per_set.items()})


def test_the_closed_curved_stage_reads_a_glare_speckled_bent_code():
    path = TEST_DATA / "qr" / "zxing-qrcode-4" / "06.png"
    from tools.bench.qr_decoding import load, normalise

    want = normalise((path.with_suffix(".txt")).read_text(encoding="utf-8", errors="replace"))
    assert [normalise(t) for t in decode(load(path))] == [want]


def test_a_code_printed_on_cloth_is_read_from_its_flattened_patch():
    """Set 4 photograph 13: a code on a T-shirt, bent with the cloth; every stage before the
    flattening fails on it (zxing-cpp finds it but its checksums fail)."""
    from cabinet.access.qr_decode import _flattened, _stages
    from tools.bench.qr_decoding import load, normalise

    path = TEST_DATA / "qr" / "zxing-qrcode-4" / "13.png"
    image = load(path)
    want = normalise(path.with_suffix(".txt").read_text(encoding="utf-8", errors="replace"))
    *before, (name, flattened) = _stages()
    assert name == "zxing on the flattened patch"
    assert all(stage(image) == [] for _, stage in before)
    assert [normalise(t) for t in flattened(image)] == [want]
    assert _flattened(np.full((240, 240), 30, np.uint8)) is None   # no bright patch: no stage


def test_control_characters_in_a_code_come_through_as_they_are():
    """Set 2 photograph 33 holds two control characters before its text; zxing-cpp's default
    text spelled them out as "<SOH><DLE>"."""
    folder = TEST_DATA / "qr" / "zxing-qrcode-2"
    (text,) = decode(cv2.imread(str(folder / "33.png")))
    assert text == (folder / "33.txt").read_text(encoding="utf-8") and text.startswith("\x01\x10")
