"""A cabinet's doors as the controller sees them: several lock relays driven as one lock, and the
doors' switches read as one door.

The checkout machine knows one door and one lock (checkout.py): a session opens when the door
opens and is weighed when it is shut. A cabinet with several doors keeps that machine unchanged:
`LockGroup` is its lock (locked only when every relay is; `unlock()` releases the doors chosen for
the session), and `DoorStates` says when the cabinet is open (any door open) and when it is shut
(every door shut), so a session ends when the last opened door closes and every shelf is weighed.

Why every allowed door is released together rather than the one a shopper picks on the screen: the
sale is weighed on every shelf anyway, choosing costs the shopper a step at a screen that may be
in a language they read slowly, and a shopper who shut the chilled door and remembers the milk can
open it again while the session lasts. A door is held shut only for a reason of the cabinet's
own: its zone's food-safety lockout with perishables behind it (the controller chooses).

One-door cabinets keep their alarm names (`forced_open`); with several doors each door's alarm
carries it (`forced_open:door2`), so two doors forced at once are two alarms.
"""

from __future__ import annotations

from typing import Any, Iterable


class LockGroup:
    """The doors' lock relays as one lock. `relays`: door id -> a relay with lock(), unlock() and
    `locked` (drivers.lock.LockRelay)."""

    def __init__(self, relays: dict[int, Any]):
        self.relays = dict(relays)
        self.chosen: frozenset[int] = frozenset(self.relays)

    @property
    def locked(self) -> bool:
        return all(relay.locked for relay in self.relays.values())

    def door_locked(self, door: int) -> bool:
        return self.relays[door].locked

    def choose(self, doors: Iterable[int] | None) -> None:
        """The doors the next unlock() releases (None: all of them)."""
        self.chosen = frozenset(self.relays if doors is None else doors)

    def unlock(self) -> None:
        for door, relay in self.relays.items():
            if door in self.chosen:
                relay.unlock()

    def lock(self) -> None:
        for relay in self.relays.values():
            relay.lock()

    def close(self) -> None:
        for relay in self.relays.values():
            relay.close()


def as_lock_group(lock: Any, door: int = 1) -> LockGroup:
    """A one-door cabinet's relay as a group (a group is returned as it is)."""
    return lock if isinstance(lock, LockGroup) else LockGroup({door: lock})


class DoorStates:
    """Each door's switch (True open, False shut, None not read yet) and the cabinet's door as
    the checkout sees it: unknown until every door has been read, open while any is."""

    def __init__(self, doors: Iterable[int]):
        self.states: dict[int, bool | None] = {door: None for door in doors}

    @property
    def cabinet(self) -> bool | None:
        if any(self.states.values()):
            return True
        if any(state is None for state in self.states.values()):
            return None
        return False

    @property
    def all_read(self) -> bool:
        return None not in self.states.values()

    def open_doors(self) -> list[int]:
        return [door for door, state in sorted(self.states.items()) if state]


def alarm_kind(kind: str, door: int, several: bool) -> str:
    """`forced_open` on a one-door cabinet, `forced_open:door2` where there are several."""
    return f"{kind}:door{door}" if several else kind


def base_kind(kind: str) -> str:
    """The alarm's kind without the door or zone it names."""
    return kind.split(":door")[0].split(":zone")[0]
