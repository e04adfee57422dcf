"""Stock for operators: what each cabinet holds against its par levels, the par levels
themselves, the planogram each cabinet reported, and pick lists (what to bring to each cabinet
of a route) from live stock and recent sales velocity (backend/storage/stock.py keeps the
counts)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from ..deps import Adjuster, Reader, StorageDep
from ..protocol import CABINET_ID, Error, ParLevels, PickList, PlanogramReport, StockList
from ..storage.stock import pick_list
from ..strict_json import StrictRoute

router = APIRouter(prefix="/v1/operator", route_class=StrictRoute, tags=["stock"],
                   responses={401: {"model": Error}, 403: {"model": Error},
                              422: {"model": Error}})
CabinetIds = Annotated[list[Annotated[str, Query(pattern=CABINET_ID)]] | None,
                       Query(max_length=1000, description="repeat for several; none: the fleet")]


@router.get("/stock", response_model=StockList)
def products(_: Reader, storage: StorageDep, cabinet_id: CabinetIds = None) -> StockList:
    """Every product at the cabinets: shelf, price, count, par and units sold a day."""
    return StockList(products=storage.stock.products(cabinet_id))


@router.get("/cabinets/{cabinet_id}/planogram", response_model=PlanogramReport,
            responses={404: {"model": Error}})
def planogram(cabinet_id: Annotated[str, Path(pattern=CABINET_ID)], _: Reader,
              storage: StorageDep) -> PlanogramReport:
    """The newest planogram the cabinet reported (at its start, or after one was applied): the
    planogram page's starting point for a set_planogram command."""
    return PlanogramReport(**storage.stock.planogram(cabinet_id))


@router.put("/cabinets/{cabinet_id}/par", response_model=StockList)
def set_par(cabinet_id: Annotated[str, Path(pattern=CABINET_ID)], body: ParLevels,
            person: Adjuster, storage: StorageDep) -> StockList:
    """Set (or with null, remove) par levels of a cabinet's products; the audit log names who."""
    storage.stock.set_par(cabinet_id, body.pars, person.username)
    return StockList(products=storage.stock.products([cabinet_id]))


@router.get("/pick-list", response_model=PickList)
def route_pick_list(_: Reader, storage: StorageDep, cabinet_id: CabinetIds = None,
                    days_ahead: Annotated[float, Query(ge=0, le=60, allow_inf_nan=False,
                                                       description="days until the visit")] = 0
                    ) -> PickList:
    """For the cabinets of a route (or the fleet): each product with a par level and what to
    bring so that it is at par after the sales expected before the visit."""
    return PickList(days_ahead=days_ahead,
                    lines=pick_list(storage.stock.products(cabinet_id), days_ahead))
