"""The published state (`GET /api/state`, the screen, `cabinet status`) as typed structures, and
the functions that render the controller's parts into them.

The controller builds one `State` after each batch of events and publishes it by one reference swap;
readers on other threads take the reference and never see the controller's own fields. These
TypedDicts are the statement of its shape: docs/http-api.md is checked against `State` by a test.
Parts owned by a helper (`climate`, `sync`, `face`) are that helper's `snapshot()`.
"""

from __future__ import annotations

from typing import Any, TypedDict

from .planogram import Planogram
from .weighing import StabilityFilter


class ShelfView(TypedDict):
    shelf: int
    grams: float | None              # the latest reading
    stable: bool
    stable_grams: float | None
    health: str                      # "ok" | "waiting" | "fault"
    fault: str | None


class AlarmView(TypedDict):
    kind: str
    detail: str
    raised_at: str


class SessionView(TypedDict):
    session_id: str
    state: str                       # authorised | open | settling | recording
    prompt: str | None
    role: str                        # shopper | technician | unauthorised (a forced opening)
    method: str
    restock: bool
    recovered: bool


class ProductView(TypedDict):
    sku: str
    shelf: int
    stock: int
    price_fen: int
    name_zh: str
    name_bo: str
    name_en: str
    perishable: bool
    available: bool                  # in stock, and not a perishable under the lockout


class DoorView(TypedDict):
    door: int
    name: str
    state: str                       # open | closed | unknown
    lock: str                        # locked | unlocked
    lock_sensed: str | None          # the lock's feedback contact, where it has one
    shelves: list[int]               # behind this door


class ZoneView(TypedDict):
    zone: int
    name: str
    doors: list[int]                 # whose shelves this zone holds
    food_safety_rule: str            # perishables | none
    temperature: dict[str, Any] | None
    relays: dict[str, bool | None]   # compressor, heater (None: the zone has none)
    climate: dict[str, Any]          # as `climate` (setpoint, mode, food_safety) for this zone


class State(TypedDict):
    cabinet_id: str
    software_version: str
    time: str
    uptime_seconds: float
    door: str                        # open | closed | unknown
    lock: str                        # locked | unlocked
    lock_sensed: str | None
    relays: dict[str, bool]
    temperature: dict[str, Any] | None
    shelves: list[ShelfView]
    alarms: list[AlarmView]
    faults: dict[str, dict[str, str]]
    session: SessionView | None
    receipt: dict[str, Any] | None
    last_refusal: dict[str, Any] | None
    products: list[ProductView]
    climate: dict[str, Any]
    screen_qr: dict[str, Any] | None
    last_scan: dict[str, Any] | None
    outbox: dict[str, int]
    sync: dict[str, Any]
    face: dict[str, Any]
    screen_config: dict[str, Any]
    screen: dict[str, Any]           # which screen, from ui/screens.py
    doors: list[DoorView]            # every door (one on a simple cabinet)
    zones: list[ZoneView]            # every temperature zone (one on a simple cabinet)


def doors_view(doors: dict[int, Any], states: Any, lock: Any,
               sensed: dict[int, bool | None]) -> list[DoorView]:
    """`doors`: the config's door entries by id; `states`: doors.DoorStates; `lock`: the
    LockGroup."""
    shown = {None: "unknown", True: "open", False: "closed"}
    return [DoorView(door=n, name=d.label, state=shown[states.states[n]],
                     lock="locked" if lock.door_locked(n) else "unlocked",
                     lock_sensed=(None if sensed[n] is None
                                  else "locked" if sensed[n] else "unlocked"),
                     shelves=list(d.shelves))
            for n, d in doors.items()]


def shelves_view(filters: dict[int, StabilityFilter],
                 faults: dict[str, dict[str, Any]]) -> list[ShelfView]:
    out = []
    for shelf_id, filt in sorted(filters.items()):
        fault = faults.get(f"shelf:{shelf_id}")
        latest, stable = filt.latest, filt.stable_grams
        out.append(ShelfView(shelf=shelf_id,
                             grams=None if latest is None else round(latest, 1),
                             stable=stable is not None,
                             stable_grams=None if stable is None else round(stable, 1),
                             health="fault" if fault else ("ok" if latest is not None
                                                           else "waiting"),
                             fault=fault["detail"] if fault else None))
    return out


def session_view(session: dict[str, Any] | None, state: str,
                 prompt: str | None) -> SessionView | None:
    if session is None:
        return None
    auth = session["authorisation"]
    return SessionView(session_id=session["session_id"], state=state, prompt=prompt,
                       role=auth["role"], method=auth["method"], restock=auth["restock"],
                       recovered=session["recovered"])


def alarms_view(alarms: list[dict[str, Any]]) -> list[AlarmView]:
    return [AlarmView(kind=a["kind"], detail=a["detail"], raised_at=a["raised_at"])
            for a in alarms]


class ProductsView:
    """The products as the screen lists them, rebuilt only when the planogram (its stock, its
    prices) or the lockout changes: most publishes are a shelf reading, which changes neither."""

    def __init__(self):
        self._cached: tuple[Planogram | None, tuple, list[ProductView]] | None = None

    def __call__(self, planogram: Planogram | None, locked_out: frozenset[int],
                 held: frozenset[int] = frozenset()) -> list[ProductView]:
        """`locked_out`: the shelves whose perishables a food-safety lockout holds; `held`: the
        shelves behind a door a shopper's session leaves locked (nothing there can be bought)."""
        if planogram is None:
            return []
        if self._cached is not None and self._cached[0] is planogram \
                and self._cached[1] == (locked_out, held):
            return self._cached[2]
        out = []
        for shelf, stock in sorted(planogram.shelves.items()):
            for sku, count in stock.items():
                p = planogram.products[sku]
                out.append(ProductView(sku=sku, shelf=shelf, stock=count, price_fen=p.price_fen,
                                       name_zh=p.name_zh, name_bo=p.name_bo, name_en=p.name_en,
                                       perishable=p.perishable,
                                       available=count > 0 and shelf not in held
                                       and not (p.perishable and shelf in locked_out)))
        self._cached = (planogram, (locked_out, held), out)
        return out

    def forget(self) -> None:
        self._cached = None
