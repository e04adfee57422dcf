"""Access codes: signed QR texts a cabinet accepts offline (cabinet/access/codes.py), minted with
the backend's Ed25519 key for a shopper or a technician."""

from __future__ import annotations

import time

from fastapi import APIRouter, HTTPException, Request

from ..deps import Manager, StorageDep
from ..protocol import AccessCode, AccessCodeRequest, Error
from ..storage.engine import from_unix, iso
from ..strict_json import StrictRoute

router = APIRouter(prefix="/v1/operator", route_class=StrictRoute, tags=["access codes"],
                   responses={401: {"model": Error}, 403: {"model": Error},
                              422: {"model": Error}})


@router.post("/access-codes", status_code=201, response_model=AccessCode)
def mint(body: AccessCodeRequest, person: Manager, request: Request,
         storage: StorageDep) -> AccessCode:
    """Mint a signed access code (the QR's text) for an account."""
    from cabinet.access.codes import mint as mint_code

    key, key_id = request.app.state.signing_key, request.app.state.key_id
    if key is None:
        raise HTTPException(422, "this backend has no signing key ([access_codes] signing_key)")
    issued = int(time.time())
    try:
        code = mint_code(key, key_id=key_id, audience=body.audience, subject=body.subject,
                         role=body.role, issued_at=issued, lifetime_seconds=body.lifetime_seconds)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    storage.record_action(person.username, "access_code", None, audience=body.audience,
                          subject=body.subject, role=body.role,
                          lifetime_seconds=body.lifetime_seconds)
    from cabinet.access.qr_render import qr_svg

    return AccessCode(code=code, key_id=key_id, issued_at=iso(from_unix(issued)),
                      expires_at=iso(from_unix(issued + body.lifetime_seconds)),
                      qr_svg=qr_svg(code))
