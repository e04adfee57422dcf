"""Fuzz target for an enrolment entry (cabinet.access.face.parse_member), the untrusted JSON an
enroll_faces command or `POST /api/faces/enrol` carries (atheris, coverage-guided).

Any entry must end in a member id with 1-5 checked 128-float embeddings, a member id with None
(consent false), or a MemberError; any other exception is a bug. Each input is tried twice: read
as JSON text, and as the fields of an entry drawn from the bytes (so the fuzzer reaches the
embedding checks without having to invent 128 numbers of JSON).

    .venv/bin/python tools/fuzz/fuzz_face_members.py -max_total_time=60
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np  # noqa: E402  (imported first: only our module is instrumented)

with atheris.instrument_imports():
    from cabinet.access import face



def drawn_entry(data: bytes) -> dict:
    fdp = atheris.FuzzedDataProvider(data)
    member_id = fdp.PickValueInList(["acct-7", "m:1@x", "", "a" * 101, None])
    if member_id is None:
        member_id = fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 120))
    entry = {"member_id": member_id,
             "consent": fdp.PickValueInList([True, False, None, 1, "yes"])}
    # Drawn so that running out of bytes still gives a full entry (exhausted draws are 0/first).
    with_embeddings = not fdp.ConsumeBool()
    embeddings = []
    for _ in range((1 + fdp.ConsumeIntInRange(0, 7)) % 8):
        size = fdp.PickValueInList([128, 128, 128, 127, 129, 0])
        kind = fdp.ConsumeIntInRange(0, 3)
        if kind == 0:   # descriptor-like: the length (0 to about 3.4) is the fuzzer's to choose
            scale = fdp.ConsumeFloatInRange(0.0, 0.5)
            embeddings.append([scale * fdp.ConsumeFloatInRange(-1.0, 1.0) for _ in range(size)])
        elif kind == 1:
            embeddings.append([fdp.ConsumeRegularFloat() for _ in range(size)])
        elif kind == 2:
            embeddings.append([fdp.ConsumeFloat() for _ in range(size)])  # nan, inf too
        else:
            embeddings.append(fdp.ConsumeUnicodeNoSurrogates(8))
    if with_embeddings:
        entry["embeddings"] = embeddings
    return entry


def test_one_input(data: bytes) -> None:
    try:
        raw = json.loads(data.decode("utf-8", errors="replace"))
    except (ValueError, RecursionError):
        raw = None
    if raw is not None:
        check(raw)
    check(drawn_entry(data))


def check(raw) -> None:
    try:
        member_id, vectors = face.parse_member(raw)
    except face.MemberError:
        return
    assert face.MEMBER_ID.fullmatch(member_id)
    if vectors is None:
        assert raw["consent"] is False
        return
    assert raw["consent"] is True and 1 <= len(vectors) <= face.MAX_EMBEDDINGS_PER_MEMBER
    for v in vectors:
        assert v.dtype == np.float32 and v.shape == (face.DIMENSIONS,) and np.all(np.isfinite(v))
        assert np.abs(v).max() <= 1.0 and 0.5 <= float(np.linalg.norm(v.astype(float))) <= 3.0001


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
