"""Which screen the kiosk shows, decided from the controller's state (plain values in, a screen out).

The page (static/index.html) only renders what this says, so the rules live in one place and are
tested without a browser. Screens: idle (or, while the camera checks a member's face, the
head-turn prompt), authorised (open the door), shopping (door open; a
countdown once the door has been open too long), settling (weighing), receipt, out_of_service
(with a reason: the door is open with nobody authorised, a shelf or the lock has a fault, the
food-safety lockout, no planogram, or a restart still finishing the last session).

On a cabinet with several doors the screens of a session (and of a door standing open) carry
`doors` (each door's number and open / closed / locked) and `close` (the doors still open), so the
page can say which door is open and which to close.
"""

from __future__ import annotations

from typing import Any

SCREENS = ("idle", "authorised", "shopping", "settling", "receipt", "out_of_service")
OUT_OF_SERVICE_REASONS = ("door_open", "device_fault", "food_safety", "no_products", "recovering")


def screen_for(state: dict[str, Any], *, alarm_in_seconds: float | None = None,
               recovering: bool = False, shopper_refused: str | None = None) -> dict[str, Any]:
    """The screen for a snapshot. `shopper_refused` is the controller's own answer to "would a
    shopper be let in now?" (a reason, or None), so the screen never promises what checkout
    would refuse."""
    screen = _screen(state, alarm_in_seconds, recovering, shopper_refused)
    doors = state.get("doors") or []
    if len(doors) > 1 and (screen["name"] in ("authorised", "shopping", "settling")
                           or screen.get("reason") == "door_open"):
        screen["doors"] = [{"door": d["door"],
                            "state": "open" if d["state"] == "open"
                            else "locked" if d["lock"] == "locked" else d["state"]}
                           for d in doors]
        screen["close"] = [d["door"] for d in doors if d["state"] == "open"]
    return screen


def _screen(state: dict[str, Any], alarm_in_seconds: float | None, recovering: bool,
            shopper_refused: str | None) -> dict[str, Any]:
    session = state.get("session")
    if session is not None and session.get("role") == "unauthorised" and session["state"] == "open":
        return {"name": "out_of_service", "reason": "door_open"}  # forced: nobody is shopping
    if session is not None:
        if session["state"] == "authorised":
            return {"name": "authorised", "prompt": "open_door"}
        if session["state"] in ("settling", "recording"):
            return {"name": "settling", "prompt": "weighing"}
        prompt = session.get("prompt") or "take_items"
        screen = {"name": "shopping", "prompt": prompt}
        if prompt == "close_door" and alarm_in_seconds is not None:
            screen["alarm_in_seconds"] = max(0, round(alarm_in_seconds))
        return screen
    if state.get("door") == "open":  # nobody authorised: before a receipt still showing
        return {"name": "out_of_service", "reason": "door_open"}
    if state.get("receipt") is not None:
        return {"name": "receipt", "prompt": "thanks"}
    if recovering:
        return {"name": "out_of_service", "reason": "recovering"}
    faulted = [d for d in state.get("faults", {}) if d.startswith("shelf") or d in ("lock", "gpio")]
    if faulted or any(a["kind"].split(":")[0] == "lock_fault" for a in state.get("alarms", [])):
        return {"name": "out_of_service", "reason": "device_fault", "devices": sorted(faulted)}
    if shopper_refused == "storage":  # the database cannot be written (a full disk)
        return {"name": "out_of_service", "reason": "device_fault", "devices": ["storage"]}
    if shopper_refused == "food_safety":
        return {"name": "out_of_service", "reason": "food_safety"}
    if not any(p["available"] for p in state.get("products", [])):
        return {"name": "out_of_service", "reason": "no_products"}
    if (state.get("face") or {}).get("checking"):
        return {"name": "idle", "prompt": "turn_head"}  # a member is named: the liveness check
    return {"name": "idle", "prompt": "scan"}
