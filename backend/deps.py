"""FastAPI dependencies: the storage, the calling cabinet (its device token), the calling person
(a bearer token and the permission the route needs)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from .protocol import CABINET_ID, Role
from .roles import may
from .storage import Storage

bearer = HTTPBearer(auto_error=False, description="a device token (cabinets) or a person's "
                    "token (POST /v1/auth/login, or an API token)")


def get_storage(request: Request) -> Storage:
    return request.app.state.storage


StorageDep = Annotated[Storage, Depends(get_storage)]
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def _token(credentials: HTTPAuthorizationCredentials | None) -> str:
    if credentials is None or not credentials.credentials:
        raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
    return credentials.credentials


async def cabinet(storage: StorageDep, credentials: Credentials,
                  cabinet_id: Annotated[str, Path(pattern=CABINET_ID)]) -> str:
    """The cabinet of the URL, if the token is its own: cabinet A's token never opens B.

    Async, with the token believed for 30 s once checked (backend/storage/fleet.py): every
    upload and long-poll presents it, and a thread-pool hop and a query each time were a third
    of an upload's cost."""
    token = _token(credentials)
    if not storage.fleet.recently_verified(cabinet_id, token) and \
            not await run_in_threadpool(storage.fleet.authenticate, cabinet_id, token):
        raise HTTPException(401, "unknown cabinet or wrong device token")
    return cabinet_id


CabinetDep = Annotated[str, Depends(cabinet)]


@dataclass(frozen=True)
class Caller:
    username: str
    role: Role
    token: str

    def __post_init__(self):
        object.__setattr__(self, "role", Role(self.role))


def caller(storage: StorageDep, credentials: Credentials) -> Caller:
    token = _token(credentials)
    found = storage.people.identify(token)
    if found is None:
        raise HTTPException(401, "unknown or expired token: log in again",
                            headers={"WWW-Authenticate": "Bearer"})
    return Caller(*found, token=token)


def allowed(permission: str):
    """A dependency: the caller, if their role has `permission`; else 403 saying which."""
    def check(person: Annotated[Caller, Depends(caller)]) -> Caller:
        if not may(person.role, permission):
            raise HTTPException(403, f"a {person.role.value} may not do this "
                                     f"(needs the {permission} permission)")
        return person
    return check


Reader = Annotated[Caller, Depends(allowed("read"))]
Manager = Annotated[Caller, Depends(allowed("fleet"))]
Adjuster = Annotated[Caller, Depends(allowed("adjust"))]
Auditor = Annotated[Caller, Depends(allowed("audit"))]
Admin = Annotated[Caller, Depends(allowed("people"))]
