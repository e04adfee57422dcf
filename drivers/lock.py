"""The door lock: a relay that opens the lock only while energised (fail-secure).

De-energised = locked. Construction, close() and any crash of the process leave the relay
de-energised, so the cabinet is locked at start-up and whenever the daemon is not in control.
"""

from __future__ import annotations

from .relay import Relay


class LockRelay(Relay):
    def __init__(self, pin: int, *, active_high: bool, pin_factory):
        super().__init__("lock", pin, active_high=active_high, pin_factory=pin_factory)

    @property
    def locked(self) -> bool:
        return not self.energised

    def unlock(self) -> None:
        self.energise()

    def lock(self) -> None:
        self.release()
