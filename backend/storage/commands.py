"""Commands: issued by a person (audited), paged to a cabinet in replies it can read, finished by
the cabinet's `command_result` record (backend/storage/fleet.py).

A reply holds at most the bytes the cabinet says it takes (`max_bytes` on the long-poll,
`max_command_bytes` in a batch); a cabinet that says nothing is an old one, which reads 4 MiB. A
command larger than any page is refused when issued (413), and one that a cabinet still cannot take
is finished as `rejected` (too_large) rather than blocking every reply after it.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from . import audit
from .errors import NotFound, TooLarge
from .engine import aware, iso, utc_now
from .schema import cabinets, commands

LEGACY_COMMAND_BYTES = 4 * 1024 * 1024 - 64 * 1024
CABINET_PAGE_BYTES = 7 * 1024 * 1024   # what a cabinet that states its size takes at most
MAX_COMMAND_BYTES = 7 * 1024 * 1024 - 4096  # a command's args, inside a cabinet's 7 MiB page
REPLY_ENVELOPE_BYTES = 256   # {"commands": [...], "server_time": "..."} around the page
CHANNEL = "cabinet_commands"  # PostgreSQL NOTIFY channel; the payload is the cabinet id


# Built once: every upload's reply and every long-poll asks (building costs more than running).
_PENDING = (sa.select(commands.c.command_seq, commands.c.command_id, commands.c.type,
                      commands.c.args, commands.c.issued_at, commands.c.expires_at)
            .where(commands.c.cabinet_id == sa.bindparam("cabinet"),
                   commands.c.status == "issued",
                   commands.c.command_seq > sa.bindparam("after", type_=sa.BigInteger),
                   commands.c.expires_at > sa.bindparam("now", type_=commands.c.expires_at.type))
            .order_by(commands.c.command_seq).limit(100))
_DELIVERED = sa.update(commands).values(
    delivered_at=sa.bindparam("now", type_=commands.c.delivered_at.type)).where(
    commands.c.command_id.in_(sa.bindparam("ids", expanding=True)),
    commands.c.delivered_at.is_(None))


class Commands:
    def __init__(self, engine: sa.Engine, on_issued=None):
        self.engine = engine
        # Called with the cabinet id after a command commits (in-process wake-ups on SQLite;
        # on PostgreSQL the NOTIFY in the transaction wakes every instance, this one included).
        self.on_issued = on_issued

    def issue(self, cabinet_id: str, kind: str, args: dict[str, Any], lifetime_seconds: float,
              actor: str) -> dict[str, Any]:
        size = len(json.dumps(args, ensure_ascii=False).encode())
        if size > MAX_COMMAND_BYTES:
            raise TooLarge(f"args are {size} bytes; a command is at most {MAX_COMMAND_BYTES} "
                           "(send it in parts, e.g. faces in several enroll_faces)")
        issued = utc_now()
        row = {"command_id": str(uuid.uuid4()), "cabinet_id": cabinet_id, "type": kind,
               "args": args, "args_bytes": size, "issued_by": actor, "issued_at": issued,
               "expires_at": issued + timedelta(seconds=lifetime_seconds), "status": "issued"}
        with self.engine.begin() as connection:
            if connection.execute(sa.select(cabinets.c.cabinet_id).where(
                    cabinets.c.cabinet_id == cabinet_id)).first() is None:
                raise NotFound(f"no cabinet {cabinet_id}")
            seq = connection.execute(sa.insert(commands).values(**row).returning(
                commands.c.command_seq)).scalar_one()
            audit.write(connection, actor, f"command:{kind}", cabinet_id,
                        command_id=row["command_id"], args=_summary(kind, args),
                        lifetime_seconds=lifetime_seconds)
            if connection.dialect.name == "postgresql":
                connection.execute(sa.select(sa.func.pg_notify(CHANNEL, cabinet_id)))
        if self.on_issued is not None:
            self.on_issued(cabinet_id)
        return {"command_id": row["command_id"], "seq": seq, "type": kind, "args": args,
                "issued_at": iso(issued), "expires_at": iso(row["expires_at"])}

    def page(self, cabinet_id: str, after: int,
             max_bytes: int | None) -> tuple[list[dict[str, Any]], bool]:
        """The next page of commands newer than `after`, in order, whose JSON fits in
        `max_bytes`; and whether a command waits that this page was too small for (the cabinet
        asked for less for now)."""
        with self.engine.begin() as connection:
            return self.page_in(connection, cabinet_id, after, max_bytes)

    def page_in(self, connection: sa.Connection, cabinet_id: str, after: int,
                max_bytes: int | None) -> tuple[list[dict[str, Any]], bool]:
        """`page`, inside the caller's transaction (a batch's reply shares the batch's)."""
        legacy = max_bytes is None
        limit = LEGACY_COMMAND_BYTES if legacy else max_bytes
        # What the cabinet can ever take: it may ask for less for a while (0 in an
        # acknowledgement, half a page after a reply too large), which only defers a command.
        capacity = LEGACY_COMMAND_BYTES if legacy else CABINET_PAGE_BYTES
        now = utc_now()
        page: list[dict[str, Any]] = []
        used, deferred = REPLY_ENVELOPE_BYTES, False
        rows = connection.execute(_PENDING, {"cabinet": cabinet_id, "after": after,
                                             "now": now}).all()
        for r in rows:
            command = {"seq": r.command_seq, "command_id": r.command_id, "type": r.type,
                       "args": r.args, "issued_at": iso(r.issued_at),
                       "expires_at": iso(r.expires_at)}
            size = len(json.dumps(command, ensure_ascii=False).encode()) + 2
            if used + size <= limit:
                page.append(command)
                used += size
                continue
            if page:
                break  # the next page
            if REPLY_ENVELOPE_BYTES + size > capacity:
                connection.execute(sa.update(commands).values(
                    status="rejected", finished_at=now,
                    detail=f"too_large: {size} bytes; the cabinet takes at most {capacity} "
                           f"bytes of commands in a reply").where(
                    commands.c.command_id == r.command_id))
                continue
            deferred = True
            break
        if page:
            connection.execute(_DELIVERED, {"now": now,
                                            "ids": [c["command_id"] for c in page]})
        return page, deferred

    def get(self, command_id: str) -> dict[str, Any]:
        with self.engine.connect() as connection:
            r = connection.execute(sa.select(commands).where(
                commands.c.command_id == command_id)).first()
        if r is None:
            raise NotFound(f"no command {command_id}")
        return _state(r)

    def recent(self, cabinet_id: str, limit: int) -> list[dict[str, Any]]:
        """A cabinet's newest commands first, with their fates (the back office's list)."""
        with self.engine.connect() as connection:
            rows = connection.execute(sa.select(commands).where(
                commands.c.cabinet_id == cabinet_id).order_by(
                commands.c.command_seq.desc()).limit(limit)).all()
        return [_state(r) for r in rows]


def _state(r: sa.Row) -> dict[str, Any]:
    """A command row as its fate: an issued command past its expiry reads as expired."""
    status = r.status
    if status == "issued" and aware(r.expires_at) <= utc_now():
        status = "expired"
    return {"command_id": r.command_id, "cabinet_id": r.cabinet_id, "type": r.type,
            "args": _summary(r.type, r.args), "status": status, "detail": r.detail,
            "result": r.result, "issued_by": r.issued_by, "issued_at": iso(r.issued_at),
            "expires_at": iso(r.expires_at), "delivered_at": iso(r.delivered_at),
            "finished_at": iso(r.finished_at)}


def _summary(kind: str, args: dict[str, Any]) -> dict[str, Any]:
    """What the audit log keeps of a command's arguments: all of them, except the bulky or
    personal ones (face embeddings are counted, never copied)."""
    if kind == "enroll_faces":
        members = args.get("members") if isinstance(args.get("members"), list) else []
        return {"members": [m.get("member_id") for m in members if isinstance(m, dict)]}
    if len(json.dumps(args)) > 64 * 1024:
        return {"bytes": len(json.dumps(args)), "keys": sorted(args)[:50]}
    return args
