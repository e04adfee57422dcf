"""Access codes: every kind of bad code is refused, offline; not one of 100 000 mutants opens."""

from __future__ import annotations

import base64
import random

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from cabinet.access.codes import (CodeRefused, Policy, PublicKey, mint, parse, verify)

NOW = 1_800_000_000
SIGNER = Ed25519PrivateKey.generate()
TECH_SIGNER = Ed25519PrivateKey.generate()
KEYS = {1: PublicKey(1, SIGNER.public_key(), ("shopper",)),
        2: PublicKey(2, TECH_SIGNER.public_key(), ("shopper", "technician"))}
POLICY = Policy("cab-7", groups=("lhasa-hospital",), clock_skew_seconds=60,
                max_lifetime_seconds=86400)


def code(**kw):
    args = dict(key_id=1, audience="cab-7", subject="acct-42", role="shopper",
                issued_at=NOW - 10, lifetime_seconds=90)
    signer = kw.pop("signer", SIGNER)
    args.update(kw)
    return mint(signer, **args)


def check(token, now=NOW, trusted=True, last_trusted=None):
    return verify(token, KEYS, POLICY, now=now, clock_trusted=trusted, last_trusted=last_trusted)


def refused(token, **kw):
    with pytest.raises(CodeRefused) as caught:
        check(token, **kw)
    return caught.value.reason


def test_a_good_code_and_its_size():
    token = code()
    got = check(token)
    assert (got.subject, got.role, got.audience) == ("acct-42", "shopper", "cab-7")
    assert len(got.code_id) == 32 and len(token) < 160
    assert check(code(audience="*")).audience == "*"
    assert check(code(audience="lhasa-hospital")).audience == "lhasa-hospital"
    assert check(code(key_id=2, role="technician", signer=TECH_SIGNER)).role == "technician"


@pytest.mark.parametrize("token_kw, check_kw, reason", [
    ({"signer": Ed25519PrivateKey.generate()}, {}, "bad_signature"),            # forged
    ({"key_id": 9}, {}, "unknown_key"),
    ({"audience": "cab-8"}, {}, "wrong_cabinet"),
    ({"role": "technician"}, {}, "wrong_role"),                                 # key 1: shoppers
    ({"issued_at": NOW - 1000, "lifetime_seconds": 90}, {}, "expired"),
    ({"issued_at": NOW + 600}, {}, "not_yet_valid"),
    ({"lifetime_seconds": 90 * 86400}, {}, "lifetime"),
    ({}, {"trusted": False, "last_trusted": None}, "clock_untrusted"),
    ({}, {"trusted": False, "last_trusted": NOW + 3600}, "clock_untrusted"),
])
def test_each_kind_of_bad_code_is_refused(token_kw, check_kw, reason):
    assert refused(code(**token_kw), **check_kw) == reason


def test_before_the_clock_is_trusted_only_newer_codes_pass():
    assert check(code(), trusted=False, last_trusted=NOW - 60).subject == "acct-42"
    # The clock restarted from an old saved time: a code issued later than it is still accepted
    # (real time is at least the clock), an expired one is not.
    assert check(code(issued_at=NOW + 600), now=NOW, trusted=False, last_trusted=NOW).role
    assert refused(code(issued_at=NOW - 1000), trusted=False, last_trusted=NOW - 2000) == "expired"


@pytest.mark.parametrize("mangle", [
    lambda t: t[:-1], lambda t: t[:20], lambda t: "", lambda t: t + "A", lambda t: "C2" + t[2:],
    lambda t: t.replace("C1", "c1", 1), lambda t: t + "=", lambda t: t[:10] + " " + t[11:],
    lambda t: "C1" + "A" * 500, lambda t: "C1\u00e9" + t[3:],
])
def test_malformed(mangle):
    assert refused(mangle(code())) in ("malformed", "bad_signature")


def test_non_canonical_base64_is_refused():
    token = code()
    body = token[2:]
    raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    # Change only the unused low bits of the last character: same bytes, another spelling.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(body[-1])
    twins = [alphabet[last ^ bit] for bit in (1, 2, 4, 8)]
    for twin in twins:
        other = "C1" + body[:-1] + twin
        try:
            twin_raw = base64.urlsafe_b64decode(other[2:] + "=" * (-len(other[2:]) % 4))
        except ValueError:
            continue
        if twin_raw == raw:
            assert refused(other) == "malformed"


def test_one_hundred_thousand_mutants_open_nothing():
    rng = random.Random(5)
    good = [code(subject=f"acct-{i}") for i in range(20)]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    opened = 0
    for n in range(100_000):
        token = list(rng.choice(good))
        kind = n % 4
        if kind == 0:    # flip one character
            i = rng.randrange(2, len(token))
            token[i] = rng.choice(alphabet.replace(token[i], ""))
        elif kind == 1:  # truncate
            del token[rng.randrange(2, len(token)):]
        elif kind == 2:  # splice two codes
            other = rng.choice(good)
            cut = rng.randrange(2, len(token))
            token = token[:cut] + list(other[cut:])
            if "".join(token) in good:
                continue
        else:            # insert a character
            token.insert(rng.randrange(2, len(token) + 1), rng.choice(alphabet))
        try:
            check("".join(token))
            opened += 1
        except CodeRefused:
            pass
    assert opened == 0


@settings(max_examples=2000, deadline=None)
@given(st.text(max_size=300))
def test_any_text_is_refused_cleanly(text):
    with pytest.raises(CodeRefused):
        check(text)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=250))
def test_any_bytes_behind_the_prefix_are_refused_cleanly(raw):
    token = "C1" + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    with pytest.raises(CodeRefused):
        check(token)


def test_parse_reads_what_mint_wrote():
    parsed, payload, signature = parse(code(subject="藏文-ok"))
    assert parsed.subject == "藏文-ok" and len(signature) == 64
