"""Every operation a person or the backend can ask of the cabinet, declared once.

An operation has a name, its arguments (checked here, once, whichever way it came), who may ask
for it (`technician`: the local HTTP API and the `cabinet` CLI; `backend`: a command;
`simulation`: the twins' stand-in for the access modules), the local route it answers on, and a
handler that runs on the controller thread. The command runner, the
local HTTP API and the CLI are transports over this table: they parse, call `run`, and turn the one
error type, OperationError, into their own form (a `command_result`, a 400/409, an exit status).

Adding an operation is one `Operation(...)` entry below and its handler. Other threads ask for one
by name (Controller.request posts an OperationRequested): only data crosses into the loop. Handlers
act on the controller itself, through `Context.cabinet`: they are its operations.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from dataclasses import dataclass, field
from typing import Any, Callable


TECHNICIAN, BACKEND, SIMULATION = "technician", "backend", "simulation"


class OperationError(Exception):
    """Why an operation did not run. `kind`: "invalid" (its arguments: 400, `rejected`),
    "refused" (not now: 409, `rejected`), "unsupported" (not on this cabinet: 409,
    `unsupported`). `reason` is a word for programs; the message is for people."""

    def __init__(self, reason: str, detail: str, *, kind: str = "refused",
                 result: dict[str, Any] | None = None):
        super().__init__(detail)
        self.reason, self.kind, self.result = reason, kind, result or {}


def invalid(detail: str) -> OperationError:
    return OperationError("invalid", detail, kind="invalid")


# --- argument checks --------------------------------------------------------------------------------

def finite(value: Any) -> bool:
    """A JSON number that is a real quantity: not a bool, not NaN or infinite, and not an integer
    too large for a float (math.isfinite raises OverflowError on one)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


@dataclass(frozen=True)
class Arg:
    """One argument: `kind` is "number", "integer", "text", "list", "object" or "bool"; `check`
    adds a rule of its own (returns the problem, or None). Ranges are the domain's rules (the
    setpoint's is climate_control's), not the schema's."""
    name: str
    kind: str
    required: bool = True
    limit: int = 200                      # text: characters; list: items
    empty: bool = False                   # list: may be empty
    check: Callable[[Any], str | None] | None = None

    def problem(self, value: Any) -> str | None:
        if self.kind == "number":
            if not finite(value):
                return "must be a finite number"
        elif self.kind == "text":
            if not isinstance(value, str) or not value.strip() or len(value) > self.limit:
                return f"must be a non-empty string of at most {self.limit} characters"
        elif self.kind == "list":
            if not isinstance(value, list) or (not value and not self.empty) \
                    or len(value) > self.limit:
                return (f"must be a{'' if self.empty else ' non-empty'} list of at most "
                        f"{self.limit} items")
        elif self.kind == "object":
            if not isinstance(value, dict):
                return "must be an object"
        elif self.kind == "bool" and not isinstance(value, bool):
            return "must be true or false"
        elif self.kind == "integer" and (isinstance(value, bool) or not isinstance(value, int)):
            return "must be a whole number"
        return self.check(value) if self.check else None


def get_arg(body: Any, key: str, kind):
    """`body[key]` of the type `kind` (not a bool for a number); invalid saying why not."""
    if not isinstance(body, dict) or key not in body:
        raise invalid(f"missing {key!r}")
    value = body[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or isinstance(value, bool):
        names = " or ".join(k.__name__ for k in kinds)
        raise invalid(f"{key!r} must be {names}, got {json.dumps(value)}")
    return value


def number(body: Any, key: str) -> float:
    """A JSON number that is a real, finite quantity (a 400-digit integer, NaN or Infinity is a
    bad request, not an OverflowError that drops the connection)."""
    value = get_arg(body, key, (int, float))
    if not finite(value):
        raise invalid(f"{key!r} must be a finite number")
    return float(value)


def _member_ids(ids: list) -> str | None:
    if not all(isinstance(i, str) and 0 < len(i) <= 100 for i in ids):
        return "must be a list of member ids (strings of 1 to 100 characters)"
    return None


def _playlist(playlist: list) -> str | None:
    if len(playlist) > 100:
        return "must be a list of at most 100 ads"
    for i, ad in enumerate(playlist):
        if not isinstance(ad, dict) or not isinstance(ad.get("url"), str) or \
                not re.fullmatch(r"https?://\S{1,2000}", ad["url"]):
            return f"[{i}].url must be an http(s) URL"
        if not isinstance(ad.get("sha256"), str) or not re.fullmatch(r"[0-9a-f]{64}", ad["sha256"]):
            return f"[{i}].sha256 must be 64 lower-case hex digits"
        seconds = ad.get("seconds", 10)
        if not finite(seconds) or not 1 <= seconds <= 600:
            return f"[{i}].seconds must be 1 to 600"
    return None


def _http_url(url: str) -> str | None:
    return None if re.fullmatch(r"https?://\S{1,2000}", url) else "must be an http(s) URL"


def _sha256(sha: str) -> str | None:
    return None if re.fullmatch(r"[0-9a-f]{64}", sha) else "must be 64 lower-case hex digits"


def _plan(plan: Any) -> str | None:
    return None if plan is None or isinstance(plan, dict) else "must map a shelf to {sku: count}"


# --- the table ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Operation:
    name: str
    summary: str
    args: tuple[Arg, ...]
    who: frozenset[str]
    handler: Callable[["Context", dict[str, Any], str], dict[str, Any]]
    # The local route, when technicians may ask for it there, and how its body's keys map to
    # the arguments (the local API names the person `technician`; a command names them `by`).
    route: str | None = None
    renamed: dict[str, str] = field(default_factory=dict)


@dataclass
class Context:
    """What the handlers act on: the controller (on its own thread); for the ads and the
    diagnostics the data folder and the ads fetcher; for calibration the shelves' procedure
    (cabinet/calibration.py, set by app.py once the shelves exist)."""
    cabinet: Any
    data_dir: str | None = None
    on_ads: Callable[[list], None] | None = None
    calibration: Any = None
    on_voice_pack: Callable[[str, str], None] | None = None   # VoicePacks.want(url, sha256)
    on_update: Callable[[str, str], None] | None = None       # Updates.want(url, sha256)


def _person(args: dict[str, Any], source: str) -> str:
    return f"operator {args['by']}" if source == BACKEND else args["by"]


def refusals(fn: Callable[[], Any]) -> Any:
    """Run a controller call, with its refusals as OperationErrors."""
    from .access.face_control import FaceUnsupported
    from .checkout import Refused
    try:
        return fn()
    except Refused as refusal:
        raise OperationError(refusal.reason, str(refusal)) from None
    except FaceUnsupported as exc:
        raise OperationError("face_off", f"face checkout is off on this cabinet: {exc}",
                             kind="unsupported") from None
    except ValueError as exc:
        raise invalid(str(exc)) from None


def _set_setpoint(ctx: Context, args, source) -> dict[str, Any]:
    celsius = float(args["celsius"])
    zone = args.get("zone")
    refusals(lambda: ctx.cabinet.set_setpoint(celsius, zone))
    return {"setpoint_celsius": celsius, **({} if zone is None else {"zone": zone})}


def _set_planogram(ctx: Context, args, source) -> dict[str, Any]:
    from .planogram import PlanogramError, from_dict

    shelf_ids = {s.id for s in ctx.cabinet.config.shelves.shelf}
    try:
        planogram = from_dict(args["planogram"], "planogram", shelf_ids)
    except PlanogramError as exc:
        raise invalid(str(exc)) from None
    refusals(lambda: ctx.cabinet.replace_planogram(planogram))
    return {"version": planogram.version}


def _remote_unlock(ctx: Context, args, source) -> dict[str, Any]:
    return {"session_id": refusals(lambda: ctx.cabinet.remote_unlock(args["nonce"],
                                                                     args["subject"]))}


def _restock_mode(ctx: Context, args, source) -> dict[str, Any]:
    from .checkout import Authorisation

    auth = refusals(lambda: Authorisation("remote", args["technician"], "technician",
                                          "restock-command", restock=True,
                                          restock_plan=args.get("plan")))
    return {"session_id": refusals(lambda: ctx.cabinet.authorise(auth))}


def _enroll_faces(ctx: Context, args, source) -> dict[str, Any]:
    result = refusals(lambda: ctx.cabinet.face.enrol(args["members"]))
    if source == BACKEND and not result["enrolled"] and not result["removed"]:
        # A command's status says it; a technician reads `refused` and its reasons (the CLI).
        raise OperationError("none_enrolled", "no member enrolled", kind="invalid", result=result)
    return result


def _delete_faces(ctx: Context, args, source) -> dict[str, Any]:
    return refusals(lambda: ctx.cabinet.face.delete(list(args["member_ids"])))


def _set_ads(ctx: Context, args, source) -> dict[str, Any]:
    playlist = playlist_of(args)
    if ctx.on_ads is not None:
        ctx.on_ads(playlist)  # first: dropping the files no longer listed may be what frees the card
    ctx.cabinet.store.set_value("ads.playlist", playlist)
    return {"ads": len(playlist)}


def _set_voice_pack(ctx: Context, args, source) -> dict[str, Any]:
    """Fetched, checked and installed in the voice packs' thread (a download must not hold this
    one); the outcome is its own `voice_pack` record (installed, or refused naming each
    problem), and a refusal raises the `voice_pack` alarm."""
    if ctx.on_voice_pack is None:
        raise OperationError("no_speaker", "this cabinet has no speaker", kind="unsupported")
    ctx.on_voice_pack(args["url"], args["sha256"])
    return {"accepted": args["sha256"]}


def _update_software(ctx: Context, args, source) -> dict[str, Any]:
    """Fetched and checked against the release key in the updates' thread, then installed by
    the root installer and restarted into between sessions (docs/updates.md); each step is an
    `update` record."""
    if ctx.on_update is None:
        raise OperationError("no_updates", "this cabinet takes no software updates",
                             kind="unsupported")
    ctx.on_update(args["url"], args["sha256"])
    return {"accepted": args["sha256"]}


def playlist_of(args: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"url": ad["url"], "sha256": ad["sha256"], "seconds": ad.get("seconds", 10)}
            for ad in args["playlist"]]


def _request_diagnostics(ctx: Context, args, source) -> dict[str, Any]:
    snapshot = dict(ctx.cabinet.snapshot)
    disk = shutil.disk_usage(ctx.data_dir) if ctx.data_dir else None
    return {"state": {k: snapshot.get(k) for k in (
                "door", "lock", "temperature", "relays", "climate", "faults", "alarms",
                "outbox", "shelves", "session", "uptime_seconds", "software_version")},
            "store_integrity": ctx.cabinet.store.quick_check(),
            "disk_free_bytes": disk.free if disk else None}


def _restart(ctx: Context, args, source) -> dict[str, Any]:
    if ctx.cabinet.checkout.state != "idle":
        raise OperationError("busy", "a session is in progress; send it again later")
    return {"restarting": True}  # the transport stops the daemon once the result is recorded


def _end_session(ctx: Context, args, source) -> dict[str, Any]:
    return refusals(lambda: ctx.cabinet.end_session(_person(args, source)))


def _clear_alarm(ctx: Context, args, source) -> dict[str, Any]:
    return {"cleared": refusals(lambda: ctx.cabinet.acknowledge_alarm(args["kind"],
                                                                      _person(args, source)))}


def _clear_lockout(ctx: Context, args, source) -> dict[str, Any]:
    return {"cleared": refusals(lambda: ctx.cabinet.clear_lockout(_person(args, source),
                                                                  args.get("zone")))}


def _authorise(ctx: Context, args, source) -> dict[str, Any]:
    """The simulation's stand-in for the access modules (QR, phone, face)."""
    from .checkout import Authorisation

    auth = refusals(lambda: Authorisation(
        method="simulation", subject=args["subject"], role=args.get("role") or "shopper",
        code_id=args.get("code_id") or "sim", restock=bool(args.get("restock")),
        restock_plan=args.get("restock_plan")))
    return {"session_id": refusals(lambda: ctx.cabinet.authorise(auth))}


def _list_faces(ctx: Context, args, source) -> dict[str, Any]:
    face = ctx.cabinet.face
    return {"enrolled": face.vault.summary() if face.available else []}


def _calibrate(ctx: Context, args, source) -> dict[str, Any]:
    """One step's state, on this thread: the shelf was read (`counts`) by the caller."""
    if ctx.calibration is None:
        raise invalid("no shelves to calibrate")
    if ctx.cabinet.checkout.session is not None:
        raise OperationError("busy", "a session is open: calibrate when the cabinet is idle")
    shelf, step = args["shelf"], args["step"]
    try:
        if step == "tare":
            return refusals(lambda: ctx.calibration.tare(shelf, args["counts"]))
        if step == "span":
            if args.get("grams") is None:
                raise invalid("grams is required for the span")
            return refusals(lambda: ctx.calibration.span(shelf, args["counts"], args["grams"]))
    except KeyError:
        raise invalid(f"no shelf {shelf} in the config") from None
    raise invalid("step must be 'tare' or 'span'")


def _lock_test(ctx: Context, args, source) -> dict[str, Any]:
    refusals(lambda: ctx.cabinet.lock_test(args["unlock"]))
    return {"unlocked": args["unlock"]}


def _check_store(ctx: Context, args, source) -> dict[str, Any]:
    return {"integrity": ctx.cabinet.store.quick_check()}


_BY = Arg("by", "text")
_BOTH = frozenset({TECHNICIAN, BACKEND})
_AS_TECHNICIAN = {"technician": "by"}
OPERATIONS: dict[str, Operation] = {op.name: op for op in (
    Operation("set_setpoint", "the temperature to hold",
              # The range (and the band's distance from the food-safety limit) is the
              # climate's one rule, climate_control._checked: it also vets a saved setpoint.
              # `zone`: which, on a cabinet with several (climate per zone: zones.py).
              (Arg("celsius", "number"), Arg("zone", "integer", required=False)),
              _BOTH, _set_setpoint, route="climate/setpoint"),
    Operation("set_planogram", "products, prices, shelves and stock, between sessions",
              (Arg("planogram", "object"),), _BOTH, _set_planogram),
    Operation("remote_unlock", "open for a phone that scanned the screen's live code",
              (Arg("nonce", "text", limit=64), Arg("subject", "text")),
              frozenset({BACKEND}), _remote_unlock),
    Operation("restock_mode", "open a restock session for a technician",
              (Arg("technician", "text"), Arg("plan", "object", required=False, check=_plan)),
              frozenset({BACKEND}), _restock_mode),
    Operation("enroll_faces", "enrol (or remove) members for face checkout",
              # How many members one command may hold is face_control's rule (500).
              (Arg("members", "list", limit=10_000),), _BOTH, _enroll_faces,
              route="faces/enrol"),
    Operation("delete_faces", "delete members for good",
              (Arg("member_ids", "list", limit=500, empty=True, check=_member_ids),), _BOTH,
              _delete_faces, route="faces/delete"),
    Operation("set_ads", "the ads playlist",
              (Arg("playlist", "list", limit=100, empty=True, check=_playlist),),
              frozenset({BACKEND}),
              _set_ads),
    Operation("set_voice_pack", "recorded prompts: a voice pack to fetch, check and install",
              (Arg("url", "text", limit=2000, check=_http_url),
               Arg("sha256", "text", limit=64, check=_sha256)),
              frozenset({BACKEND}), _set_voice_pack),
    Operation("update_software", "a signed release to fetch, verify and spool for installing",
              (Arg("url", "text", limit=2000, check=_http_url),
               Arg("sha256", "text", limit=64, check=_sha256)),
              frozenset({BACKEND}), _update_software),
    Operation("request_diagnostics", "state, alarms, faults, queue, store integrity, free disk",
              (), frozenset({BACKEND}), _request_diagnostics),
    Operation("restart", "restart the daemon between sessions",
              (Arg("reason", "text", required=False),), frozenset({BACKEND}), _restart),
    Operation("end_session", "end a session that does not end by itself",
              (_BY,), _BOTH, _end_session, route="session/end", renamed=_AS_TECHNICIAN),
    Operation("clear_alarm", "clear an alarm that stays until someone has looked",
              (Arg("kind", "text", limit=64), _BY), _BOTH, _clear_alarm, route="alarms/clear",
              renamed=_AS_TECHNICIAN),
    Operation("clear_lockout", "clear the food-safety lockout after the food was checked",
              (_BY, Arg("zone", "integer", required=False)), _BOTH, _clear_lockout,
              route="food-safety/clear", renamed=_AS_TECHNICIAN),
    # Steps of the technician's procedures (read by the HTTP server, applied here) and the
    # simulation's stand-in: no route of their own, asked for by name (Controller.request).
    Operation("list_faces", "the members enrolled (GET /api/faces)", (),
              frozenset({TECHNICIAN}), _list_faces),
    Operation("calibrate", "a calibration step's state: the shelf's counts read by the caller",
              (Arg("shelf", "integer"), Arg("step", "text", limit=10), Arg("counts", "number"),
               Arg("grams", "number", required=False)), frozenset({TECHNICIAN}), _calibrate),
    Operation("lock_test", "the selftest's lock cycle (Controller.lock_test)",
              (Arg("unlock", "bool"),), frozenset({TECHNICIAN}), _lock_test),
    Operation("check_store", "the database's integrity check", (), frozenset({TECHNICIAN}),
              _check_store),
    Operation("authorise", "a session, as an access module would open it (simulation only)",
              (Arg("subject", "text"), Arg("role", "text", required=False),
               Arg("code_id", "text", required=False), Arg("restock", "bool", required=False),
               Arg("restock_plan", "object", required=False)),
              frozenset({SIMULATION}), _authorise),
)}
BACKEND_TYPES = tuple(name for name, op in OPERATIONS.items() if BACKEND in op.who)
ROUTES = {op.route: op for op in OPERATIONS.values() if op.route}


def checked(op: Operation, args: Any, renamed: dict[str, str] | None = None) -> dict[str, Any]:
    """The arguments, checked against the operation's; OperationError("invalid") says which.
    `renamed` maps a transport's names to the arguments' (the local API's `technician` is a
    command's `by`): they are renamed here, and a problem names them as the transport does."""
    if not isinstance(args, dict):
        raise invalid("the arguments must be an object")
    renamed = renamed or {}
    args = {renamed.get(key, key): value for key, value in args.items()}
    shown = {argument: name for name, argument in renamed.items()}
    for arg in op.args:
        name = shown.get(arg.name, arg.name)
        if arg.name not in args or (args[arg.name] is None and not arg.required):
            if arg.required:
                raise invalid(f"{name} is required")
            continue
        problem = arg.problem(args[arg.name])
        if problem:
            raise invalid(f"{name}{problem}" if problem.startswith("[") else f"{name} {problem}")
    return args


def run(ctx: Context, name: str, args: Any, source: str,
        renamed: dict[str, str] | None = None) -> dict[str, Any]:
    """Check and run one operation on the controller thread; its result, or OperationError."""
    op = OPERATIONS.get(name)
    if op is None or source not in op.who:
        raise OperationError("unknown", f"no operation {name!r} for the {source}", kind="invalid")
    return op.handler(ctx, checked(op, args, renamed), source)
