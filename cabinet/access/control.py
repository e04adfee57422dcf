"""Access codes on the controller thread: a presented code becomes an authorisation, or a refusal.

A code read from the serial scanner (or, with the QR issue, from the camera) is verified offline
(codes.verify), checked against the codes already used (the store), and handed to checkout as an
Authorisation whose code id the store marks used in the same transaction as the session journal.
The same text read again within `repeat_window_seconds` is the same presentation and is ignored,
so a scanner that reads a phone twice does not show "already used".

The clock is trusted when systemd-timesyncd says it is synchronised (or always, by config); while
it is trusted the time is saved once a minute, and after a power cut, until it is trusted again,
only codes issued after that saved time are accepted.
"""

from __future__ import annotations

import logging
import time
import tomllib
from pathlib import Path
from typing import Callable

from ..checkout import Authorisation, Refused
from ..ports import Ports
from .codes import CodeRefused, Policy, PublicKey, load_public_keys, verify

log = logging.getLogger(__name__)
LAST_TRUSTED_KEY = "last_trusted_time"
TIMESYNC_FLAG = Path("/run/systemd/timesync/synchronized")


def load_keys_file(path: str | Path) -> dict[int, PublicKey]:
    """The backend's public keys; a missing file means no codes are accepted (said in the log)."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        return load_public_keys(data.get("key", []))
    except (tomllib.TOMLDecodeError, ValueError, OSError) as exc:
        raise ValueError(f"{path}: {exc}") from None


class AccessControl:
    def __init__(self, ports: Ports, keys: dict[int, PublicKey], *,
                 authorise: Callable[[Authorisation], str],
                 refused: Callable[[str, str, str], None],
                 wall_clock: Callable[[], float] = time.time,
                 clock_synchronised: Callable[[], bool] | None = None):
        self.p = ports
        self._authorise, self._refused = authorise, refused
        a = ports.config.access
        self.keys = keys
        self.policy = Policy(ports.config.cabinet.id, (a.group,) if a.group else (),
                             a.clock_skew_seconds, a.max_code_lifetime_seconds)
        self.wall = wall_clock
        self.synchronised = clock_synchronised or (
            (lambda: True) if a.clock_trust == "always" else TIMESYNC_FLAG.exists)
        self.last_trusted = ports.store.get_value(LAST_TRUSTED_KEY)
        self._recent: dict[str, float] = {}
        if not keys:
            log.warning("no access-code keys loaded (%s): codes cannot open the door",
                        a.keys_file)
        ports.timers.call_later(0, "clock trust", self._note_clock)

    def _note_clock(self) -> None:
        self.p.timers.call_later(60, "clock trust", self._note_clock)
        if self.synchronised():
            self.last_trusted = int(self.wall())
            self.p.store.set_value(LAST_TRUSTED_KEY, self.last_trusted)
            self.p.store.forget_codes_expired_before(self.last_trusted - 3600)

    REPEAT = "repeat"

    def present(self, text: str, method: str) -> str | None:
        """A code was shown; return the session id it opened, REPEAT for the same presentation
        seen again, or None (the refusal is recorded)."""
        now = self.p.clock()
        window = self.p.config.access.repeat_window_seconds
        self._recent = {t: at for t, at in self._recent.items() if now - at < window}
        if text in self._recent:
            return self.REPEAT
        self._recent[text] = now
        try:
            code = verify(text, self.keys, self.policy, now=self.wall(),
                          clock_trusted=self.synchronised(), last_trusted=self.last_trusted)
            if self.p.store.code_used(code.code_id):
                raise CodeRefused("already_used", "this code has already opened the cabinet")
        except CodeRefused as refusal:
            self._refused(refusal.reason, str(refusal), method)
            return None
        auth = Authorisation(method=method, subject=code.subject, role=code.role,
                             code_id=code.code_id, restock=code.role == "technician",
                             code_expires_at=code.expires_at)
        try:
            return self._authorise(auth)
        except Refused:
            return None  # recorded by authorise(); the code stays unused and can be shown again

