"""The fleet for operators: cabinets and their status, registration and enrolment tokens, the
records they sent (by kind), counts, and the hourly rollups the back office charts."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query

from ..deps import Manager, Reader, StorageDep
from ..protocol import (BIGINT_MAX, CABINET_ID, AlarmHistory, CabinetList, ClimateHours,
                        Counts, DeviceToken, Enrolment, Error, Layout, Moment, NewCabinet,
                        RecordList)
from ..strict_json import StrictRoute

router = APIRouter(prefix="/v1/operator", route_class=StrictRoute, tags=["fleet"],
                   responses={401: {"model": Error}, 403: {"model": Error},
                              422: {"model": Error}})
CabinetPath = Annotated[str, Path(pattern=CABINET_ID)]
COLLECTIONS = {"sales": "sale", "inventory": "inventory", "alarms": "alarm",
               "telemetry": "telemetry", "command_results": "command_result",
               "sessions": "session", "notices": "notice", "updates": "update"}


@router.get("/cabinets", response_model=CabinetList)
def cabinets(_: Reader, storage: StorageDep) -> CabinetList:
    """Every cabinet with its last contact, temperature, queue lag and active alarms."""
    return CabinetList(cabinets=storage.fleet.cabinets())


@router.post("/cabinets", status_code=201, response_model=DeviceToken)
def register(body: NewCabinet, person: Manager, storage: StorageDep) -> DeviceToken:
    """Register a cabinet (or replace its token); the device token is shown only here."""
    token = storage.fleet.add_cabinet(body.cabinet_id, actor=person.username)
    return DeviceToken(cabinet_id=body.cabinet_id, device_token=token)


@router.post("/enrolments", status_code=201, response_model=Enrolment)
def enrolment(body: NewCabinet, person: Manager, storage: StorageDep) -> Enrolment:
    """A one-time enrolment token for a cabinet to be provisioned (valid 30 days)."""
    return Enrolment(**storage.fleet.new_enrolment(body.cabinet_id, person.username))


@router.get("/cabinets/{cabinet_id}/counts", response_model=Counts)
def counts(cabinet_id: CabinetPath, _: Reader, storage: StorageDep) -> Counts:
    """How many records of each kind the backend holds for a cabinet."""
    return Counts(counts=storage.fleet.counts(cabinet_id))


@router.get("/cabinets/{cabinet_id}/rollups")
def rollups(cabinet_id: CabinetPath, _: Reader, storage: StorageDep) -> dict[str, Any]:
    """The hourly rollups: sales per product (units, revenue, sales) and climate (samples,
    min/max/mean temperature, door openings)."""
    climate = storage.fleet.climate_by_hour(cabinet_id)
    for hour in climate:
        hour["celsius_mean"] = (round(hour["celsius_sum"] / hour["samples"], 3)
                                if hour["samples"] else None)
    return {"sales": storage.fleet.sales_by_hour(cabinet_id), "climate": climate}


@router.get("/cabinets/{cabinet_id}/climate", response_model=ClimateHours)
def climate(cabinet_id: CabinetPath, _: Reader, storage: StorageDep,
            since: Annotated[Moment, Query(description="from this time, inclusive")],
            until: Annotated[Moment, Query(description="to this time, exclusive")],
            zone: Annotated[int, Query(ge=1, le=8, description="which zone, on a cabinet "
                                       "with several (door openings are zone 1's)")] = 1
            ) -> ClimateHours:
    """Hour by hour in [since, until): samples, minimum, maximum and mean temperature, door
    openings (kept for good, after the raw telemetry is pruned)."""
    if until <= since:
        raise HTTPException(422, "until must be after since")
    hours = (storage.fleet.climate_between(cabinet_id, since, until) if zone == 1
             else storage.zones.climate_between(cabinet_id, zone, since, until))
    for hour in hours:
        hour["celsius_mean"] = (round(hour["celsius_sum"] / hour["samples"], 3)
                                if hour["samples"] else None)
    return ClimateHours(hours=hours)


@router.get("/cabinets/{cabinet_id}/layout", response_model=Layout)
def layout(cabinet_id: CabinetPath, _: Reader, storage: StorageDep) -> Layout:
    """The cabinet's doors (with the shelves behind each) and temperature zones (with their
    doors, food-safety rule and newest reading), as it reported them; empty lists for a
    cabinet with one door and one zone."""
    return Layout(**storage.zones.layout(cabinet_id))


@router.get("/cabinets/{cabinet_id}/alarms", response_model=AlarmHistory)
def alarm_history(cabinet_id: CabinetPath, _: Reader, storage: StorageDep,
                  limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> AlarmHistory:
    """A cabinet's alarms, raised and cleared, newest first (the cabinet page's timeline)."""
    return AlarmHistory(alarms=storage.fleet.alarm_history(cabinet_id, limit))


@router.get("/cabinets/{cabinet_id}/telemetry", response_model=RecordList)
def telemetry(cabinet_id: CabinetPath, _: Reader, storage: StorageDep,
              since: Annotated[Moment, Query(description="from this time, inclusive")],
              until: Annotated[Moment, Query(description="to this time, exclusive")],
              limit: Annotated[int, Query(ge=1, le=20000)] = 5000) -> RecordList:
    """Raw temperature samples (with setpoint, compressor and door) in [since, until), newest
    first; kept for the retention period, the hourly rollups after that."""
    if until <= since:
        raise HTTPException(422, "until must be after since")
    return RecordList(records=storage.fleet.newest("telemetry", cabinet_id, since, until, limit))


@router.get("/{collection}", response_model=RecordList)
def records(collection: Literal["sales", "inventory", "alarms", "telemetry", "command_results",
                                "sessions", "notices", "updates"],
            _: Reader, storage: StorageDep,
            cabinet_id: Annotated[str | None, Query(pattern=CABINET_ID)] = None,
            after_seq: Annotated[int, Query(ge=0, le=BIGINT_MAX)] = 0,
            limit: Annotated[int, Query(ge=1, le=100000)] = 1000) -> RecordList:
    """Records of one kind, in sequence order (per cabinet)."""
    return RecordList(records=storage.fleet.records(COLLECTIONS[collection], cabinet_id,
                                                    after_seq, limit))
