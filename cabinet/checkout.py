"""Grab-and-go checkout: the session state machine, and what a session's weights mean as a sale.

    idle -> authorised (lock open, waiting for the door; relock after unlock_timeout)
         -> open (door open; warning, then held-open alarm)
         -> settling (door closed, lock engaged at once; until every shelf is stable, at most
            settle_timeout)
         -> idle, with exactly one outcome: a sale (shopper), an inventory record (technician),
            or "no sale" (the door never opened);
         (-> recording, while the outcome cannot be written (a full disk): retried until it is)

Plain values in, decisions out: the controller feeds events and stable weights, and this module
acts only through the `Effects` it is given (lock, buzzer, timers, journal, records) on the
controller's thread. The session is journaled before the lock opens, and every later step is
journaled, so that after a crash `resume()` can finish the session from the shelves' weights.
"""

from __future__ import annotations

import logging
import math
import re
import uuid
from dataclasses import asdict, dataclass
from typing import Any, Callable, Protocol

from .planogram import Planogram
from .weighing import Explanation, Item, ShelfVerdict, explain

RESTOCK_MAX_PER_PRODUCT = 500
RECORD_RETRY_SECONDS = 5.0
SETTLE_SEARCH_SECONDS = 2.0  # all of a settlement's weighing searches together
UNAUTHORISED = "unauthorised"  # the role of a forced opening's session: nobody's

log = logging.getLogger(__name__)


class Refused(Exception):
    """An authorisation that cannot open the door now; the message is shown to the person."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True)
class Authorisation:
    method: str            # "qr", "phone", "face", or "simulation" (only under --simulate)
    subject: str           # the account to charge, or the technician
    role: str              # "shopper" or "technician"
    code_id: str           # the code's nonce / id, for audit and single use
    restock: bool = False  # technician sessions: restock (True) or service (False)
    # What the technician was sent to put in, {shelf: {sku: count}}: a mixed shelf's additions
    # are often ambiguous by weight alone (10 x 572 g = 5 x 572 g + 11 x 262 g), so the plan is
    # checked against the weights instead of being searched for.
    restock_plan: dict[str, dict[str, int]] | None = None
    code_expires_at: int | None = None  # for access codes: remembered as used until then

    def __post_init__(self):
        if self.role not in ("shopper", "technician"):
            raise ValueError(f"role must be shopper or technician, not {self.role!r}")
        if self.restock and self.role != "technician":
            raise ValueError("only a technician can restock")
        if not self.subject:
            raise ValueError("an authorisation names its subject")
        if self.restock_plan is not None:
            if not self.restock:
                raise ValueError("a restock plan needs restock mode")
            for shelf, items in self.restock_plan.items():
                if not re.fullmatch(r"[0-9]{1,3}", str(shelf)) or not isinstance(items, dict) \
                        or not all(
                        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
                        and 0 < v <= 1000 for k, v in items.items()):
                    raise ValueError("restock_plan maps a shelf number to {sku: count > 0}")


@dataclass(frozen=True)
class Settings:
    unlock_timeout_seconds: float
    door_open_warning_seconds: float
    door_open_alarm_seconds: float
    settle_timeout_seconds: float
    shelf_tolerance_grams: float


class Effects(Protocol):
    def unlock(self) -> None: ...
    def lock(self) -> None: ...
    def buzzer(self, on: bool) -> None: ...
    def start_timer(self, name: str, seconds: float, fn: Callable[[], None]) -> None: ...
    def cancel_timer(self, name: str) -> None: ...
    def restart_weighing(self) -> None: ...
    def weights(self) -> dict[int, tuple[float | None, float | None]]: ...  # (latest, stable)
    def planogram(self) -> Planogram: ...
    def journal_begin(self, session: dict[str, Any]) -> None: ...
    def journal_update(self, session: dict[str, Any], state: str) -> None: ...
    def finish(self, session: dict[str, Any], outcome: str, record: dict[str, Any] | None,
               planogram: Planogram | None) -> None: ...
    def raise_alarm(self, kind: str, detail: str) -> None: ...
    def clear_alarm(self, kind: str) -> None: ...
    def now_utc(self) -> str: ...


class Checkout:
    def __init__(self, settings: Settings, effects: Effects,
                 new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
                 clock: Callable[[], float] | None = None):
        self.settings = settings
        self.fx = effects
        self._clock = clock  # bounds the weighing search in time, not only in nodes
        self._new_id = new_id
        self.state = "idle"
        self.session: dict[str, Any] | None = None
        self.prompt: str | None = None  # what the screen should tell the person now

    # --- starting -----------------------------------------------------------------------------------
    def authorise(self, auth: Authorisation, *, stable_grams: dict[int, float | None],
                  faulted: set[str], door_open: bool | None, planogram: Planogram | None) -> str:
        """Open a session and the lock; return its id, or raise Refused saying why not."""
        if self.state != "idle":
            raise Refused("busy", "a session is already in progress")
        if planogram is None:
            raise Refused("no_planogram", "no planogram loaded: nothing can be sold")
        if door_open is not False:
            raise Refused("door_open", "the door is not known to be closed")
        if "gpio" in faulted:
            raise Refused("gpio_fault", "the GPIO lines cannot be driven: the lock cannot open")
        shelf_faults = sorted(d for d in faulted if d.startswith("shelf:"))
        if shelf_faults:
            raise Refused("shelf_fault", f"{', '.join(shelf_faults)} in fault: the cabinet "
                          "cannot weigh a sale")
        unsettled = sorted(n for n, g in stable_grams.items() if g is None)
        if unsettled:
            raise Refused("shelves_unsettled", f"shelves {unsettled} are not stable yet")
        session_id = self._new_id()
        session = {"session_id": session_id, "authorisation": asdict(auth),
                   "before_grams": {str(n): round(g, 2) for n, g in stable_grams.items()},
                   "authorised_at": self.fx.now_utc(), "door_opened_at": None,
                   "door_closed_at": None, "recovered": False, "reopened": False,
                   "state": "authorised"}
        try:
            self.fx.journal_begin(dict(session))  # durable before the lock moves
        except Exception as exc:  # a full disk, a failing card: the lock has not moved
            raise Refused("storage", f"the session journal cannot be written ({exc}): no "
                                     "session can open until it can") from None
        self.session = session  # only once journaled: never a session the store has not got
        self.state = "authorised"
        self.prompt = "open_door"
        self.fx.unlock()
        self.fx.start_timer("unlock_timeout", self.settings.unlock_timeout_seconds,
                            self._unlock_timed_out)
        return session_id

    def door_forced(self, *, stable_grams: dict[int, float | None],
                    planogram: Planogram | None) -> str | None:
        """The door opened with nobody authorised (the lock forced, or a latch that did not
        catch): weigh it as a session, so that what was taken is known. It ends as an `inventory`
        record with `mode: "unauthorised"`, the lines and their value, and the stock follows.
        Returns the session id; None when there is nothing to weigh against."""
        if self.state != "idle" or planogram is None:
            return None
        before = {str(n): round(g, 2) for n, g in stable_grams.items() if g is not None}
        if not before:
            return None
        session = {"session_id": self._new_id(),
                   "authorisation": {"method": "forced", "subject": "unauthorised",
                                     "role": UNAUTHORISED, "code_id": "", "restock": False,
                                     "restock_plan": None, "code_expires_at": None},
                   "before_grams": before, "authorised_at": self.fx.now_utc(),
                   "door_opened_at": None, "door_closed_at": None, "recovered": False,
                   "reopened": False, "state": "open",
                   "unweighed": sorted(n for n, g in stable_grams.items() if g is None)}
        try:
            self.fx.journal_begin(dict(session))
        except Exception as exc:  # weighed all the same; only a crash before the close loses it
            log.error("forced opening: cannot journal it (%s); weighing it in memory", exc)
        self.session = session
        self._enter_open(first=True)
        return session["session_id"]

    def door_forced_too(self, stable_grams: dict[int, float | None]) -> None:
        """Another door forced while a forced opening is weighed: its shelves join the weighing
        (those with a stable weight from before; the rest are flagged as unweighed)."""
        session = self.session
        if session is None or session["authorisation"]["role"] != UNAUTHORISED:
            return
        for shelf, grams in stable_grams.items():
            if str(shelf) in session["before_grams"]:
                continue
            if grams is None:
                session["unweighed"] = sorted({*session.get("unweighed", ()), shelf})
            else:
                session["before_grams"][str(shelf)] = round(grams, 2)
        self._journal("open")

    def end_now(self) -> str:
        """A technician or the operator ends a session that does not end by itself: before the
        door opened, with no sale; while settling, weighed at once with what the shelves say
        (flagged `ended_by_hand`); with the door open, refused (close it: the session then
        ends by itself). Returns the state it was ended from."""
        if self.state == "idle":
            raise Refused("no_session", "no session is open")
        if self.state == "recording":
            raise Refused("recording", "the session is weighed and waits to be recorded (the "
                                       "database cannot be written: is the disk full?)")
        if self.state == "open":
            raise Refused("door_open", "the door is open: close it, and the session ends by "
                                       "itself once the shelves are weighed")
        was = self.state
        if self.state == "authorised":
            self.fx.lock()
            self._end("no_sale", None, None)
            return was
        self.session["ended_by_hand"] = True
        self.fx.cancel_timer("settle_timeout")
        self._settle_as_weighed()
        return was

    def _unlock_timed_out(self) -> None:
        if self.state != "authorised":
            return
        self.fx.lock()
        self._end("no_sale", None, None)

    # --- the door -----------------------------------------------------------------------------------
    def door_opened(self) -> bool:
        """Return False when nobody was authorised: the caller treats it as forced open."""
        if self.state == "authorised":
            self.fx.cancel_timer("unlock_timeout")
            self._enter_open(first=True)
            return True
        if self.state in ("settling", "recording"):
            # The door opened again before the sale was settled (or written): the lock was
            # engaged, so this is forced, but the shopper is still the session's: weigh
            # everything at the next close (a pending record is weighed again, whole).
            self.fx.cancel_timer("settle_timeout")
            self.fx.cancel_timer("record_retry")
            self.session["reopened"] = True
            self._enter_open(first=False)
            return False
        return self.state == "open"

    def _enter_open(self, first: bool) -> None:
        self.state = "open"
        self.prompt = "take_items"
        if first:
            self.session["door_opened_at"] = self.fx.now_utc()
        self._journal("open")
        self.fx.start_timer("held_open_warning", self.settings.door_open_warning_seconds,
                            self._held_open_warning)
        self.fx.start_timer("held_open_alarm", self.settings.door_open_alarm_seconds,
                            self._held_open_alarm)

    def _held_open_warning(self) -> None:
        if self.state == "open":
            self.prompt = "close_door"
            self.fx.buzzer(True)

    def _held_open_alarm(self) -> None:
        if self.state == "open":
            self.fx.raise_alarm("held_open", f"door held open for more than "
                                f"{self.settings.door_open_alarm_seconds:g} s in session "
                                f"{self.session['session_id']}")

    def door_closed(self) -> None:
        if self.state == "authorised":
            return  # it was already closed; nothing to do until it opens
        if self.state != "open":
            return
        self.fx.lock()  # engaged at once
        self.fx.buzzer(False)
        self.fx.cancel_timer("held_open_warning")
        self.fx.cancel_timer("held_open_alarm")
        self.fx.clear_alarm("held_open")
        self.session["door_closed_at"] = self.fx.now_utc()
        self._enter_settling()

    def _enter_settling(self) -> None:
        self.state = "settling"
        self.prompt = "weighing"
        self._journal("settling")
        self.fx.restart_weighing()  # readings taken after the door closed must confirm the weight
        self.fx.start_timer("settle_timeout", self.settings.settle_timeout_seconds,
                            self._settle_timed_out)

    # --- weighing -----------------------------------------------------------------------------------
    def shelves_weighed(self) -> None:
        """Called after new readings while settling; settles once every shelf is stable."""
        if self.state != "settling":
            return
        weights = self.fx.weights()
        if all(stable is not None for _, stable in weights.values()):
            self.fx.cancel_timer("settle_timeout")
            self._settle_or_flag({n: stable for n, (_, stable) in weights.items()},
                                 unsettled=set())

    def _settle_timed_out(self) -> None:
        if self.state != "settling":
            return
        self._settle_as_weighed()

    def _settle_as_weighed(self) -> None:
        """Settle with what the shelves say now: a stable weight, else the latest reading since
        the door closed (flagged `unsettled`), else none (flagged `no_reading`)."""
        weights = self.fx.weights()
        self._settle_or_flag({n: stable if stable is not None else latest
                              for n, (latest, stable) in weights.items()},
                             unsettled={n for n, (latest, stable) in weights.items()
                                        if stable is None and latest is not None})

    def _settle_or_flag(self, after: dict[int, float | None], unsettled: set[int]) -> None:
        """Settle; whatever goes wrong working out the sale (a bug, a search a planogram makes
        too deep) ends the session all the same: recorded with no lines and an `error` flag for
        review, and an alarm. No session may stay `settling` for ever (issue 15 #1). A failure
        to record it (the store's) is not caught here: the journal keeps the session, and it is
        settled again after a restart."""
        try:
            outcome, record, planogram = self._settlement(after, unsettled)
        except Exception as exc:
            detail = f"{type(exc).__name__}: {exc}"[:300]
            session = self.session
            auth = session["authorisation"]
            record = {"session_id": session["session_id"], "authorisation": auth,
                      "authorised_at": session["authorised_at"],
                      "door_opened_at": session["door_opened_at"],
                      "door_closed_at": session["door_closed_at"],
                      "settled_at": self.fx.now_utc(),
                      "shelves": [{"shelf": n, "before_grams": session["before_grams"].get(str(n)),
                                   "after_grams": g} for n, g in sorted(after.items())],
                      "flags": [{"kind": "error", "detail": detail}], "lines": [],
                      "total_fen": 0}
            if auth["role"] != "shopper":
                record["mode"] = (UNAUTHORISED if auth["role"] == UNAUTHORISED
                                  else "restock" if auth["restock"] else "service")
            if auth["role"] == UNAUTHORISED:
                record["value_fen"] = 0
            self._end("sale" if auth["role"] == "shopper" else "inventory", record, None)
            self.fx.raise_alarm("settle_error", f"session {session['session_id']} could not be "
                                                f"weighed ({detail}); ended for review")
            return
        session_id = self.session["session_id"]
        self._end(outcome, record, planogram)
        cut_off = [f["shelf"] for f in (record or {}).get("flags", ()) if f["kind"] == "too_complex"]
        if cut_off:
            # Recorded with no lines for those shelves: someone must look, so say so.
            self.fx.raise_alarm("settle_error", f"session {session_id}: shelf "
                                f"{', '.join(map(str, cut_off))} too complex to weigh; "
                                "recorded for review")

    def _settlement(self, after: dict[int, float | None], unsettled: set[int]
                    ) -> tuple[str, dict[str, Any] | None, Planogram | None]:
        """The session's outcome, record and new stock from the weights (computed only: the
        caller ends the session with them)."""
        session = self.session
        planogram = self.fx.planogram()
        auth = session["authorisation"]
        technician = auth["role"] == "technician"
        verdicts = settle_shelves(session["before_grams"], after, planogram,
                                  self.settings.shelf_tolerance_grams, technician=technician,
                                  plan=auth.get("restock_plan"), clock=self._clock)
        flags = []
        if session["recovered"]:
            flags.append({"kind": "recovered", "detail": "session finished after a restart"})
        if session["reopened"]:
            flags.append({"kind": "reopened", "detail": "door opened again after it closed"})
        if session.get("ended_by_hand"):
            flags.append({"kind": "ended_by_hand",
                          "detail": "ended by a technician or the operator while weighing"})
        for shelf in sorted(unsettled):
            flags.append({"kind": "unsettled", "shelf": shelf,
                          "detail": "shelf never settled; the latest reading was used"})
        for shelf in session.get("unweighed", ()):
            flags.append({"kind": "no_reading", "shelf": shelf,
                          "detail": "no stable weight for this shelf when the door opened"})
        shelves = []
        new_planogram = planogram
        lines = []
        for shelf, (before, after_g, verdict) in sorted(verdicts.items()):
            shelves.append({"shelf": shelf, "before_grams": before, "after_grams": after_g,
                            "difference_grams": verdict.difference_grams if verdict else None,
                            "status": verdict.status if verdict else "no_reading",
                            "counts": verdict.counts if verdict else None})
            if verdict is None:
                flags.append({"kind": "no_reading", "shelf": shelf,
                              "detail": "no weight for this shelf after the door closed"})
                continue
            if verdict.status != "explained":
                flags.append({"kind": verdict.status, "shelf": shelf,
                              "difference_grams": verdict.difference_grams,
                              "candidates": [asdict(c) for c in verdict.candidates]})
                continue
            if verdict.counts:
                new_planogram = new_planogram.with_stock(
                    shelf, {sku: -count for sku, count in verdict.counts.items()})
            for sku, count in sorted(verdict.counts.items()):
                if count > 0 and not technician:
                    product = planogram.products[sku]
                    lines.append({"sku": sku, "shelf": shelf, "count": count,
                                  "name_zh": product.name_zh, "name_bo": product.name_bo,
                                  "name_en": product.name_en,
                                  "unit_price_fen": product.price_fen,
                                  "amount_fen": product.price_fen * count})
        nothing_changed = all(v is not None and v.status == "explained" and not v.counts
                              for _, _, v in verdicts.values())
        if session["door_opened_at"] is None and nothing_changed:
            return "no_sale", None, None  # a recovered session whose door never opened
        record = {"session_id": session["session_id"], "authorisation": auth,
                  "authorised_at": session["authorised_at"],
                  "door_opened_at": session["door_opened_at"],
                  "door_closed_at": session["door_closed_at"],
                  "settled_at": self.fx.now_utc(), "shelves": shelves, "flags": flags,
                  "planogram_version": planogram.version}
        if technician:
            record["mode"] = "restock" if auth["restock"] else "service"
            record["stock"] = {str(n): dict(stock) for n, stock in new_planogram.shelves.items()}
            return "inventory", record, new_planogram
        if auth["role"] == UNAUTHORISED:
            record["mode"] = UNAUTHORISED
            record["lines"] = lines
            record["value_fen"] = sum(line["amount_fen"] for line in lines)
            record["stock"] = {str(n): dict(stock) for n, stock in new_planogram.shelves.items()}
            return "inventory", record, new_planogram
        record["lines"] = lines
        record["total_fen"] = sum(line["amount_fen"] for line in lines)
        return "sale", record, new_planogram

    def _journal(self, state: str) -> None:
        """Journal a step. The journal is for finishing the session after a crash: if it cannot
        be written (a full disk), the session goes on in memory, and its end is retried until it
        is recorded, rather than stalling with the door shut and the shelves unweighed."""
        try:
            self.fx.journal_update(self.session, state)
        except Exception as exc:
            log.error("session %s: cannot journal %s (%s); going on", self.session["session_id"],
                      state, exc)

    def _end(self, outcome: str, record: dict[str, Any] | None,
             planogram: Planogram | None) -> None:
        session = self.session
        for name in ("unlock_timeout", "held_open_warning", "held_open_alarm", "settle_timeout",
                     "record_retry"):
            self.fx.cancel_timer(name)
        try:
            self.fx.finish(session, outcome, record, planogram)
        except Exception as exc:
            # Not recorded (a full disk: the effects raise the alarm): the journal still holds the
            # session and the lock stays locked; the same outcome is written when it can be.
            log.error("session %s: cannot record its %s (%s); retrying every %.0f s",
                      session["session_id"], outcome, exc, RECORD_RETRY_SECONDS)
            self.state = "recording"  # weighed: nothing more to weigh, only to write
            self.fx.start_timer("record_retry", RECORD_RETRY_SECONDS,
                                lambda: self._end(outcome, record, planogram))
            return
        self.state = "idle"
        self.session = None
        self.prompt = None

    # --- after a restart ----------------------------------------------------------------------------
    def resume(self, journal: dict[str, Any], door_open: bool) -> None:
        """Take over a session found unfinished in the journal; the lock is already locked."""
        self.session = dict(journal)
        self.session["recovered"] = True
        if door_open:
            self._enter_open(first=self.session.get("door_opened_at") is None)
        else:
            self._enter_settling()


def settle_shelves(before: dict[str, float], after: dict[int, float | None],
                   planogram: Planogram, tolerance: float, *, technician: bool,
                   plan: dict[str, dict[str, int]] | None = None,
                   clock: Callable[[], float] | None = None
                   ) -> dict[int, tuple[float, float | None, ShelfVerdict | None]]:
    """Explain each shelf's difference (before - after) as counts of its products.
    Shoppers can only take what was there; technicians may also add (restock), which shows as
    negative counts. A restock plan that the weight confirms is taken as the answer. With a
    `clock`, the searches share SETTLE_SEARCH_SECONDS: the controller's thread (and its systemd
    watchdog) waits on them, however many shelves there are."""
    out = {}
    deadline = None if clock is None else clock() + SETTLE_SEARCH_SECONDS

    def budget() -> float:
        return 0.0 if deadline is None else max(0.0, deadline - clock())
    for key, before_g in before.items():
        shelf = int(key)
        after_g = after.get(shelf)
        if after_g is None:
            out[shelf] = (before_g, None, None)
            continue
        removed = before_g - after_g
        stock = planogram.shelves.get(shelf, {})
        planned = (plan or {}).get(str(shelf))
        if technician and planned and all(sku in stock for sku in planned):
            expected = sum(planogram.products[sku].unit_grams * n for sku, n in planned.items())
            allowed = tolerance + math.sqrt(sum(planogram.products[sku].tolerance_grams ** 2 * n
                                                for sku, n in planned.items()))
            if abs(-removed - expected) <= allowed:
                counts = {sku: -n for sku, n in planned.items()}
                out[shelf] = (round(before_g, 1), round(after_g, 1), ShelfVerdict(
                    "explained", round(removed, 1), counts,
                    (Explanation(counts, round(abs(-removed - expected), 1), round(allowed, 1)),)))
                continue
        if technician and removed < -tolerance:
            items = [Item(p.sku, p.unit_grams, p.tolerance_grams, RESTOCK_MAX_PER_PRODUCT)
                     for p in planogram.shelf_products(shelf)]
            verdict = explain(-removed, items, base_tolerance_grams=tolerance, clock=clock,
                              max_seconds=budget())
            if verdict.counts is not None:
                verdict = ShelfVerdict(verdict.status, round(removed, 1),
                                       {sku: -c for sku, c in verdict.counts.items()},
                                       verdict.candidates)
        else:
            items = [Item(p.sku, p.unit_grams, p.tolerance_grams, stock.get(p.sku, 0))
                     for p in planogram.shelf_products(shelf)]
            verdict = explain(removed, items, base_tolerance_grams=tolerance, clock=clock,
                              max_seconds=budget())
        out[shelf] = (round(before_g, 1), round(after_g, 1), verdict)
    return out
