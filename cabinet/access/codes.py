"""Signed access codes: the compact token a QR code carries, and its offline verification.

    token   = "C1" + base64url(payload + signature), no padding
    payload = version (1 byte, = 1) | key id (uint16) | role (1 byte: 0 shopper, 1 technician)
              | issued at (uint32, Unix seconds) | expires at (uint32) | code id (16 random bytes)
              | audience (1-byte length + UTF-8: a cabinet id, a group, or "*")
              | subject (1-byte length + UTF-8: the account to charge, or the technician)
    signature = Ed25519 over b"cabinet-access-code" + payload (64 bytes)

The backend holds the private keys; a cabinet holds only public keys by key id (so a stolen cabinet
cannot mint codes), each allowed to sign some roles (a technician key can be kept apart). `verify`
checks, in this order and without the network: form, key id, signature, role for that key, audience,
time (bounded clock skew and lifetime, and what is knowable before the clock is trusted). Single use
(the code id) is the store's job, in the same transaction as the session journal.
Every refusal is a CodeRefused with a short reason (for the screen and the record) and a detail.
"""

from __future__ import annotations

import base64
import binascii
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (Ed25519PrivateKey,
                                                               Ed25519PublicKey)

PREFIX = "C1"
VERSION = 1
CONTEXT = b"cabinet-access-code"
ROLES = ("shopper", "technician")
_FIXED = struct.Struct(">BHBII16s")  # version, key id, role, issued, expires, code id
SIGNATURE_BYTES = 64
MAX_TOKEN_CHARS = 400


class CodeRefused(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True)
class AccessCode:
    key_id: int
    role: str
    issued_at: int
    expires_at: int
    code_id: str  # 32 hex digits
    audience: str
    subject: str


@dataclass(frozen=True)
class PublicKey:
    key_id: int
    key: Ed25519PublicKey
    roles: tuple[str, ...] = ROLES


def _text(value: str, what: str) -> bytes:
    raw = value.encode("utf-8")
    if not 1 <= len(raw) <= 64:
        raise ValueError(f"{what} must be 1-64 bytes of UTF-8")
    return bytes([len(raw)]) + raw


def mint(private_key: Ed25519PrivateKey, *, key_id: int, audience: str, subject: str, role: str,
         issued_at: int, lifetime_seconds: int, code_id: bytes | None = None) -> str:
    """Sign a code (the backend's job; the cabinet's tools use it for tests and technicians)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}")
    if not 0 <= key_id <= 0xFFFF or lifetime_seconds <= 0:
        raise ValueError("key id 0-65535 and a positive lifetime")
    code_id = code_id if code_id is not None else os.urandom(16)
    payload = (_FIXED.pack(VERSION, key_id, ROLES.index(role), issued_at,
                           issued_at + lifetime_seconds, code_id)
               + _text(audience, "audience") + _text(subject, "subject"))
    signature = private_key.sign(CONTEXT + payload)
    return PREFIX + base64.urlsafe_b64encode(payload + signature).rstrip(b"=").decode("ascii")


def parse(token: str) -> tuple[AccessCode, bytes, bytes]:
    """Token text to (code, signed payload, signature); CodeRefused("malformed") otherwise."""
    def bad(detail: str):
        raise CodeRefused("malformed", detail)

    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS:
        bad("not a code of this cabinet system (too long)")
    if not token.startswith(PREFIX):
        bad("not a code of this cabinet system")
    body = token[len(PREFIX):]
    if not body or any(c not in _B64URL for c in body):
        bad("not base64url")
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError):
        bad("not base64url")
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != body:
        bad("not canonical base64url")  # no second spelling of the same code
    if len(raw) < _FIXED.size + 2 + SIGNATURE_BYTES:
        bad(f"too short ({len(raw)} bytes)")
    payload, signature = raw[:-SIGNATURE_BYTES], raw[-SIGNATURE_BYTES:]
    version, key_id, role, issued, expires, code_id = _FIXED.unpack_from(payload)
    if version != VERSION:
        bad(f"version {version} is not understood")
    if role >= len(ROLES):
        bad(f"role {role} is unknown")
    at = _FIXED.size
    texts = []
    for what in ("audience", "subject"):
        if at >= len(payload):
            bad(f"{what} missing")
        size = payload[at]
        value = payload[at + 1:at + 1 + size]
        if size == 0 or len(value) != size:
            bad(f"{what} truncated")
        try:
            texts.append(value.decode("utf-8"))
        except UnicodeDecodeError:
            bad(f"{what} is not UTF-8")
        at += 1 + size
    if at != len(payload):
        bad("trailing bytes")
    return (AccessCode(key_id, ROLES[role], issued, expires, code_id.hex(), texts[0], texts[1]),
            payload, signature)


_B64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


@dataclass(frozen=True)
class Policy:
    cabinet_id: str
    groups: tuple[str, ...] = ()
    clock_skew_seconds: int = 60
    max_lifetime_seconds: int = 86400


def verify(token: str, keys: dict[int, PublicKey], policy: Policy, *, now: float,
           clock_trusted: bool, last_trusted: float | None) -> AccessCode:
    """Check everything that can be checked offline; raise CodeRefused(reason, detail).

    Before the clock is trusted (a Pi without a real-time clock after a power cut restarts from
    the time it last saved), `now` is only a lower bound of the real time: a code that expired
    before it is refused as usual, and only codes issued after the last time the clock was known
    good are accepted, since nothing older can be proven fresh."""
    code, payload, signature = parse(token)
    key = keys.get(code.key_id)
    if key is None:
        raise CodeRefused("unknown_key", f"key id {code.key_id} is not known to this cabinet")
    try:
        key.key.verify(signature, CONTEXT + payload)
    except InvalidSignature:
        raise CodeRefused("bad_signature", "the signature does not match") from None
    if code.role not in key.roles:
        raise CodeRefused("wrong_role", f"key {code.key_id} may not sign {code.role} codes")
    if code.audience not in ("*", policy.cabinet_id, *policy.groups):
        raise CodeRefused("wrong_cabinet", f"code is for {code.audience!r}")
    if code.expires_at - code.issued_at > policy.max_lifetime_seconds:
        raise CodeRefused("lifetime", f"valid for {code.expires_at - code.issued_at} s, more "
                          f"than the {policy.max_lifetime_seconds} s allowed")
    skew = policy.clock_skew_seconds
    if now > code.expires_at + skew:
        raise CodeRefused("expired", f"expired {int(now - code.expires_at)} s ago")
    if clock_trusted:
        if now < code.issued_at - skew:
            raise CodeRefused("not_yet_valid", f"issued {int(code.issued_at - now)} s in the future")
    elif last_trusted is None or code.issued_at < last_trusted - skew:
        raise CodeRefused("clock_untrusted", "the cabinet's clock is not synchronised yet and "
                          "this code is older than the last time it was")
    return code


def load_public_keys(entries: list[dict]) -> dict[int, PublicKey]:
    """[{"id": 1, "public_key": "<base64 of 32 bytes>", "roles": [...]}] to keys by id."""
    keys = {}
    for i, entry in enumerate(entries):
        try:
            raw = base64.b64decode(entry["public_key"], validate=True)
            key = Ed25519PublicKey.from_public_bytes(raw)
            roles = tuple(entry.get("roles", ROLES))
            key_id = int(entry["id"])
        except (KeyError, ValueError, TypeError, binascii.Error) as exc:
            raise ValueError(f"key[{i}]: {exc}") from None
        if not set(roles) <= set(ROLES) or not 0 <= key_id <= 0xFFFF or key_id in keys:
            raise ValueError(f"key[{i}]: id must be unique 0-65535, roles from {ROLES}")
        keys[key_id] = PublicKey(key_id, key, roles)
    return keys


def ensure_key_pair(folder: str | Path, key_id: int = 0) -> tuple[Path, PublicKey]:
    """A signing key kept in `folder` (created with mode 0600 the first time): the simulation's
    stand-in for the backend's key, and what `cabinet token mint` uses in tests."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "access-signing-key"
    if not path.exists():
        raw = Ed25519PrivateKey.generate().private_bytes_raw()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(base64.b64encode(raw).decode() + "\n")
    private = read_private_key(path)
    return path, PublicKey(key_id, private.public_key())


def read_private_key(path: str | Path) -> Ed25519PrivateKey:
    path = Path(path)
    if path.stat().st_mode & 0o077:
        raise ValueError(f"{path}: a signing key must be mode 0600")
    raw = base64.b64decode(path.read_text().strip(), validate=True)
    return Ed25519PrivateKey.from_private_bytes(raw)


def public_key_text(key: PublicKey) -> str:
    from cryptography.hazmat.primitives import serialization
    raw = key.key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()
