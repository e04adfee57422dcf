"""Ads for operators and cabinets: upload a file (stored once by its sha256), list them, and
fetch one by its sha256 (what a set_ads playlist names: no token, since the cabinet's ads thread
fetches plain URLs and keeps a file only when its sha256 matches; ads are shown to the public
anyway)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import Response

from ..deps import Manager, Reader, StorageDep
from ..protocol import AD_TYPES, AdFile, AdList, Error
from ..strict_json import StrictRoute

router = APIRouter(prefix="/v1", route_class=StrictRoute, tags=["ads"],
                   responses={401: {"model": Error}, 403: {"model": Error},
                              422: {"model": Error}})
SHA = r"^[0-9a-f]{64}$"


def _file(ad: dict) -> AdFile:
    return AdFile(**ad, url_path=f"/v1/ads/{ad['sha256']}")


@router.post("/operator/ads", status_code=201, response_model=AdFile, responses={
    413: {"model": Error}}, openapi_extra={"requestBody": {"required": True, "content": {
        t: {"schema": {"type": "string", "format": "binary"}} for t in AD_TYPES}}})
async def upload(request: Request, person: Manager, storage: StorageDep,
                 name: Annotated[str, Query(min_length=1, max_length=200)]) -> AdFile:
    """Upload an ad (the file is the body; its Content-Type one of the screen's kinds)."""
    from starlette.concurrency import run_in_threadpool

    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in AD_TYPES:
        raise HTTPException(422, f"Content-Type {content_type or 'missing'!r}: an ad is one of "
                                 f"{', '.join(AD_TYPES)}")
    data = await request.body()
    if not data:
        raise HTTPException(422, "the body is empty: send the file")
    return _file(await run_in_threadpool(storage.ads.put, name, content_type, data,
                                         person.username))


@router.get("/operator/ads", response_model=AdList)
def library(_: Reader, storage: StorageDep) -> AdList:
    """Every ad uploaded, newest first."""
    return AdList(ads=[_file(a) for a in storage.ads.list()])


@router.get("/ads/{sha256}", response_class=Response, openapi_extra={"security": []},
            responses={200: {"content": {t: {} for t in AD_TYPES}}, 404: {"model": Error}})
def fetch(sha256: Annotated[str, Path(pattern=SHA)], storage: StorageDep) -> Response:
    """An ad's file by its sha256 (cached for good: the address is the content)."""
    content_type, data = storage.ads.get(sha256)
    return Response(data, media_type=content_type, headers={
        "Cache-Control": "public, max-age=31536000, immutable",
        "X-Content-Type-Options": "nosniff"})
