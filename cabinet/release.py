"""Signed software releases: what a release bundle holds, and the check a cabinet makes before it
trusts a byte of one (issue 20; docs/updates.md says what installs a verified one).

A bundle is a tar archive:

    release.json   {"format": 1, "version": "0.2.0", "min_config_version": 1,
                    "targets": ["cp311-aarch64", ...], "files": {"wheels/x.whl": "<sha256>", ...}}
    release.sig    the Ed25519 signature of b"cabinet-release\\n" + release.json's bytes, base64
    wheels/*.whl   the daemon's wheel and its dependencies' for each target

The release key is its own (never the access-code key): an operator who can issue access codes
cannot ship software. `verify` reads only release.json and release.sig before the signature is
checked; then every file is unpacked (regular files under wheels/ only) and hashed against the
signed manifest. Anything else refuses the bundle, before anything is installed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import shutil
import tarfile
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (Ed25519PrivateKey,
                                                               Ed25519PublicKey)

FORMAT = 1
CONTEXT = b"cabinet-release\n"   # a signature over anything else is not a release's
MAX_BUNDLE_BYTES = 512 * 1024 * 1024
WHEEL = re.compile(r"wheels/[A-Za-z0-9_.+-]{1,200}\.whl")


class ReleaseRefused(ValueError):
    """A bundle that must not be installed; the message says why."""


def public_key(text: str) -> Ed25519PublicKey:
    """A release public key as the config holds it: 32 raw bytes, base64."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"not an Ed25519 public key (32 bytes, base64): {exc}") from None


def sign(manifest: bytes, key: Ed25519PrivateKey) -> bytes:
    return base64.b64encode(key.sign(CONTEXT + manifest)) + b"\n"


def verify(bundle: Path, key: Ed25519PublicKey, into: Path,
           max_bytes: int = MAX_BUNDLE_BYTES) -> dict[str, Any]:
    """Check `bundle` and unpack its wheels into `into` (which must not exist); return the signed
    manifest, or raise ReleaseRefused (nothing is left in `into` then)."""
    if bundle.stat().st_size > max_bytes:
        raise ReleaseRefused(f"{bundle.name}: {bundle.stat().st_size} bytes, over "
                             f"{max_bytes >> 20} MiB")
    into.mkdir(parents=True)
    try:
        return _verify(bundle, key, into, max_bytes)
    except BaseException:
        shutil.rmtree(into, ignore_errors=True)
        raise


def _verify(bundle: Path, key: Ed25519PublicKey, into: Path, max_bytes: int) -> dict[str, Any]:
    try:
        tar = tarfile.open(bundle, "r:")
    except (tarfile.TarError, OSError) as exc:
        raise ReleaseRefused(f"{bundle.name}: not a release bundle ({exc})") from None
    with tar:
        members = {m.name.removeprefix("./"): m for m in tar.getmembers()}
        manifest_bytes = _small(tar, members, "release.json")
        signature = _small(tar, members, "release.sig")
        try:
            key.verify(base64.b64decode(signature.strip(), validate=True),
                       CONTEXT + manifest_bytes)
        except (InvalidSignature, binascii.Error, ValueError):
            raise ReleaseRefused("the signature does not verify with this cabinet's release key "
                                 "(signed by another key, or the manifest was changed)") from None
        manifest = json.loads(manifest_bytes)
        if manifest.get("format") != FORMAT or not isinstance(manifest.get("files"), dict):
            raise ReleaseRefused(f"release format {manifest.get('format')!r}: this cabinet "
                                 f"reads {FORMAT}")
        files: dict[str, str] = manifest["files"]
        extra = set(members) - set(files) - {"release.json", "release.sig", "wheels"}
        if extra:
            raise ReleaseRefused(f"files the manifest does not list: {', '.join(sorted(extra))[:200]}")
        total = 0
        for name, sha in sorted(files.items()):
            member = members.get(name)
            if not WHEEL.fullmatch(name) or member is None or not member.isfile():
                raise ReleaseRefused(f"{name[:100]}: missing, or not a wheel file under wheels/")
            total += member.size
            if total > max_bytes:
                raise ReleaseRefused(f"over {max_bytes >> 20} MiB unpacked")
            target = into / name
            target.parent.mkdir(parents=True, exist_ok=True)
            digest = hashlib.sha256()
            with tar.extractfile(member) as source, open(target, "wb") as out:
                while chunk := source.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
            if digest.hexdigest() != sha:
                raise ReleaseRefused(f"{name}: sha256 differs from the signed manifest")
    return manifest


def _small(tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], name: str) -> bytes:
    member = members.get(name)
    if member is None or not member.isfile() or member.size > 1 << 20:
        raise ReleaseRefused(f"{name}: missing (not a release bundle)")
    with tar.extractfile(member) as f:
        return f.read()
