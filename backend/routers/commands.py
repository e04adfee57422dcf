"""Commands for operators: issue one to a cabinet (each person's role says which), follow its
fate (issued, delivered, done or rejected with the reason), enrol a face from photographs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query

from .. import faces
from ..deps import Caller, Manager, Reader, StorageDep, caller
from ..protocol import (CABINET_ID, Command, CommandList, CommandState, CommandType, Error,
                        FaceEnrolment, IssueCommand)
from ..roles import may_issue
from ..strict_json import StrictRoute

router = APIRouter(prefix="/v1/operator", route_class=StrictRoute, tags=["commands"],
                   responses={401: {"model": Error}, 403: {"model": Error},
                              404: {"model": Error}, 422: {"model": Error}})
CabinetPath = Annotated[str, Path(pattern=CABINET_ID)]


@router.post("/cabinets/{cabinet_id}/commands", status_code=201, response_model=Command,
             responses={413: {"model": Error}})
def issue(cabinet_id: CabinetPath, body: IssueCommand, storage: StorageDep,
          person: Annotated[Caller, Depends(caller)]) -> Command:
    """Issue a command to a cabinet (see docs/sync.md for each type's args). A technician may
    issue the service commands, an operator any; the audit log names who."""
    if not may_issue(person.role, body.type):
        raise HTTPException(403, f"a {person.role.value} may not issue {body.type.value}")
    if body.type == CommandType.set_planogram:
        _check_planogram(body.args.get("planogram"))
    return Command(**storage.commands.issue(cabinet_id, body.type.value, body.args,
                                            body.lifetime_seconds, person.username))


def _check_planogram(planogram) -> None:
    """The cabinet's own validation, before the command leaves: a mistake is named now, with
    the cabinet's words, instead of coming back as a rejection. (The shelves' ids are the
    cabinet's config: only it can check those.)"""
    from cabinet.planogram import PlanogramError, from_dict

    try:
        from_dict(planogram, "args.planogram")
    except PlanogramError as exc:
        raise HTTPException(422, str(exc)) from None


@router.get("/cabinets/{cabinet_id}/commands", response_model=CommandList)
def recent(cabinet_id: CabinetPath, _: Reader, storage: StorageDep,
           limit: Annotated[int, Query(ge=1, le=500)] = 20) -> CommandList:
    """A cabinet's newest commands, each with its fate (what the cabinet page follows live)."""
    return CommandList(commands=storage.commands.recent(cabinet_id, limit))


@router.get("/commands/{command_id}", response_model=CommandState)
def command(command_id: Annotated[str, Path(pattern=r"^[0-9a-f-]{36}$")], _: Reader,
            storage: StorageDep) -> CommandState:
    """A command's fate and, once the cabinet has reported it, its result."""
    return CommandState(**storage.commands.get(command_id))


@router.post("/cabinets/{cabinet_id}/faces", status_code=201, response_model=Command)
def enrol_face(cabinet_id: CabinetPath, body: FaceEnrolment, person: Manager,
               storage: StorageDep) -> Command:
    """Enrol a member's face on a cabinet from 1-5 photographs, with the member's consent.
    The backend measures the photographs (dlib, as the cabinet does), drops them, and sends the
    cabinet an enroll_faces command holding the embeddings only."""
    if body.consent is not True:
        raise HTTPException(422, "consent must be true: a face is enrolled only with the "
                                 "member's consent")
    try:
        vectors = faces.embeddings(body.photos)
    except faces.PhotoRefused as exc:
        raise HTTPException(422, str(exc)) from None
    member = {"member_id": body.member_id, "consent": True, "embeddings": vectors}
    return Command(**storage.commands.issue(cabinet_id, "enroll_faces", {"members": [member]},
                                            86400, person.username))
