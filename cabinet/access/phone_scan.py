"""Phone-scan-to-open: the idle screen's QR code and the one-time nonce that a remote unlock must carry.

The screen shows `{base_url}/{cabinet id}?n={nonce}`. A shopper scans it with a phone; the backend
(which knows the account) sends a remote_unlock command naming that nonce. The cabinet accepts a
nonce only while it is current (or the one just before, for a scan made as it rotated) and only
once: a nonce that opened the cabinet is replaced at once. Nonces are 128 random bits, rotate every
`rotate_seconds` on the injected clock, and are never persisted (a restart shows a new one, and
every older one is dead).
"""

from __future__ import annotations

import secrets
from typing import Callable


class NonceRefused(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


class PhoneScan:
    def __init__(self, cabinet_id: str, base_url: str, *, clock: Callable[[], float],
                 rotate_seconds: float = 60.0, grace_seconds: float = 10.0,
                 new_nonce: Callable[[], str] = lambda: secrets.token_urlsafe(16)):
        self.cabinet_id = cabinet_id
        self.base_url = base_url.rstrip("/")
        self.clock = clock
        self.rotate_seconds = rotate_seconds
        self.grace_seconds = grace_seconds
        self._new = new_nonce
        self._current = self._new()
        self._since = clock()
        self._previous: tuple[str, float] | None = None  # (nonce, retired at)

    def _rotate(self) -> None:
        self._previous = (self._current, self.clock())
        self._current = self._new()
        self._since = self.clock()

    def current(self) -> str:
        if self.clock() - self._since >= self.rotate_seconds:
            self._rotate()
        return self._current

    @property
    def url(self) -> str:
        return f"{self.base_url}/{self.cabinet_id}?n={self.current()}"

    def expires_in(self) -> float:
        return max(0.0, self.rotate_seconds - (self.clock() - self._since))

    def check(self, nonce: str) -> str:
        """Which live nonce this is ("current" or "previous"), or raise NonceRefused."""
        current = self.current()
        if not isinstance(nonce, str) or not nonce or len(nonce) > 64:
            raise NonceRefused("malformed", "the command names no usable nonce")
        if secrets.compare_digest(nonce, current):
            return "current"
        previous = self._previous
        if (previous is not None and secrets.compare_digest(nonce, previous[0])
                and self.clock() - previous[1] <= self.grace_seconds):
            return "previous"
        raise NonceRefused("stale_nonce", "this screen code is old or already used; scan the "
                           "code on the screen again")

    def burn(self, which: str) -> None:
        """The nonce opened the cabinet: it (and, if it was current, the screen's code) is dead."""
        if which == "current":
            self._rotate()
        self._previous = None
