"""Sales figures for the back office's charts, from the hourly rollups (backend/storage/
ingest.py keeps them in the batch's transaction): revenue and units by day, by hour of the day,
by weekday and hour (the heat map), by product (top sellers first) and by cabinet, for a period,
in the operator's time zone. The rollups are UTC hours; days and hours are the zone's."""

from __future__ import annotations

from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, HTTPException, Query

from ..deps import Reader, StorageDep
from ..protocol import CABINET_ID, Error, Moment, RecordList, SalesSummary
from ..storage.engine import aware, iso
from ..strict_json import StrictRoute

router = APIRouter(prefix="/v1/operator/sales", route_class=StrictRoute, tags=["sales"],
                   responses={401: {"model": Error}, 403: {"model": Error},
                              422: {"model": Error}})


@router.get("/summary", response_model=SalesSummary)
def summary(_: Reader, storage: StorageDep,
            since: Annotated[Moment, Query(description="from this time, inclusive")],
            until: Annotated[Moment, Query(description="to this time, exclusive")],
            tz: Annotated[str, Query(max_length=64, description="an IANA zone, for days and "
                                     "hours")] = "Asia/Shanghai",
            cabinet_id: Annotated[str | None, Query(pattern=CABINET_ID)] = None) -> SalesSummary:
    """Revenue (fen) and units sold in [since, until), whole hours (a sale counts in the hour
    it was recorded), for one cabinet or the fleet. Compare two periods with two calls."""
    if until <= since:
        raise HTTPException(422, "until must be after since")
    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise HTTPException(422, f"tz: unknown time zone {tz!r} (e.g. Asia/Shanghai, UTC)") \
            from None
    hours, products, cabinets = storage.fleet.sales_summary(cabinet_id, since, until)
    days: dict[str, list[int]] = {}
    of_day = [[0, 0] for _ in range(24)]
    heat = [[0] * 24 for _ in range(7)]
    for hour, units, revenue in hours:
        local = aware(hour).astimezone(zone)
        day = days.setdefault(local.date().isoformat(), [0, 0])
        day[0] += revenue
        day[1] += units
        of_day[local.hour][0] += revenue
        of_day[local.hour][1] += units
        heat[local.weekday()][local.hour] += revenue
    return SalesSummary(
        since=iso(since), until=iso(until), tz=tz,
        revenue_fen=sum(r for _, _, r in hours), units=sum(u for _, u, _ in hours),
        by_day=[{"day": d, "revenue_fen": r, "units": u} for d, (r, u) in sorted(days.items())],
        by_hour_of_day=[{"hour": h, "revenue_fen": r, "units": u}
                        for h, (r, u) in enumerate(of_day)],
        weekday_hour_revenue_fen=heat, by_product=products, by_cabinet=cabinets)


@router.get("/transactions", response_model=RecordList)
def transactions(_: Reader, storage: StorageDep,
                 since: Annotated[Moment, Query(description="from this time, inclusive")],
                 until: Annotated[Moment, Query(description="to this time, exclusive")],
                 cabinet_id: Annotated[str | None, Query(pattern=CABINET_ID)] = None,
                 limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> RecordList:
    """The sales recorded in [since, until), newest first, each with its lines, shelves'
    weighing evidence and flags (the sales page's list)."""
    if until <= since:
        raise HTTPException(422, "until must be after since")
    return RecordList(records=storage.fleet.newest("sale", cabinet_id, since, until, limit))
