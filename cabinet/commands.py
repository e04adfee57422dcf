"""The backend's commands: parsed and checked (parse_command), then run on the controller thread at
most once per command id (CommandRunner), each leaving a result record in the outbox.

A command's lifetime is judged by the backend's own clock: its reply carries `server_time`, so the
command has `expires_at - server_time` seconds left when it arrives, counted down on the cabinet's
monotonic clock. A Pi without a real-time clock, whose wall clock may be hours off after a power
cut, therefore neither runs a stale remote unlock nor refuses a fresh one.
"""

from __future__ import annotations

import logging
import math
import re
import shutil
from dataclasses import dataclass, field
from typing import Any, Callable

from .alarms import STORAGE_ERRORS
from .sync_protocol import ReplyError, parse_time

log = logging.getLogger("cabinetd.commands")

TYPES = ("set_setpoint", "set_planogram", "remote_unlock", "restock_mode", "enroll_faces",
         "delete_faces", "set_ads", "request_diagnostics", "restart", "end_session",
         "clear_alarm")
MAX_LIFETIME_SECONDS = 7 * 24 * 3600
EXIT_RESTART = 75  # EX_TEMPFAIL: systemd's Restart=on-failure starts the daemon again


class CommandError(ValueError):
    """A command that must not run; the message goes back to the backend as the result."""


@dataclass(frozen=True)
class Command:
    command_id: str
    type: str
    args: dict[str, Any]
    seconds_left: float          # when it arrived, by the backend's clock
    received_at: float = 0.0     # the cabinet's monotonic clock at arrival
    seq: int | None = None       # the backend's order, for the long-poll cursor


def _str(args: dict, key: str, *, limit: int = 200, optional: bool = False) -> str | None:
    value = args.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise CommandError(f"args.{key} must be a non-empty string of at most {limit} characters")
    return value


def _finite(value: Any) -> bool:
    """A JSON number that is a real quantity: not a bool, not NaN or infinite, and not an integer
    too large for a float (math.isfinite raises OverflowError on one)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _check_args(kind: str, args: dict[str, Any]) -> None:
    """Argument shapes per type; deeper checks (a planogram, a setpoint's range) happen when the
    command runs, by the same code a technician's request goes through."""
    if kind == "set_setpoint":
        if not _finite(args.get("celsius")):
            raise CommandError("args.celsius must be a finite number")
    elif kind == "set_planogram":
        if not isinstance(args.get("planogram"), dict):
            raise CommandError("args.planogram must be an object (products and shelves)")
    elif kind == "remote_unlock":
        _str(args, "nonce", limit=64)
        _str(args, "subject")
    elif kind == "restock_mode":
        _str(args, "technician")
        if args.get("plan") is not None and not isinstance(args["plan"], dict):
            raise CommandError("args.plan must map a shelf to {sku: count}")
    elif kind == "enroll_faces":
        members = args.get("members")
        if not isinstance(members, list) or not members:
            raise CommandError("args.members must be a non-empty list")
    elif kind == "delete_faces":
        ids = args.get("member_ids")
        if not isinstance(ids, list) or not all(isinstance(i, str) and i for i in ids):
            raise CommandError("args.member_ids must be a list of member ids")
    elif kind == "set_ads":
        playlist = args.get("playlist")
        if not isinstance(playlist, list) or len(playlist) > 100:
            raise CommandError("args.playlist must be a list of at most 100 ads")
        for i, ad in enumerate(playlist):
            if not isinstance(ad, dict) or not isinstance(ad.get("url"), str) or \
                    not re.fullmatch(r"https?://\S{1,2000}", ad["url"]):
                raise CommandError(f"args.playlist[{i}].url must be an http(s) URL")
            if not isinstance(ad.get("sha256"), str) or \
                    not re.fullmatch(r"[0-9a-f]{64}", ad["sha256"]):
                raise CommandError(f"args.playlist[{i}].sha256 must be 64 lower-case hex digits")
            seconds = ad.get("seconds", 10)
            if not _finite(seconds) or not 1 <= seconds <= 600:
                raise CommandError(f"args.playlist[{i}].seconds must be 1 to 600")
    elif kind == "restart":
        _str(args, "reason", optional=True)
    elif kind == "end_session":
        _str(args, "by")
    elif kind == "clear_alarm":
        _str(args, "kind", limit=64)
        _str(args, "by")


def type_of(raw: Any) -> str:
    """A command's type as recorded, whatever it holds (str() of a deep structure can raise)."""
    kind = raw.get("type") if isinstance(raw, dict) else None
    return kind[:50] if isinstance(kind, str) else type(kind).__name__


def command_id_of(raw: Any) -> str | None:
    """The id of a command, even a malformed one, so that its rejection can be reported."""
    if isinstance(raw, dict) and isinstance(raw.get("command_id"), str) \
            and 0 < len(raw["command_id"]) <= 100:
        return raw["command_id"]
    return None


def parse_command(raw: Any, server_time: float | None, *, wall_now: float,
                  received_at: float = 0.0) -> Command:
    """A command from the backend, checked; CommandError says what is wrong with it."""
    if not isinstance(raw, dict):
        raise CommandError("a command must be an object")
    command_id = command_id_of(raw)
    if command_id is None:
        raise CommandError("command_id must be a string of 1 to 100 characters")
    kind = raw.get("type")
    if kind not in TYPES:
        raise CommandError(f"unknown command type {kind!r}; known: {', '.join(TYPES)}"[:300])
    args = raw.get("args", {})
    if not isinstance(args, dict):
        raise CommandError("args must be an object")
    try:
        issued = parse_time(raw.get("issued_at"), "issued_at")
        expires = parse_time(raw.get("expires_at"), "expires_at")
    except ReplyError as exc:
        raise CommandError(str(exc)) from None
    if not issued < expires <= issued + MAX_LIFETIME_SECONDS:
        raise CommandError("expires_at must be after issued_at, within 7 days")
    now = server_time if server_time is not None else wall_now
    if expires <= now:
        raise CommandError("expired before it arrived")
    seq = raw.get("seq")
    if seq is not None and (isinstance(seq, bool) or not isinstance(seq, int)):
        raise CommandError("seq must be an integer")
    _check_args(kind, args)
    return Command(command_id, kind, args, expires - now, received_at, seq)


def _playlist(args: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"url": ad["url"], "sha256": ad["sha256"], "seconds": ad.get("seconds", 10)}
            for ad in args["playlist"]]


@dataclass
class Outcome:
    status: str                                   # done, rejected, failed, unsupported
    detail: str = ""
    result: dict[str, Any] = field(default_factory=dict)


class CommandRunner:
    """Runs commands on the controller thread. `controller` is the Controller."""

    def __init__(self, controller: Any, *, data_dir: str | None = None,
                 on_ads: Callable[[list], None] | None = None):
        self.c = controller
        self.data_dir = data_dir
        self.on_ads = on_ads
        self.restart_requested = False
        for command_id in controller.store.interrupted_commands():
            log.warning("command %s was interrupted by a restart", command_id)

    def receive(self, raw: Any, server_time: float | None, received_at: float,
                wall_now: float) -> Outcome | None:
        """Parse, claim and run one command; None when it has been seen before."""
        command_id = command_id_of(raw)
        try:
            command = parse_command(raw, server_time, wall_now=wall_now, received_at=received_at)
        except Exception as exc:  # CommandError, or anything a parser bug lets through
            if not isinstance(exc, CommandError):
                log.exception("command %s could not be parsed", command_id)
                exc = CommandError(f"cannot be read: {type(exc).__name__}")
            if command_id is None:
                log.error("command without a usable id ignored: %s", exc)
                return None
            if not self.c.store.claim_command(command_id, type_of(raw)):
                return None
            return self._finish(command_id, type_of(raw),
                                Outcome("rejected", str(exc)))
        try:
            claimed = self.c.store.claim_command(command.command_id, command.type)
        except STORAGE_ERRORS as exc:
            return self._unclaimable(command, exc)
        if not claimed:
            log.info("command %s seen before; not run again", command.command_id)
            return None
        if self.c.clock() - command.received_at >= command.seconds_left:
            return self._finish(command.command_id, command.type,
                                Outcome("rejected", "expired while waiting to run"))
        try:
            outcome = getattr(self, "_" + command.type)(command.args)
        except CommandError as exc:
            outcome = Outcome("rejected", str(exc))
        except Exception as exc:  # a bug: report it, keep the loop (the controller locks on bugs)
            log.exception("command %s (%s) failed", command.command_id, command.type)
            outcome = Outcome("failed", f"{type(exc).__name__}: {exc}"[:300])
        return self._finish(command.command_id, command.type, outcome)

    def _unclaimable(self, command: Command, exc: BaseException) -> None:
        """The store cannot record the command (a full disk), so it cannot run at most once, and
        does not run; the backend sends it again. Except a new ads playlist: it is how an operator
        frees the card (the ads thread deletes the files no longer listed), and running it twice
        is harmless. It is recorded when it comes again after space returns."""
        self.c.storage_failed(exc)
        if command.type == "set_ads" and self.on_ads is not None:
            log.warning("command %s (set_ads) run unrecorded: the database cannot be written",
                        command.command_id)
            self.on_ads(_playlist(command.args))
        else:
            log.warning("command %s (%s) not run: the database cannot be written (%s)",
                        command.command_id, command.type, exc)
        return None

    def _finish(self, command_id: str, kind: str, outcome: Outcome) -> Outcome:
        self.c.store.finish_command(command_id, kind, outcome.status, outcome.detail,
                                    outcome.result)
        log.info("command %s (%s): %s%s", command_id, kind, outcome.status,
                 f": {outcome.detail}" if outcome.detail else "")
        if kind == "restart" and outcome.status == "done":
            self.restart_requested = True
            self.c.stop(exit_status=EXIT_RESTART, reason="restart command")
        return outcome

    # --- the types --------------------------------------------------------------------------------
    def _clear_alarm(self, args) -> Outcome:
        """As `cabinet alarm clear`: only the alarms that stay until someone has looked."""
        from .checkout import Refused
        try:
            cleared = self.c.acknowledge_alarm(args["kind"], f"operator {args['by']}")
        except (ValueError, Refused) as exc:
            raise CommandError(str(exc)) from None
        return Outcome("done", result={"cleared": cleared})

    def _end_session(self, args) -> Outcome:
        from .checkout import Refused
        try:
            return Outcome("done", result=self.c.end_session(f"operator {args['by']}"))
        except Refused as refusal:
            raise CommandError(str(refusal)) from None

    def _set_setpoint(self, args) -> Outcome:
        try:
            self.c.set_setpoint(float(args["celsius"]))
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        return Outcome("done", result={"setpoint_celsius": float(args["celsius"])})

    def _set_planogram(self, args) -> Outcome:
        from .checkout import Refused
        from .planogram import PlanogramError, from_dict

        shelf_ids = {s.id for s in self.c.config.shelves.shelf}
        try:
            planogram = from_dict(args["planogram"], "command planogram", shelf_ids)
            self.c.replace_planogram(planogram)
        except (PlanogramError, Refused) as exc:
            raise CommandError(str(exc)) from None
        return Outcome("done", result={"version": planogram.version})

    def _remote_unlock(self, args) -> Outcome:
        from .checkout import Refused

        try:
            session_id = self.c.remote_unlock(args["nonce"], args["subject"])
        except Refused as refusal:
            raise CommandError(f"{refusal.reason}: {refusal}") from None
        return Outcome("done", result={"session_id": session_id})

    def _restock_mode(self, args) -> Outcome:
        from .checkout import Authorisation, Refused

        try:
            auth = Authorisation("remote", args["technician"], "technician", "restock-command",
                                 restock=True, restock_plan=args.get("plan"))
            session_id = self.c.authorise(auth)
        except (ValueError, Refused) as exc:
            raise CommandError(str(exc)) from None
        return Outcome("done", result={"session_id": session_id})

    def _enroll_faces(self, args) -> Outcome:
        from .access.face_control import FaceUnsupported

        try:
            result = self.c.face.enrol(args["members"])
        except FaceUnsupported as exc:
            return Outcome("unsupported", f"face checkout is off on this cabinet: {exc}")
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if not result["enrolled"] and not result["removed"]:
            return Outcome("rejected", "no member enrolled", result)
        return Outcome("done", result=result)

    def _delete_faces(self, args) -> Outcome:
        from .access.face_control import FaceUnsupported

        try:
            return Outcome("done", result=self.c.face.delete(list(args["member_ids"])))
        except FaceUnsupported as exc:
            return Outcome("unsupported", f"face checkout is off on this cabinet: {exc}")

    def _set_ads(self, args) -> Outcome:
        playlist = _playlist(args)
        self.c.store.set_value("ads.playlist", playlist)
        if self.on_ads is not None:
            self.on_ads(playlist)
        return Outcome("done", "playlist saved; files are fetched and checked in the background",
                       {"ads": len(playlist)})

    def _request_diagnostics(self, args) -> Outcome:
        snapshot = dict(self.c.snapshot)
        disk = shutil.disk_usage(self.data_dir) if self.data_dir else None
        return Outcome("done", result={
            "state": {k: snapshot.get(k) for k in (
                "door", "lock", "temperature", "relays", "climate", "faults", "alarms",
                "outbox", "shelves", "session", "uptime_seconds", "software_version")},
            "store_integrity": self.c.store.quick_check(),
            "disk_free_bytes": disk.free if disk else None})

    def _restart(self, args) -> Outcome:
        if self.c.checkout.state != "idle":
            raise CommandError("busy: a session is in progress; send it again later")
        return Outcome("done", "restarting")
