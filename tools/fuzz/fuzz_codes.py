"""Fuzz target for the access-code parser and verifier (atheris, coverage-guided).

Any input must end in an AccessCode (never, without the key) or a CodeRefused; anything else, an
exception of another kind or a crash, is a bug. Seeds: a valid code, so mutations start close to
the format.

    .venv/bin/python tools/fuzz/fuzz_codes.py -max_total_time=60
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

with atheris.instrument_imports():
    from cabinet.access import codes

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
KEYS = {1: codes.PublicKey(1, _KEY.public_key())}
POLICY = codes.Policy("cab-7")
NOW = 1_800_000_000
SEED = codes.mint(_KEY, key_id=1, audience="cab-7", subject="acct-42", role="shopper",
                  issued_at=NOW, lifetime_seconds=90)


def test_one_input(data: bytes) -> None:
    text = data.decode("latin-1")
    for token in (text, codes.PREFIX + text):
        try:
            code = codes.verify(token, KEYS, POLICY, now=NOW, clock_trusted=True,
                                last_trusted=None)
        except codes.CodeRefused:
            continue
        if token != SEED:
            raise AssertionError(f"a code nobody signed was accepted: {token!r} -> {code}")


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
