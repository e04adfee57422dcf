"""Reviews for operators: the sales a cabinet flagged and the unauthorised removals, each with
its record (lines, weighing evidence, candidates), and their resolution as an adjustment that
never edits the record (backend/storage/reviews.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from ..deps import Adjuster, Reader, StorageDep
from ..protocol import CABINET_ID, Adjustment, Error, Resolution, ReviewList
from ..strict_json import StrictRoute

router = APIRouter(prefix="/v1/operator", route_class=StrictRoute, tags=["reviews"],
                   responses={401: {"model": Error}, 403: {"model": Error},
                              404: {"model": Error}, 422: {"model": Error}})


@router.get("/reviews", response_model=ReviewList)
def queue(_: Reader, storage: StorageDep,
          cabinet_id: Annotated[str | None, Query(pattern=CABINET_ID)] = None,
          resolved: bool = False,
          limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> ReviewList:
    """Open reviews, oldest first (or with resolved=true, the resolved ones, newest first)."""
    return ReviewList(reviews=storage.reviews.queue(cabinet_id, resolved, limit),
                      open=storage.reviews.count_open())


@router.post("/cabinets/{cabinet_id}/records/{record_id}/adjustment", status_code=201,
             response_model=Adjustment, responses={409: {"model": Error}})
def resolve(cabinet_id: Annotated[str, Path(pattern=CABINET_ID)],
            record_id: Annotated[str, Path(pattern=r"^[0-9a-f-]{36}$")],
            body: Resolution, person: Adjuster, storage: StorageDep) -> Adjustment:
    """Resolve a sale or an unauthorised removal: the adjustment moves stock and the sales
    figures at the sale's hour; the record stays as the cabinet sent it. Once per record
    (409 after that)."""
    return Adjustment(**storage.reviews.resolve(
        cabinet_id, record_id, body.action, [line.model_dump() for line in body.lines],
        body.note, person.username))
