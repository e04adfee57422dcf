"""The operators' ad files: stored once by content (sha256), listed, and read back for the
cabinets that fetch them (a playlist sent with set_ads names them by URL and sha256)."""

from __future__ import annotations

import hashlib
from typing import Any

import sqlalchemy as sa

from . import audit
from .dialect import insert
from .engine import iso, utc_now
from .errors import NotFound
from .schema import ads


class Ads:
    def __init__(self, engine: sa.Engine):
        self.engine = engine

    def put(self, name: str, content_type: str, data: bytes, actor: str) -> dict[str, Any]:
        """Store a file (the same content twice is stored once, under its first name)."""
        sha = hashlib.sha256(data).hexdigest()
        with self.engine.begin() as connection:
            connection.execute(insert(connection.dialect.name, ads).values(
                sha256=sha, name=name, content_type=content_type, bytes=len(data), data=data,
                uploaded_by=actor, uploaded_at=utc_now()).on_conflict_do_nothing())
            audit.write(connection, actor, "upload_ad", None, sha256=sha, name=name,
                        bytes=len(data))
        return next(a for a in self.list() if a["sha256"] == sha)

    def list(self) -> list[dict[str, Any]]:
        c = ads.c
        with self.engine.connect() as connection:
            rows = connection.execute(sa.select(c.sha256, c.name, c.content_type, c.bytes,
                                                c.uploaded_by, c.uploaded_at)
                                      .order_by(c.uploaded_at.desc())).all()
        return [{**r._asdict(), "uploaded_at": iso(r.uploaded_at)} for r in rows]

    def get(self, sha: str) -> tuple[str, bytes]:
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(ads.c.content_type, ads.c.data).where(
                ads.c.sha256 == sha)).first()
        if row is None:
            raise NotFound(f"no ad {sha}")
        return row.content_type, bytes(row.data)
