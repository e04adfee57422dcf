"""The sync protocol's replies, parsed strictly: whatever the backend (or a proxy, or a broken
network) sends back, the result is either a well-formed value or a ReplyError saying what was wrong.

The uploader never marks a record delivered on the strength of a reply it did not fully
understand: a malformed acknowledgement is treated like no acknowledgement, and the batch is sent
again (the backend stores by record id, so that is harmless). docs/sync.md and
tools/backend/openapi.yaml describe the protocol.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any

# The most the cabinet reads of one reply: room for the largest command it accepts (an
# `enroll_faces` at its limits, 500 members x 5 embeddings, is 6.9 MB as JSON). It tells the backend
# how many bytes of commands it can take (`max_bytes` on the long-poll, `max_command_bytes` in a
# batch), so that one big command never makes every reply unreadable (issue 15 #2).
MAX_REPLY_BYTES = 8 * 1024 * 1024
ACK_ROOM_BYTES = 1024 * 1024          # an acknowledgement's own part: up to 500 rejections
COMMAND_PAGE_BYTES = MAX_REPLY_BYTES - ACK_ROOM_BYTES
COMMAND_PAGE_FLOOR_BYTES = 64 * 1024  # the smallest page asked for after a reply too large


class ReplyError(ValueError):
    """A reply the cabinet cannot act on."""


class ReplyTooLarge(ReplyError):
    """A reply over MAX_REPLY_BYTES: asked again for less, never identically."""


@dataclass(frozen=True)
class Ack:
    stored: list[int]                      # sequences the backend has durably stored
    rejected: dict[int, str]               # sequence -> the backend's reason
    commands: list[Any]                    # raw commands, parsed one by one later
    server_time: float | None              # Unix seconds, by the backend's clock


@dataclass(frozen=True)
class CommandsReply:
    commands: list[Any]
    server_time: float | None


def _object(raw: bytes) -> dict[str, Any]:
    if len(raw) > MAX_REPLY_BYTES:
        raise ReplyTooLarge(f"reply of {len(raw)} bytes is over the {MAX_REPLY_BYTES} byte limit")
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ReplyError(f"reply is not JSON: {exc}"[:200]) from None
    if not isinstance(value, dict):
        raise ReplyError(f"reply is JSON {type(value).__name__}, not an object")
    return value


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ReplyError(f"{what} must be an integer, got {value!r}"[:200])
    return value


def parse_time(value: Any, what: str) -> float:
    """An ISO-8601 UTC time (with Z or an offset) as Unix seconds."""
    if not isinstance(value, str) or len(value) > 40:
        raise ReplyError(f"{what} must be an ISO-8601 time, got {value!r}"[:200])
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ReplyError(f"{what} is not an ISO-8601 time: {value!r}"[:200]) from None
    if parsed.tzinfo is None:
        raise ReplyError(f"{what} has no time zone: {value!r}")
    try:
        return parsed.timestamp()
    except (OverflowError, OSError, ValueError):  # year 1 with a positive offset, say
        raise ReplyError(f"{what} is out of range: {value!r}"[:200]) from None


def _server_time(reply: dict[str, Any]) -> float | None:
    if reply.get("server_time") is None:
        return None
    return parse_time(reply["server_time"], "server_time")


def _commands(reply: dict[str, Any]) -> list[Any]:
    commands = reply.get("commands", [])
    if not isinstance(commands, list):
        raise ReplyError("commands must be a list")
    return commands


def parse_ack(raw: bytes, sent: list[int]) -> Ack:
    """The reply to a batch of records with sequences `sent` (ascending)."""
    reply = _object(raw)
    if "stored_through" not in reply:
        raise ReplyError("reply has no stored_through")
    through = _int(reply["stored_through"], "stored_through")
    if through > sent[-1]:
        raise ReplyError(f"stored_through {through} is beyond the batch (last sequence {sent[-1]})")
    rejected_raw = reply.get("rejected", [])
    if not isinstance(rejected_raw, list):
        raise ReplyError("rejected must be a list")
    in_batch = set(sent)
    rejected: dict[int, str] = {}
    for entry in rejected_raw:
        if not isinstance(entry, dict):
            raise ReplyError("each rejected entry must be an object")
        seq = _int(entry.get("seq"), "rejected[].seq")
        if seq not in in_batch or seq > through:
            raise ReplyError(f"rejected sequence {seq} was not acknowledged in this batch")
        reason = entry.get("reason")
        if not isinstance(reason, str) or not reason:
            raise ReplyError(f"rejected sequence {seq} has no reason")
        rejected[seq] = reason
    stored = [s for s in sent if s <= through and s not in rejected]
    return Ack(stored, rejected, _commands(reply), _server_time(reply))


def parse_commands(raw: bytes) -> CommandsReply:
    reply = _object(raw)
    return CommandsReply(_commands(reply), _server_time(reply))


def retry_after(header: str | None, now: float, cap: float = 3600.0) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date), capped;
    None when absent or unreadable (the uploader's own backoff then applies)."""
    if not header:
        return None
    header = header.strip()
    if re.fullmatch(r"[0-9]{1,12}", header):  # str.isdigit() also accepts '²'
        return min(float(header), cap)
    try:
        when = parsedate_to_datetime(header)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    seconds = when.timestamp() - now
    if math.isnan(seconds):
        return None
    return max(0.0, min(seconds, cap))
