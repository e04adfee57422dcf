"""Reading request bodies strictly: a size limit checked before a byte is read, and JSON without
NaN or Infinity (Python's json module accepts both; no other JSON reader does, and one stored
Infinity once made the whole fleet's listing unreadable). Every refusal names what was wrong:
a 413 with the limit, a 422 with the field's place, a 400 for JSON nested too deep to read.
"""

from __future__ import annotations

import json
import math
from typing import Any, Callable

from fastapi import HTTPException, Request
from fastapi.routing import APIRoute

MAX_BODY_BYTES = 32 * 1024 * 1024


def _non_finite(value: Any, place: tuple) -> tuple | None:
    """The place of the first NaN or Infinity in a parsed document, or None."""
    stack = [(value, place)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return where
        if isinstance(item, dict):
            stack.extend((v, (*where, k)) for k, v in item.items())
        elif isinstance(item, list):
            stack.extend((v, (*where, i)) for i, v in enumerate(item))
    return None


class StrictRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            raw = await self.body()
            found = []  # NaN, Infinity, or a number too large for a float (1e999)

            def number(text: str) -> float:
                value = float(text)
                if math.isinf(value):
                    found.append(text)
                return value
            try:
                document = json.loads(raw, parse_float=number, parse_constant=lambda name:
                                      found.append(name) or float("nan"))
            except RecursionError:
                raise HTTPException(400, "body is JSON nested too deep to read") from None
            except json.JSONDecodeError:
                raise  # FastAPI answers 422 with where the JSON broke
            except ValueError as exc:  # an integer of more than 4 300 digits
                raise HTTPException(400, f"body is not JSON we read: {exc}") from None
            # Walked for the place only when there is one to find (walking every 500-record
            # batch in Python cost a seventh of its CPU).
            place = _non_finite(document, ("body",)) if found else None
            if place is not None:
                # An HTTPException: FastAPI turns anything else raised here into a bare 400.
                raise HTTPException(422, f"{'.'.join(map(str, place))}: NaN and Infinity are "
                                         "not JSON numbers: send a finite number")
            self._json = document
        return self._json


class StrictRoute(APIRoute):
    """Every route of the service reads its body through StrictRequest."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def strict_handler(request: Request):
            return await handler(StrictRequest(request.scope, request.receive))
        return strict_handler


class BodyLimit:
    """ASGI middleware: a body over the limit is refused (413) on its Content-Length before any
    of it is read, or as soon as a chunked body passes the limit."""

    def __init__(self, app, max_bytes: int = MAX_BODY_BYTES):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await self._refuse(send)
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _Oversize()
            return message
        try:
            await self.app(scope, counted, send)
        except _Oversize:
            await self._refuse(send)

    async def _refuse(self, send) -> None:
        body = json.dumps({"error": f"body over {self.max_bytes} bytes"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


class _Oversize(Exception):
    pass
