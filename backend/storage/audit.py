"""The audit log: who did what, written in the same transaction as the change it records, so an
entry exists exactly when the change does."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from .engine import iso, utc_now
from .schema import audit


def write(connection: sa.Connection, actor: str, action: str, cabinet_id: str | None = None,
          **detail: Any) -> None:
    connection.execute(sa.insert(audit).values(at=utc_now(), actor=actor, action=action,
                                               cabinet_id=cabinet_id, detail=detail))


def entries(engine: sa.Engine, *, cabinet_id: str | None = None, actor: str | None = None,
            limit: int = 200) -> list[dict[str, Any]]:
    query = sa.select(audit).order_by(audit.c.id.desc()).limit(limit)
    if cabinet_id is not None:
        query = query.where(audit.c.cabinet_id == cabinet_id)
    if actor is not None:
        query = query.where(audit.c.actor == actor)
    with engine.connect() as connection:
        return [{"at": iso(r.at), "actor": r.actor, "action": r.action,
                 "cabinet_id": r.cabinet_id, "detail": r.detail}
                for r in connection.execute(query)]
