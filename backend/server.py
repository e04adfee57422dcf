"""Serving the application with uvicorn: in the foreground (`cabinet-backend serve`), or on a
thread with a socket bound beforehand (tests, benchmarks and tools that need a real backend on
loopback and its URL at once)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

try:  # uvicorn's C parser (uvicorn[standard]); h11, in pure Python, where it is missing
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover
    HttpToolsProtocol = None

# Idle keep-alive connections close after this; a long-poll is not idle (it is a request).
KEEP_ALIVE_SECONDS = 20
GRACEFUL_SECONDS = 3  # then long-polls still open are cut


HEADERS_SECONDS = 20  # a connection must have sent a whole request head within this


class _Guarded:
    """What this service adds to uvicorn's HTTP protocols: a deadline for each request's head
    (uvicorn times out a connection only between requests, so one that connects and sends
    nothing, or a header a minute, would be held open for ever; a long-poll in progress is not
    affected: its head arrived), Nagle off, and long-polls answered when the server stops."""

    _head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        _no_delay(transport)
        self._await_head()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._await_head()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.cycle is not None and not self.cycle.response_complete \
                and self._head_deadline is not None:
            self._head_deadline.cancel()  # a request's head is in: it is being answered
            self._head_deadline = None

    def shutdown(self) -> None:
        """The server is stopping (SIGTERM, SIGINT, in every worker): the long-polls in progress
        answer at once (empty), so that they neither hold the shutdown nor are cut with an
        error. The app's lifespan shares its wake-ups through the lifespan state."""
        wakeups = self.app_state.get("wakeups")
        if wakeups is not None:
            wakeups.close()
        super().shutdown()

    def connection_lost(self, exc) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
        super().connection_lost(exc)

    def _await_head(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
        self._head_deadline = self.loop.call_later(HEADERS_SECONDS, self._no_head)

    def _no_head(self) -> None:
        if not self.transport.is_closing() and (self.cycle is None
                                                or self.cycle.response_complete):
            self.transport.close()


def _no_delay(transport) -> None:
    """TCP_NODELAY on the connection. asyncio sets it only on sockets made with IPPROTO_TCP, and a
    listening socket from socket.create_server (or handed over by systemd) has proto 0: uvicorn
    writes a response's head and body separately, so Nagle held every keep-alive reply's body
    for the client's delayed ACK, 40 ms (measured: 44 ms a long-poll with nothing to wait for,
    3 ms with this)."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # uvloop's sets it too


class GuardedH11(_Guarded, H11Protocol):
    pass


if HttpToolsProtocol is not None:
    class GuardedHttpTools(_Guarded, HttpToolsProtocol):
        pass

# httptools parses a request in C: with uvloop (uvicorn's choice when installed), a request cost a
# quarter less CPU than with h11 and asyncio's loop (tools/bench/fleet.py --sequential).
PROTOCOL = GuardedH11 if HttpToolsProtocol is None else GuardedHttpTools


def options(*, certfile: str | None = None, keyfile: str | None = None) -> dict:
    """uvicorn's settings for this service (for uvicorn.Config and uvicorn.run alike)."""
    return {"ssl_certfile": certfile, "ssl_keyfile": keyfile, "http": PROTOCOL,
            "timeout_keep_alive": KEEP_ALIVE_SECONDS,
            "timeout_graceful_shutdown": GRACEFUL_SECONDS, "log_level": "warning",
            "access_log": False, "server_header": False}


class ThreadedServer:
    """uvicorn on its own thread and event loop, listening on a socket bound here (port 0 picks a
    free one): `url` is right as soon as the object exists."""

    def __init__(self, app, *, host: str = "127.0.0.1", port: int = 0,
                 certfile: str | None = None, keyfile: str | None = None):
        self.app = app
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind((host, port))
        self.scheme = "https" if certfile else "http"
        self.server = uvicorn.Server(uvicorn.Config(app, **options(certfile=certfile,
                                                                   keyfile=keyfile)))
        self._thread = threading.Thread(target=self._run, name="backend-http", daemon=True)

    @property
    def url(self) -> str:
        host, port = self.socket.getsockname()[:2]
        return f"{self.scheme}://{'localhost' if self.scheme == 'https' else host}:{port}"

    def _run(self) -> None:
        asyncio.run(self.server.serve(sockets=[self.socket]))

    def start(self, timeout: float = 30) -> "ThreadedServer":
        self._thread.start()
        end = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > end:
                raise RuntimeError("the backend did not start")
            time.sleep(0.01)
        return self

    def close(self) -> None:
        self.app.state.wakeups.close()  # long-polls answer now instead of holding shutdown
        self.server.should_exit = True
        self._thread.join(timeout=10)
        self.socket.close()
