"""A fault-injecting HTTP proxy to put between a cabinet and a backend: the network and the server
misbehaving in every way the uploader must survive.

Per request, with the given probabilities (seeded, so a failing run can be repeated):
  error500     answer 500 without forwarding
  rate_limit   answer 429 with Retry-After (seconds) without forwarding
  hang         read the request, say nothing for `hang_seconds`, then close
  reset        close the connection with a TCP reset, without forwarding
  truncate     forward, then send the reply's headers and only half of its body
  lost_ack     forward (the backend stores the batch), then drop the reply: the acknowledgement
               is lost and the cabinet must send the same records again

    python -m tools.backend proxy --upstream http://127.0.0.1:8000 --port 8001 \
        --fault lost_ack=0.1 --fault error500=0.05
"""

from __future__ import annotations

import http.client
import random
import socket
import socketserver
import struct
import threading
import time
from collections import Counter
from urllib.parse import urlsplit

FAULTS = ("error500", "rate_limit", "hang", "reset", "truncate", "lost_ack")


class FaultProxy:
    def __init__(self, upstream: str, faults: dict[str, float], *, seed: int = 1,
                 host: str = "127.0.0.1", port: int = 0, hang_seconds: float = 3.0,
                 retry_after: int = 1, paths: tuple[str, ...] = ("/",)):
        unknown = set(faults) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown faults {sorted(unknown)}; known: {', '.join(FAULTS)}")
        if sum(faults.values()) > 1:
            raise ValueError("fault probabilities add up to more than 1")
        up = urlsplit(upstream)
        self.upstream = (up.hostname, up.port or 80)
        self.faults, self.paths = dict(faults), paths
        self.hang_seconds, self.retry_after = hang_seconds, retry_after
        self.rng = random.Random(seed)
        self.counts: Counter = Counter()
        self._lock = threading.Lock()
        self.enabled = True
        proxy = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                proxy._serve(self.connection, self.rfile)

        self.server = socketserver.ThreadingTCPServer((host, port), Handler,
                                                      bind_and_activate=False)
        self.server.daemon_threads = True
        self.server.allow_reuse_address = True
        self.server.handle_error = lambda request, address: None  # resets are the point
        self.server.server_bind()
        self.server.server_activate()
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True,
                                        name="fault-proxy")

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "FaultProxy":
        self._thread.start()
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _choose(self, path: str) -> str | None:
        if not self.enabled or not path.startswith(self.paths):
            return None
        with self._lock:
            roll = self.rng.random()
            for fault, p in self.faults.items():
                if roll < p:
                    self.counts[fault] += 1
                    return fault
                roll -= p
            self.counts["forwarded"] += 1
        return None

    def _serve(self, client: socket.socket, rfile) -> None:
        upstream = None
        try:
            while True:
                request = _read_request(rfile)
                if request is None:
                    return
                method, path, headers, body = request
                fault = self._choose(path)
                if fault == "error500":
                    _reply(client, 500, b'{"error": "injected fault"}')
                    continue
                if fault == "rate_limit":
                    _reply(client, 429, b'{"error": "slow down"}',
                           {"Retry-After": str(self.retry_after)})
                    continue
                if fault == "hang":
                    time.sleep(self.hang_seconds)
                    return
                if fault == "reset":
                    _reset(client)
                    return
                if upstream is None:
                    upstream = http.client.HTTPConnection(*self.upstream, timeout=300)
                forward = {k: v for k, v in headers.items()
                           if k.lower() not in ("connection", "keep-alive", "host")}
                upstream.request(method, path, body=body, headers=forward)
                reply = upstream.getresponse()
                data = reply.read()
                if fault == "lost_ack":
                    _reset(client)
                    return
                extra = {k: v for k, v in reply.getheaders()
                         if k.lower() in ("retry-after", "content-type")}
                if fault == "truncate":
                    _reply(client, reply.status, data, extra, send=len(data) // 2)
                    return
                _reply(client, reply.status, data, extra)
        except (OSError, http.client.HTTPException):
            return
        finally:
            if upstream is not None:
                upstream.close()


def _read_request(rfile):
    line = rfile.readline(65537)
    if not line:
        return None
    try:
        method, path, _ = line.decode("latin-1").split(" ", 2)
    except ValueError:
        return None
    headers = {}
    while True:
        h = rfile.readline(65537)
        if h in (b"\r\n", b"\n", b""):
            break
        name, _, value = h.decode("latin-1").partition(":")
        headers[name.strip()] = value.strip()
    length = int(headers.get("Content-Length", headers.get("content-length", "0")) or 0)
    body = rfile.read(length) if length else None
    return method, path, headers, body


def _reply(client: socket.socket, status: int, body: bytes, headers: dict | None = None,
           send: int | None = None) -> None:
    head = [f"HTTP/1.1 {status} {http.client.responses.get(status, 'Status')}",
            f"Content-Length: {len(body)}"]
    head += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if not any(k.lower() == "content-type" for k in (headers or {})):
        head.append("Content-Type: application/json")
    client.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body[:send])


def _reset(client: socket.socket) -> None:
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()
