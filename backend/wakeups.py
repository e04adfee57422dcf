"""Long-polls waiting for a cabinet's commands, woken when one is issued: in this process at
once, and across every instance of the service by PostgreSQL's LISTEN/NOTIFY (the issuing
transaction sends `NOTIFY cabinet_commands, '<cabinet id>'`, delivered at commit).

A waiting long-poll costs an asyncio.Event, not a thread or a connection. While the listening
connection is down (PostgreSQL restarting), waiters look at the database every few seconds
instead, so a command is late, never lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from typing import Iterator

from .storage.commands import CHANNEL

log = logging.getLogger("backend.wakeups")
RECHECK_SECONDS = 2.0  # while notifications cannot be trusted


class Wakeups:
    def __init__(self):
        self._waiters: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listener: asyncio.Task | None = None
        self.reliable = True        # False while the PostgreSQL listener is not listening
        self.closing = False

    @property
    def waiting(self) -> int:
        return sum(len(s) for s in self._waiters.values())

    async def start(self, postgres_url: str | None) -> None:
        self._loop = asyncio.get_running_loop()
        if postgres_url is not None:
            self.reliable = False
            self._listener = asyncio.create_task(self._listen(postgres_url), name="listen")

    @contextlib.contextmanager
    def watch(self, cabinet_id: str) -> Iterator[asyncio.Event]:
        event = asyncio.Event()
        self._waiters[cabinet_id].add(event)
        try:
            yield event
        finally:
            waiters = self._waiters[cabinet_id]
            waiters.discard(event)
            if not waiters:
                del self._waiters[cabinet_id]

    def wake(self, cabinet_id: str) -> None:
        """From any thread (a handler in the thread pool issues the command)."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._set, cabinet_id)

    def _set(self, cabinet_id: str) -> None:
        for event in self._waiters.get(cabinet_id, ()):
            event.set()

    def close(self) -> None:
        """Every long-poll answers now (empty) instead of outliving the server."""
        self.closing = True
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._set_all)

    def _set_all(self) -> None:
        for cabinet_id in list(self._waiters):
            self._set(cabinet_id)

    async def stop(self) -> None:
        self.close()
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener

    async def _listen(self, url: str) -> None:
        import psycopg

        url = url.replace("postgresql+psycopg://", "postgresql://")
        while not self.closing:
            try:
                async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self.reliable = True
                    self._set_all()  # anything issued while we were deaf
                    async for note in conn.notifies():
                        self._set(note.payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("command notifications lost (%s); looking at the database every "
                            "%s s until they are back", exc, RECHECK_SECONDS)
            self.reliable = False
            await asyncio.sleep(1)
