"""Enrolled members' embeddings at rest: sealed with AES-GCM under a key kept outside the database.

The key is 32 random bytes, hex in `face.key_file` (default /etc/cabinet/face.key, mode 0600,
made at the first enrolment), so a copy of cabinet.db alone (a diagnostics upload, a backup, an
SD card read elsewhere without /etc) holds no usable face data. Each member is one row: the
member id in clear (it is the account the backend charges, already in every sale record), and
the member's embeddings sealed together, with the member id as associated data so a row cannot be
moved to another member. No images are stored, ever: only embeddings arrive here.

Deletion is for good: the store's connection runs with secure_delete (deleted rows are zeroed in
the page, free pages are zeroed), and after the delete the WAL is checkpointed and truncated, so
no old copy of the row is left in cabinet.db or cabinet.db-wal (tests/test_face.py reads both).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .face import DIMENSIONS

NONCE_BYTES = 12


class VaultError(Exception):
    """The key is missing, unreadable, too open, or does not open the stored rows."""


def load_key(path: Path, *, create: bool) -> bytes | None:
    """The sealing key; with `create`, made (0600) when missing. None when missing otherwise."""
    try:
        st = path.stat()
    except FileNotFoundError:
        if not create:
            return None
        key = secrets.token_bytes(32)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            raise VaultError(f"{path}: cannot create the face key: {exc}") from None
        with os.fdopen(fd, "w") as f:
            f.write(key.hex() + "\n")
            f.flush()
            os.fsync(f.fileno())
        return key
    if st.st_mode & 0o077:
        raise VaultError(f"{path}: the face key has mode {st.st_mode & 0o777:04o}; it must be "
                         f"0600 (run: chmod 600 {path})")
    try:
        key = bytes.fromhex(path.read_text(encoding="ascii").strip())
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise VaultError(f"{path}: not a face key (64 hex digits): {exc}") from None
    if len(key) != 32:
        raise VaultError(f"{path}: not a face key (64 hex digits)")
    return key


class FaceVault:
    """Runs on the controller thread, through the store's connection."""

    def __init__(self, store, key_path: str | Path):
        self.store = store
        self.key_path = Path(key_path)

    def _cipher(self, *, create: bool) -> AESGCM | None:
        key = load_key(self.key_path, create=create)
        return None if key is None else AESGCM(key)

    def save(self, members: dict[str, list[np.ndarray]]) -> None:
        """Store (or replace) members' checked embeddings (face.parse_member), in one
        transaction. The old version of a replaced row stays in the WAL until the caller
        checkpoints (FaceAccess does, after every change)."""
        from ..store import utc_now

        cipher = self._cipher(create=True)
        rows = []
        for member_id, embeddings in members.items():
            plain = np.vstack([np.asarray(e, dtype="<f4").reshape(DIMENSIONS)
                               for e in embeddings]).tobytes()
            nonce = secrets.token_bytes(NONCE_BYTES)
            rows.append((member_id, nonce + cipher.encrypt(nonce, plain, member_id.encode()),
                         len(embeddings), utc_now()))
        with self.store.transaction() as db:
            db.executemany("INSERT INTO face_members (member_id, sealed, embeddings, enrolled_at) "
                           "VALUES (?, ?, ?, ?) ON CONFLICT (member_id) DO UPDATE SET "
                           "sealed = excluded.sealed, embeddings = excluded.embeddings, "
                           "enrolled_at = excluded.enrolled_at", rows)

    def delete(self, member_ids: list[str]) -> list[str]:
        """Delete members (zeroed in the file by secure_delete; the caller checkpoints); returns
        those that were enrolled."""
        deleted = []
        with self.store.transaction() as db:
            for member_id in member_ids:
                if db.execute("DELETE FROM face_members WHERE member_id = ?",
                              (member_id,)).rowcount:
                    deleted.append(member_id)
        return deleted

    def members(self) -> tuple[dict[str, list[np.ndarray]], str | None]:
        """Every member's embeddings that the key opens, and what is wrong with the rest (None
        when nothing is). Rows sealed under a lost key stay unreadable, but members enrolled
        again since (under the new key) still work. VaultError for a key file that is unusable."""
        with self.store.transaction() as db:
            rows = db.execute("SELECT member_id, sealed FROM face_members").fetchall()
        if not rows:
            return {}, None
        cipher = self._cipher(create=False)
        if cipher is None:
            return {}, (f"{self.key_path}: the face key is missing, so the {len(rows)} enrolled "
                        "members cannot be read; re-enrol them or restore the key")
        out, unreadable = {}, 0
        for member_id, sealed in rows:
            try:
                plain = cipher.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:],
                                       member_id.encode())
            except InvalidTag:
                unreadable += 1
                continue
            out[member_id] = list(np.frombuffer(plain, dtype="<f4").reshape(-1, DIMENSIONS))
        if unreadable:
            return out, (f"{self.key_path}: this key does not open {unreadable} of the "
                         f"{len(rows)} enrolled members' data (sealed under a key since lost or "
                         "replaced?); re-enrol them or restore the key")
        return out, None

    def summary(self) -> list[dict]:
        """Who is enrolled, for technicians: ids, counts and dates, never the embeddings."""
        with self.store.transaction() as db:
            return [{"member_id": m, "embeddings": n, "enrolled_at": at} for m, n, at in db.execute(
                "SELECT member_id, embeddings, enrolled_at FROM face_members ORDER BY member_id")]
