"""The cabinet side: a cabinet posts batches of outbox records and long-polls for commands with
its device token; its first boot trades an enrolment token for that device token."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from ..deps import CabinetDep, StorageDep
from ..protocol import BIGINT_MAX, Ack, Batch, CommandPage, DeviceToken, Enrol, Error
from ..storage.engine import iso, utc_now
from ..strict_json import StrictRoute

router = APIRouter(prefix="/v1", route_class=StrictRoute, tags=["cabinets"],
                   responses={401: {"model": Error}, 422: {"model": Error}})


@router.post("/cabinets/{cabinet_id}/records", response_model=Ack,
             responses={413: {"model": Error}, 429: {"model": Error}})
async def store_records(cabinet_id: CabinetDep, batch: Batch, storage: StorageDep,
                        request: Request) -> Ack:
    """Store a batch of outbox records, idempotent by record id.

    The batch is one transaction, committed before this reply: `stored_through` is the batch's
    highest sequence, and every record up to it is stored except those in `rejected` (malformed:
    the cabinet moves them to its dead-letter table). Sending the same records again stores
    nothing twice. The reply carries pending commands, as many as `max_command_bytes` allows."""
    if batch.cabinet_id != cabinet_id:
        raise _invalid("body.cabinet_id", "does not match the URL's cabinet")
    # The records as sent (the body is parsed once and kept): each is checked on its own, so
    # that one malformed record is refused alone.
    raw = (await request.json())["records"]
    # One thread-pool hop, one connection, one transaction for the batch and the reply's page.
    rejected, commands = await run_in_threadpool(storage.receive, cabinet_id, raw,
                                                 batch.max_command_bytes)
    return Ack(stored_through=max(r["seq"] for r in raw), rejected=rejected, commands=commands,
               server_time=iso(utc_now()))


@router.get("/cabinets/{cabinet_id}/commands", response_model=CommandPage)
async def wait_for_commands(
        cabinet_id: CabinetDep, storage: StorageDep, request: Request,
        after: Annotated[int, Query(ge=0, le=BIGINT_MAX,
                                    description="highest command seq already received")] = 0,
        wait: Annotated[float, Query(ge=0, le=120, allow_inf_nan=False)] = 0,
        max_bytes: Annotated[int | None, Query(
            ge=0, le=BIGINT_MAX, description="the most bytes of commands the reply may hold "
            "(default 4 MiB - 64 KiB)")] = None) -> CommandPage:
    """Long-poll: answers as soon as a command newer than `after` is pending, or after `wait`
    seconds with none. Waiting holds no thread and no database connection."""
    wakeups = request.app.state.wakeups
    end = time.monotonic() + wait
    with wakeups.watch(cabinet_id) as issued:
        while True:
            issued.clear()  # before looking, so that a command committed from now on wakes us
            commands, deferred = await run_in_threadpool(storage.commands.page, cabinet_id,
                                                         after, max_bytes)
            left = end - time.monotonic()
            # A command this page is too small for: answer at once, so that a cabinet growing
            # its page back after a reply too large gets there in a few polls.
            if commands or deferred or left <= 0 or wakeups.closing:
                return CommandPage(commands=commands, server_time=iso(utc_now()))
            timeout = left if wakeups.reliable else min(left, 2.0)
            try:
                await asyncio.wait_for(issued.wait(), timeout)
            except TimeoutError:
                pass


@router.post("/enrol", status_code=201, response_model=DeviceToken, openapi_extra={
    "security": []}, responses={403: {"model": Error}})
def enrol(body: Enrol, storage: StorageDep) -> DeviceToken:
    """A cabinet's first boot trades its one-time enrolment token for its device token."""
    token = storage.fleet.enrol(body.cabinet_id, body.enrolment_token)
    return DeviceToken(cabinet_id=body.cabinet_id, device_token=token)


def _invalid(where: str, message: str):
    from fastapi.exceptions import RequestValidationError
    return RequestValidationError([{"type": "value_error", "loc": tuple(where.split(".")),
                                    "msg": message, "input": None}])
