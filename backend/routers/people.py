"""People: logging in and out, accounts and roles (admins), API tokens for scripts, and the
audit log of who issued which command and who changed what."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request

from ..deps import Admin, Auditor, Caller, StorageDep, caller
from ..protocol import (AuditList, CommandType, Error, Login, Me, NewToken, NewUser, Token,
                        User, UserChange, UserList, Username)
from ..roles import PERMISSIONS, may, may_issue
from ..strict_json import StrictRoute

router = APIRouter(prefix="/v1", route_class=StrictRoute, tags=["people"],
                   responses={401: {"model": Error}, 403: {"model": Error},
                              422: {"model": Error}})
Person = Annotated[Caller, Depends(caller)]


@router.post("/auth/login", response_model=Token, openapi_extra={"security": []},
             responses={429: {"model": Error}})
def login(body: Login, request: Request, storage: StorageDep) -> Token:
    """A session token (12 hours) for a user name and password. Five wrong passwords for a name
    in 15 minutes lock it (429 with Retry-After) until the window passes."""
    address = request.client.host if request.client else "?"
    return Token(**storage.people.login(body.username, body.password, address))


@router.post("/auth/logout", status_code=204)
def logout(person: Person, storage: StorageDep) -> None:
    """End the token this request carries."""
    storage.people.revoke(person.token)


@router.get("/auth/me", response_model=Me)
def me(person: Person, storage: StorageDep) -> Me:
    """The caller's account, with what its role may do and which commands it may issue."""
    user = next(u for u in storage.people.users() if u["username"] == person.username)
    return Me(**user, permissions=sorted(p for p in PERMISSIONS if may(person.role, p)),
              commands=[c for c in CommandType if may_issue(person.role, c)])


@router.post("/operator/tokens", status_code=201, response_model=Token)
def new_token(body: NewToken, person: Person, storage: StorageDep) -> Token:
    """An API token for a script, with the caller's own role; shown only here."""
    return Token(**storage.people.new_token(person.username, "api", body.name,
                                            body.lifetime_days, actor=person.username))


@router.get("/operator/users", response_model=UserList)
def users(_: Admin, storage: StorageDep) -> UserList:
    return UserList(users=storage.people.users())


@router.post("/operator/users", status_code=201, response_model=User,
             responses={409: {"model": Error}})
def create_user(body: NewUser, person: Admin, storage: StorageDep) -> User:
    return User(**storage.people.create_user(body.username, body.role.value, body.password,
                                             person.username))


@router.patch("/operator/users/{username}", response_model=User,
              responses={404: {"model": Error}})
def change_user(username: Annotated[str, Path(pattern=Username.__metadata__[0].pattern)],
                body: UserChange, person: Admin, storage: StorageDep) -> User:
    """Change a role, set a password (ends the account's logins), or disable an account (ends
    all of its tokens)."""
    return User(**storage.people.change_user(
        username, person.username, role=body.role.value if body.role else None,
        password=body.password, disabled=body.disabled))


@router.get("/operator/audit", response_model=AuditList)
def audit(_: Auditor, storage: StorageDep,
          cabinet_id: Annotated[str | None, Query(max_length=64)] = None,
          actor: Annotated[str | None, Query(max_length=64)] = None,
          limit: Annotated[int, Query(ge=1, le=10000)] = 200) -> AuditList:
    """Who did what, newest first: commands (with their arguments), planogram changes, cabinets,
    enrolments, access codes, accounts and tokens."""
    return AuditList(entries=storage.audit(cabinet_id=cabinet_id, actor=actor, limit=limit))
