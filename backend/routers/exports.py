"""CSV exports for operators (backend/exports.py): sales, inventory, temperature and
adjustments of any period, for one cabinet or the fleet; streamed as read, and each export in
the audit log (they carry shoppers' account ids)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import StreamingResponse

from ..deps import Reader, StorageDep
from ..exports import TABLES, csv_text
from ..protocol import CABINET_ID, Error, Moment
from ..storage.engine import iso
from ..strict_json import StrictRoute

router = APIRouter(prefix="/v1/operator/exports", route_class=StrictRoute, tags=["exports"],
                   responses={401: {"model": Error}, 403: {"model": Error},
                              422: {"model": Error}})


@router.get("/{table}.csv", response_class=StreamingResponse, responses={200: {
    "content": {"text/csv": {}}, "description": "the table, a header row first"}})
def export(table: Literal["sales", "inventory", "temperature", "adjustments"], person: Reader,
           storage: StorageDep,
           since: Annotated[Moment, Query(description="from this time, inclusive")],
           until: Annotated[Moment, Query(description="to this time, exclusive")],
           cabinet_id: Annotated[str | None, Query(pattern=CABINET_ID)] = None):
    """Sales or inventory records (a row per line, with the session, the weighing's flags and
    the total) or raw temperature telemetry (kept for the retention period), created in
    [since, until); or the adjustments operators made in it (a row per line)."""
    if until <= since:
        raise HTTPException(422, "until must be after since")
    storage.record_action(person.username, f"export:{table}", cabinet_id,
                          since=iso(since), until=iso(until))
    kind = TABLES[table][0]
    name = f"{table}-{cabinet_id or 'fleet'}-{since:%Y%m%d}-{until:%Y%m%d}.csv"
    rows = (storage.reviews.adjustments_between(cabinet_id, since, until) if not kind
            else storage.fleet.records_between(kind, cabinet_id, since, until))
    return StreamingResponse(
        csv_text(table, rows),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'})
