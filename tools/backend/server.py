"""The reference backend's HTTP server (stdlib ThreadingHTTPServer; TLS when given a certificate).

Cabinet side (bearer device token): POST /v1/cabinets/{id}/records, GET /v1/cabinets/{id}/commands.
Operator side (bearer operator token): /v1/operator/... . tools/backend/openapi.yaml is the contract.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .service import Backend, Invalid, TooLarge, now_iso

log = logging.getLogger("backend")
MAX_BODY = 32 * 1024 * 1024


class BackendServer:
    def __init__(self, backend: Backend, *, operator_token: str, host: str = "127.0.0.1",
                 port: int = 0, certfile: str | None = None, keyfile: str | None = None,
                 max_body: int = MAX_BODY, on_exchange=None):
        # on_exchange(request, reply): every request and its answer, for tests that check real
        # traffic against openapi.yaml.
        self.backend = backend
        handler = type("Handler", (_Handler,), {"backend": backend, "max_body": max_body,
                                                "operator_token": operator_token,
                                                "on_exchange": staticmethod(on_exchange)
                                                if on_exchange else None})
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self.scheme = "http"
        if certfile:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(certfile, keyfile)
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
            self.scheme = "https"
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="backend-http",
                                        daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"{self.scheme}://{'localhost' if self.scheme == 'https' else host}:{port}"

    def start(self) -> "BackendServer":
        self._thread.start()
        return self

    def close(self) -> None:
        self.backend.close()  # long-polls answer now instead of outliving the server
        self.httpd.shutdown()
        self.httpd.server_close()


class HttpError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _int_param(query: dict, name: str, default: int, low: int, high: int) -> int:
    raw = query.get(name, [str(default)])[0]
    try:
        value = int(float(raw)) if name == "wait" else int(raw)
    except ValueError:
        raise HttpError(400, f"{name} must be a number") from None
    if not low <= value <= high:
        raise HttpError(400, f"{name} must be {low} to {high}")
    return value


class _Handler(BaseHTTPRequestHandler):
    backend: Backend
    operator_token: str
    max_body: int
    on_exchange = None
    _raw_body = b""
    protocol_version = "HTTP/1.1"
    server_version = "cabinet-backend"
    # Headers and body go out as two writes; with Nagle on, the body waits for the client's
    # delayed ACK (40 ms) on every keep-alive request.
    disable_nagle_algorithm = True

    def log_message(self, fmt, *args):
        log.debug("%s " + fmt, self.address_string(), *args)

    def _send(self, status: int, payload: Any, headers: dict | None = None) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _bearer(self) -> str:
        header = self.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            raise HttpError(401, "missing bearer token")
        return header[7:].strip()

    def _body(self) -> Any:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:  # rfile.read(-1) would read, unauthenticated, until the client stops
            self.close_connection = True
            raise HttpError(400, "bad Content-Length")
        if length > self.max_body:
            self.close_connection = True  # the body is not read: the connection cannot go on
            raise HttpError(413, f"body over {self.max_body} bytes")
        raw = self.rfile.read(length) if length else b""
        self._raw_body = raw
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise HttpError(400, f"body is not JSON: {exc}") from None
        except RecursionError:
            raise HttpError(400, "body is not JSON we read: nested too deep") from None

    def _route(self, method: str) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        try:
            status, payload = self._dispatch(method, url.path, query)
        except HttpError as exc:
            status, payload = exc.status, {"error": str(exc)}
        except TooLarge as exc:
            status, payload = 413, {"error": str(exc)}
        except Invalid as exc:
            status, payload = 422, {"error": str(exc)}
        except LookupError as exc:
            status, payload = 404, {"error": str(exc).strip("'")}
        except PermissionError as exc:
            status, payload = 403, {"error": str(exc)}
        except Exception as exc:  # a bug or the database: say 500, and the cabinet will retry
            log.exception("request failed")
            status, payload = 500, {"error": f"{type(exc).__name__}"}
        if self.on_exchange is not None:
            self.on_exchange({"method": method, "path": url.path, "query": query,
                              "headers": dict(self.headers), "body": self._raw_body},
                             {"status": status, "body": json.dumps(payload).encode()})
        try:
            self._send(status, payload)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_GET(self):
        self._route("GET")

    def do_POST(self):
        self._route("POST")

    def _dispatch(self, method: str, path: str, query: dict) -> tuple[int, Any]:
        b = self.backend
        cabinet = re.fullmatch(r"/v1/cabinets/([A-Za-z0-9_.-]{1,64})/(records|commands)", path)
        if cabinet:
            cabinet_id, what = cabinet.groups()
            if not b.authenticate(cabinet_id, self._bearer()):
                raise HttpError(401, "unknown cabinet or wrong device token")
            if what == "records" and method == "POST":
                return 200, b.store_batch(cabinet_id, self._body())
            if what == "commands" and method == "GET":
                after = _int_param(query, "after", 0, 0, 2 ** 62)
                wait = _int_param(query, "wait", 0, 0, 120)
                max_bytes = (None if "max_bytes" not in query
                             else _int_param(query, "max_bytes", 0, 0, 2 ** 40))
                return 200, {"commands": b.wait_for_commands(cabinet_id, after, wait, max_bytes),
                             "server_time": now_iso()}
            raise HttpError(405, f"{method} not allowed on {path}")
        if path == "/v1/enrol" and method == "POST":
            body = self._body()
            if not isinstance(body, dict):
                raise Invalid("body must be an object")
            return 201, {"cabinet_id": body.get("cabinet_id"),
                         "device_token": b.enrol(body.get("cabinet_id"),
                                                 body.get("enrolment_token"))}
        if not path.startswith("/v1/operator/"):
            raise HttpError(404, f"no such resource: {path}")
        if not secrets.compare_digest(self._bearer(), self.operator_token):
            raise HttpError(401, "wrong operator token")
        rest = path[len("/v1/operator/"):]
        if rest == "cabinets" and method == "GET":
            return 200, {"cabinets": b.cabinets()}
        if rest == "cabinets" and method == "POST":
            body = self._body()
            cabinet_id = body.get("cabinet_id") if isinstance(body, dict) else None
            return 201, {"cabinet_id": cabinet_id, "device_token": b.add_cabinet(cabinet_id)}
        if rest == "enrolments" and method == "POST":
            body = self._body()
            return 201, b.new_enrolment(body.get("cabinet_id") if isinstance(body, dict) else None)
        if rest in ("sales", "inventory", "alarms", "telemetry", "command_results") \
                and method == "GET":
            kind = {"sales": "sale", "alarms": "alarm", "command_results": "command_result"}.get(
                rest, rest)
            return 200, {"records": b.records(
                kind, query.get("cabinet_id", [None])[0],
                _int_param(query, "after_seq", 0, 0, 2 ** 62),
                _int_param(query, "limit", 1000, 1, 100000))}
        match = re.fullmatch(r"cabinets/([A-Za-z0-9_.-]{1,64})/faces", rest)
        if match and method == "POST":
            body = self._body()
            if not isinstance(body, dict):
                raise Invalid("body must be an object")
            return 201, b.enrol_face(match.group(1), body.get("member_id"), body.get("consent"),
                                     body.get("photos"))
        match = re.fullmatch(r"cabinets/([A-Za-z0-9_.-]{1,64})/(commands|counts)", rest)
        if match and match.group(2) == "commands" and method == "POST":
            body = self._body()
            if not isinstance(body, dict):
                raise Invalid("body must be an object")
            return 201, b.issue_command(match.group(1), body.get("type"), body.get("args", {}),
                                        body.get("lifetime_seconds", 60))
        if match and match.group(2) == "counts" and method == "GET":
            return 200, {"counts": b.counts(match.group(1))}
        match = re.fullmatch(r"commands/([0-9a-f-]{36})", rest)
        if match and method == "GET":
            return 200, b.command(match.group(1))
        if rest == "access-codes" and method == "POST":
            body = self._body()
            if not isinstance(body, dict):
                raise Invalid("body must be an object")
            return 201, b.mint_code(body.get("audience"), body.get("subject"),
                                    body.get("role", "shopper"), body.get("lifetime_seconds", 90))
        raise HttpError(404, f"no such resource: {path}")
