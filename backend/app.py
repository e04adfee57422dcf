"""The operators' backend as an ASGI application (FastAPI): the routers, the errors they answer
with, and what lives as long as the process (the storage, the long-polls' wake-ups, retention).

The service keeps no state of its own between requests (but a 30 s memory of device tokens it has
checked): every fact is in the database, so several workers or instances may serve one PostgreSQL
(wake-ups cross instances by LISTEN/NOTIFY).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
from pathlib import Path
from typing import Any

import anyio.to_thread
import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException  # FastAPI's own and Starlette's (404, 405)

from . import alerts
from .alerts import AlertSettings
from .routers import (access_codes, ads, alert_rules, cabinets, commands, exports, fleet, office,
                      people, reviews, sales, stock)
from .storage import Storage
from .storage.errors import Conflict, Forbidden, LoginRefused, NotFound, TooLarge
from .strict_json import MAX_BODY_BYTES, BodyLimit
from .wakeups import Wakeups

log = logging.getLogger("backend")
VERSION = "2"
DESCRIPTION = """The contract between smart vending cabinets and their operators' backend.

Cabinet side (a device token per cabinet): post batches of outbox records, long-poll for commands.
Operator side (a person's token, from POST /v1/auth/login or an API token): the fleet, records,
commands, access codes, people and the audit log, each by role. Times are UTC ISO-8601; money is
integer fen; weights are grams. Errors are `{"error": "..."}`, with `fields` when a request did
not validate. Generated from backend/protocol.py; tests/test_backend_api.py keeps
backend/openapi.json equal to it."""


def create_app(storage: Storage, *, signing_key=None, key_id: int = 0,
               max_body_bytes: int = MAX_BODY_BYTES,
               telemetry_retention_days: float | None = None,
               alert_settings: AlertSettings | None = AlertSettings()) -> FastAPI:
    """The application over `storage`; alerts are evaluated and sent every
    `alert_settings.evaluate_seconds` (None: not by this process)."""
    wakeups = Wakeups()
    storage.commands.on_issued = wakeups.wake

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        # As many threads at once as the pool has connections: more would only queue for one
        # (and convoy on the GIL), fewer would leave connections idle.
        anyio.to_thread.current_default_thread_limiter().total_tokens = storage.engine.pool.size()
        await wakeups.start(storage.url if storage.dialect == "postgresql" else None)
        pruning = (asyncio.create_task(_prune(storage, telemetry_retention_days))
                   if telemetry_retention_days else None)
        alerting = (asyncio.create_task(alerts.run(storage, alert_settings))
                    if alert_settings else None)
        # Everything made so far lives as long as the process: out of the collector's sight,
        # a full collection during a large reply (the fleet's 1 000 cabinets) takes a few ms
        # instead of 60-90 (p95 of that reply 149 -> 68 ms, tools/bench/backoffice.py).
        gc.freeze()
        # In the lifespan state, the server's protocol (backend/server.py) finds the wake-ups
        # to answer the long-polls with when the server stops.
        yield {"wakeups": wakeups}
        for task in (pruning, alerting):
            if task is not None:
                task.cancel()
        await wakeups.stop()

    app = FastAPI(title="Cabinet sync and operator API", version=VERSION,
                  description=DESCRIPTION, lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.storage, app.state.wakeups = storage, wakeups
    app.state.signing_key, app.state.key_id = signing_key, key_id
    # fleet last: its GET /v1/operator/{collection} would otherwise shadow /users and /audit.
    for module in (cabinets, people, commands, access_codes, exports, sales, stock, reviews,
                   alert_rules, ads, fleet):
        app.include_router(module.router)
    office.mount(app)
    _errors(app)
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    return app


def _errors(app: FastAPI) -> None:
    def reply(status: int, message: str, **extra: Any) -> JSONResponse:
        headers = extra.pop("headers", None)
        return ErrorResponse({"error": message, **extra}, status_code=status, headers=headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        return reply(exc.status_code, str(exc.detail), headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        fields = [{"loc": [str(p) for p in e["loc"]], "msg": e["msg"]} for e in exc.errors()]
        words = "; ".join(f"{'.'.join(f['loc'])}: {f['msg']}" for f in fields[:5])
        return reply(422, words or "the request is not valid", fields=fields)

    statuses = {NotFound: 404, Forbidden: 403, Conflict: 409, TooLarge: 413}
    for kind, status in statuses.items():
        app.add_exception_handler(kind, lambda request, exc, s=status: reply(s, str(exc)))

    @app.exception_handler(sa.exc.OperationalError)
    @app.exception_handler(sa.exc.InterfaceError)
    async def database_unavailable(request: Request, exc: sa.exc.DBAPIError):
        # PostgreSQL restarting or unreachable, SQLite locked past its timeout: the request did
        # nothing (its transaction rolled back); the caller tries again.
        log.warning("database unavailable for %s %s: %s", request.method, request.url.path,
                    str(exc.orig).strip().splitlines()[0] if exc.orig else exc)
        return reply(503, "the database is unavailable; try again shortly",
                     headers={"Retry-After": "5"})

    @app.exception_handler(LoginRefused)
    async def refused(request: Request, exc: LoginRefused):
        if exc.retry_after is not None:
            return reply(429, str(exc), headers={"Retry-After": str(exc.retry_after)})
        return reply(401, str(exc))


class ErrorResponse(JSONResponse):
    """An error names what was sent, which may hold half a surrogate pair (JSON's "\\ud800"
    reads as one, and UTF-8 cannot carry it): written as ASCII with escapes, it always goes."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False).encode()


async def _prune(storage: Storage, days: float) -> None:
    """Raw telemetry older than `days` goes every hour (its hourly rollup stays)."""
    while True:
        try:
            removed = await run_in_threadpool(storage.fleet.prune_telemetry, days)
            if removed:
                log.info("retention: %d telemetry records older than %s days removed", removed,
                         days)
        except Exception:
            log.exception("retention failed; trying again in an hour")
        await asyncio.sleep(3600)


def from_settings(settings) -> FastAPI:
    """The application for a Settings (backend/config.py): its storage, signing key, limits."""
    key = None
    if settings.signing_key:
        from cabinet.access.codes import read_private_key
        key = read_private_key(settings.signing_key)
    storage = Storage(settings.database_url, pool_size=settings.pool_size)
    password = None
    if settings.smtp_password_file:
        password = Path(settings.smtp_password_file).read_text().strip()
    return create_app(storage, signing_key=key, key_id=settings.key_id,
                      max_body_bytes=settings.max_body_bytes,
                      telemetry_retention_days=settings.telemetry_retention_days,
                      alert_settings=AlertSettings(
                          smtp_host=settings.smtp_host, smtp_port=settings.smtp_port,
                          smtp_from=settings.smtp_from, smtp_starttls=settings.smtp_starttls,
                          smtp_username=settings.smtp_username, smtp_password=password,
                          evaluate_seconds=settings.alert_evaluate_seconds))


def from_environment() -> FastAPI:
    """uvicorn's factory for worker processes (`serve` with workers > 1): the config file named
    by CABINET_BACKEND_CONFIG."""
    from .config import load
    return from_settings(load())
