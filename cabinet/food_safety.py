"""Food safety: the cold chain of perishable products, after FDA Food Code 4-204.111 and NAMA's
"health control" practice, as plain values on an injected clock.

The air may be above the limit (5 °C) for at most 30 min after a door close, a restock or power
returning, and for at most 15 min otherwise: an excursion that outlasts its allowance locks out the
perishable products. The lockout is latched: it survives restarts and power cuts (the caller
persists `state()` and passes it back) and is cleared only by a technician. The excursion's maximum
temperature and its time above the limit are recorded.

After a power cut the downtime itself is unknown (a Pi 4 has no real-time clock): time above the
limit counted before the cut carries over, and the 30-minute allowance runs from power returning.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

RECOVERY_SECONDS = 30 * 60
EXCURSION_SECONDS = 15 * 60


@dataclass(frozen=True)
class Lockout:
    reason: str
    max_celsius: float
    above_seconds: float


class ColdChain:
    def __init__(self, limit_celsius: float = 5.0, *, now: float,
                 recovery_seconds: float = RECOVERY_SECONDS,
                 excursion_seconds: float = EXCURSION_SECONDS,
                 saved: dict[str, Any] | None = None):
        self.limit = limit_celsius
        self.recovery = recovery_seconds
        self.excursion = excursion_seconds
        self.lockout: Lockout | None = None
        self.above_since: float | None = None
        self.max_celsius: float | None = None
        self._grace_at = now  # the process starting is power returning
        if saved:
            if saved.get("lockout"):
                self.lockout = Lockout(**saved["lockout"])
            if saved.get("above_seconds") is not None:
                self.above_since = now - saved["above_seconds"]
                self.max_celsius = saved.get("max_celsius")

    def grace(self, now: float) -> None:
        """A door closed, a restock ended, or power returned: 30 minutes to get back below."""
        self._grace_at = now

    def reading(self, now: float, celsius: float) -> Lockout | None:
        """Feed one valid reading; return a Lockout when this reading starts one."""
        if celsius <= self.limit:
            self.above_since = None
            self.max_celsius = None
            return None
        if self.above_since is None:
            self.above_since = now
            self.max_celsius = celsius
        self.max_celsius = max(self.max_celsius, celsius)
        deadline = max(self.above_since + self.excursion, self._grace_at + self.recovery)
        if now > deadline and self.lockout is None:
            above = now - self.above_since
            why = ("not back to {:g} °C within {:g} min of a door close, restock or power return"
                   if self._grace_at + self.recovery >= self.above_since + self.excursion else
                   "above {:g} °C for more than {:g} min")
            minutes = (self.recovery if "within" in why else self.excursion) / 60
            self.lockout = Lockout(why.format(self.limit, minutes), round(self.max_celsius, 2),
                                   round(above, 1))
            return self.lockout
        return None

    def clear(self) -> Lockout | None:
        """A technician has checked the food: sell perishables again."""
        cleared, self.lockout = self.lockout, None
        return cleared

    def state(self, now: float) -> dict[str, Any]:
        """What must survive a power cut."""
        return {"lockout": None if self.lockout is None else self.lockout.__dict__,
                "above_seconds": None if self.above_since is None
                else round(now - self.above_since, 1),
                "max_celsius": self.max_celsius}
