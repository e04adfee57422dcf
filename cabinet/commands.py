"""The backend's commands: parsed and checked (parse_command), then run on the controller thread at
most once per command id (CommandRunner), each leaving a result record in the outbox.

A transport over the operations table (cabinet/operations.py): a command's type is an operation the
backend may ask for, its args are checked by the operation's schema, and the operation's one error
type becomes the result's status (`rejected`, `unsupported`).

A command's lifetime is judged by the backend's own clock: its reply carries `server_time`, so the
command has `expires_at - server_time` seconds left when it arrives, counted down on the cabinet's
monotonic clock. A Pi without a real-time clock, whose wall clock may be hours off after a power
cut, therefore neither runs a stale remote unlock nor refuses a fresh one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable

from . import operations
from .alarms import STORAGE_ERRORS
from .operations import BACKEND, OperationError
from .sync_protocol import ReplyError, parse_time

log = logging.getLogger("cabinetd.commands")

TYPES = operations.BACKEND_TYPES
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
    try:
        operations.checked(operations.OPERATIONS[kind], args)
    except OperationError as exc:
        raise CommandError(str(exc)) from None
    return Command(command_id, kind, args, expires - now, received_at, seq)


@dataclass
class Outcome:
    status: str                                   # done, rejected, failed, unsupported
    detail: str = ""
    result: dict[str, Any] = field(default_factory=dict)


class CommandRunner:
    """Runs commands on the controller thread, through the operations table."""

    def __init__(self, ctx: operations.Context, *, store: Any, clock: Callable[[], float],
                 stop: Callable[..., None], storage_failed: Callable[[BaseException], None]):
        self.ctx = ctx
        self.store, self.clock = store, clock
        self._stop, self._storage_failed = stop, storage_failed
        self.restart_requested = False
        for command_id in store.interrupted_commands():
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
            try:
                if not self.store.claim_command(command_id, type_of(raw)):
                    return None
            except STORAGE_ERRORS as failure:  # answered when it comes again, space permitting
                self._storage_failed(failure)
                return None
            return self._finish(command_id, type_of(raw),
                                Outcome("rejected", str(exc)))
        try:
            claimed = self.store.claim_command(command.command_id, command.type)
        except STORAGE_ERRORS as exc:
            return self._unclaimable(command, exc)
        if not claimed:
            log.info("command %s seen before; not run again", command.command_id)
            return None
        if self.clock() - command.received_at >= command.seconds_left:
            return self._finish(command.command_id, command.type,
                                Outcome("rejected", "expired while waiting to run"))
        try:
            result = operations.run(self.ctx, command.type, command.args, BACKEND)
            outcome = Outcome("done", result=result)
        except OperationError as exc:
            status = "unsupported" if exc.kind == "unsupported" else "rejected"
            detail = f"{exc.reason}: {exc}" if exc.kind == "refused" else str(exc)
            outcome = Outcome(status, detail, exc.result)
        except Exception as exc:  # a bug: report it, keep the loop (the controller locks on bugs)
            log.exception("command %s (%s) failed", command.command_id, command.type)
            outcome = Outcome("failed", f"{type(exc).__name__}: {exc}"[:300])
        return self._finish(command.command_id, command.type, outcome)

    def _unclaimable(self, command: Command, exc: BaseException) -> None:
        """The store cannot record the command (a full disk), so it cannot run at most once, and
        does not run; the backend sends it again. Except a new ads playlist: it is how an operator
        frees the card (the ads thread deletes the files no longer listed), and running it twice
        is harmless. It is recorded when it comes again after space returns."""
        self._storage_failed(exc)
        if command.type == "set_ads" and self.ctx.on_ads is not None:
            log.warning("command %s (set_ads) run unrecorded: the database cannot be written",
                        command.command_id)
            self.ctx.on_ads(operations.playlist_of(command.args))
        else:
            log.warning("command %s (%s) not run: the database cannot be written (%s)",
                        command.command_id, command.type, exc)
        return None

    def _finish(self, command_id: str, kind: str, outcome: Outcome) -> Outcome:
        try:
            self.store.finish_command(command_id, kind, outcome.status, outcome.detail,
                                      outcome.result)
        except STORAGE_ERRORS as exc:  # it ran; only its result is lost (reported after a restart)
            self._storage_failed(exc)
            log.error("command %s (%s): %s, but the result cannot be recorded: %s", command_id,
                      kind, outcome.status, exc)
        log.info("command %s (%s): %s%s", command_id, kind, outcome.status,
                 f": {outcome.detail}" if outcome.detail else "")
        if kind == "restart" and outcome.status == "done":
            self.restart_requested = True
            self._stop(exit_status=EXIT_RESTART, reason="restart command")
        return outcome
