"""The daemon's local HTTP server: state for the screen and tools, technicians' operations, and
the simulation's controls.

It listens on loopback only. `GET /api/state` returns the controller's latest published snapshot
(a reference read, no lock, no waiting on the controller). `POST /api/<route>` runs an operation of
the table (cabinet/operations.py) as a technician; calibration, the selftest and speech are
procedures of their own. On twins, `POST /sim/*` is the simulation handle's route table
(cabinet/sim_controls.py); this module knows none of it. Request and response bodies are
documented in docs/http-api.md.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .. import operations
from ..operations import OperationError, get_arg, number

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
MAX_JSON_BYTES = 64 * 1024
# State changes come only from the cabinet itself: a page in any browser on the device (or DNS
# rebinding, which brings a foreign name in Host) must not unlock, delete faces or clear a lockout.
LOCAL_NAMES = ("127.0.0.1", "localhost", "::1")
MAX_IMAGE_BYTES = 16 * 1024 * 1024


# Connections: each holds a thread and a file descriptor. An idle one is closed after
# IDLE_SECONDS (the event stream writes a keep-alive every 15 s, so it is never idle); past
# MAX_CONNECTIONS a new one is closed at once, so the daemon's own files (serial ports, the
# database, 1-Wire) can always be opened: systemd gives the unit LimitNOFILE=4096.
MAX_CONNECTIONS = 200
IDLE_SECONDS = 20


class _BoundedServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)

    def process_request(self, request, client_address):
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except Exception:
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class BadRequest(Exception):
    pass


class Conflict(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


class UiServer:
    def __init__(self, listener: socket.socket, *, controller: Any, sim: Any = None,
                 ads: Any = None, speaker: Any = None, selftest: Any = None,
                 calibration: Any = None, camera: Any = None, setup: Any = None,
                 voice: Any = None, updates: Any = None):
        from .kiosk import Kiosk

        self._controller = controller
        self.sim = sim  # the simulation's handle (cabinet/sim_controls.py), None on a cabinet
        self.setup = setup  # first boot's progress (ui/setup_status.py), None in a simulation
        self.selftest = selftest
        self.calibration = calibration
        self.voice = voice  # the voice packs (cabinet/voice_pack.py): `cabinet voice install`
        self.updates = updates  # software releases (cabinet/update.py): `cabinet update FILE`
        self.kiosk = Kiosk(self.state, published=controller.wait_published, ads=ads,
                           speaker=speaker, camera=camera)
        handler = type("Handler", (_Handler,), {"ui": self})
        # The socket was bound by the caller before anything else started (a port in use is
        # then one line at start, not a traceback after the database was opened).
        self.httpd = _BoundedServer(listener.getsockname()[:2], handler,
                                         bind_and_activate=False)
        self.httpd.socket.close()
        self.httpd.socket = listener
        self.httpd.server_address = listener.getsockname()[:2]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> None:
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="http",
                                        kwargs={"poll_interval": 0.5}, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.kiosk.closing = True  # ends the event streams
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # --- routes -----------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        snapshot = dict(self._controller.snapshot)
        snapshot["setup"] = None if self.setup is None else self.setup.read()
        if self.sim is not None:
            snapshot["simulation"] = self.sim.snapshot()
        return snapshot

    def planogram(self) -> str:
        planogram = self._controller.planogram
        return "null" if planogram is None else planogram.to_json()

    def put_planogram(self, raw: bytes) -> dict[str, Any]:
        """PUT /api/planogram: the body is the planogram itself (`cabinet planogram load`)."""
        if not raw.strip():
            raise BadRequest("body is empty: send the planogram as JSON")
        return self.operate("set_planogram", {"planogram": parse_json(raw)})

    def operate(self, name: str, args: Any, renamed: dict[str, str] | None = None
                ) -> dict[str, Any]:
        """One operation of the table (cabinet/operations.py), asked for by a technician: run on
        the controller thread; its one error type is answered by _Handler._send_refusal."""
        return {"ok": True, **self._controller.request(name, args, renamed=renamed, timeout=30)}

    def api_post(self, name: str, body: Any) -> dict[str, Any]:
        """Technician actions at the cabinet (loopback only)."""
        op = operations.ROUTES.get(name)
        if op is not None:
            if not isinstance(body, dict):
                raise BadRequest("body must be a JSON object")
            return self.operate(op.name, body, op.renamed)
        if name == "calibrate":
            return self._calibrate(body)
        if name == "speak":
            try:
                return self.kiosk.speak(body)
            except ValueError as exc:
                raise BadRequest(str(exc)) from None
        raise LookupError(name)

    def faces(self) -> dict[str, Any]:
        return {**self._controller.snapshot.get("face", {}),
                **self._controller.request("list_faces")}

    def _calibrate(self, body: Any) -> dict[str, Any]:
        """`cabinet calibrate`: the shelf read here (I/O, a second), the step applied by the
        `calibrate` operation on the controller's thread, which refuses it during a session."""
        from drivers.errors import DeviceError

        from ..calibration import CalibrationError

        if self.calibration is None:
            raise BadRequest("no shelves to calibrate")
        try:
            shelf, step = get_arg(body, "shelf", int), get_arg(body, "step", str)
            grams = number(body, "grams") if step == "span" else None
        except OperationError as exc:
            raise BadRequest(str(exc)) from None
        if step not in ("tare", "span"):
            raise BadRequest("step must be 'tare' or 'span'")
        if self._controller.snapshot.get("session") is not None:  # no need to read the shelf
            raise Conflict("busy", "a session is open: calibrate when the cabinet is idle")
        try:
            counts = self.calibration.sample(shelf)
        except CalibrationError as exc:
            raise BadRequest(str(exc)) from None
        except KeyError:
            raise BadRequest(f"no shelf {shelf} in the config") from None
        except DeviceError as exc:
            raise Conflict("device_fault", f"shelf {shelf} does not answer: {exc}") from None
        args = {"shelf": shelf, "step": step, "counts": counts, "grams": grams}
        return {"ok": True, **self._controller.request("calibrate", args)}


def parse_json(raw: bytes) -> Any:
    """A request body as JSON, or BadRequest saying why not: not UTF-8, not JSON, NaN or
    Infinity (not JSON), an integer too long to read, nested too deep."""
    def no_constants(name: str):
        raise ValueError(f"{name} is not a JSON number")
    try:
        return json.loads(raw or b"{}", parse_constant=no_constants)
    except RecursionError:
        raise BadRequest("body is not JSON we read: nested too deep") from None
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise BadRequest(f"body is not JSON: {exc}") from None


class _Handler(BaseHTTPRequestHandler):
    ui: UiServer
    server_version = "cabinetd"
    protocol_version = "HTTP/1.1"
    timeout = IDLE_SECONDS  # a connection that sends nothing for this long is closed
    # Headers and body go out as two writes; with Nagle on, the body waits for the client's
    # delayed ACK (40 ms) on every keep-alive request.
    disable_nagle_algorithm = True

    def log_message(self, fmt, *args):  # the default writes every request to stderr
        log.debug("http %s", fmt % args)

    def _send(self, status: int, payload: Any, content_type: str = "application/json") -> None:
        data = (json.dumps(payload, ensure_ascii=False).encode() if content_type == "application/json"
                else payload)
        self.send_response(status)
        if "charset" not in content_type and (content_type.startswith("text/")
                                              or content_type.endswith("json")):
            content_type += "; charset=utf-8"
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path == "/api/state":
            self._send(200, self.ui.state())
        elif path == "/api/planogram":
            self._send(200, self.ui.planogram().encode(), "application/json; charset=utf-8")
        elif path == "/api/health":
            self._send(200, {"ok": True})
        elif path == "/api/faces":
            self._send(200, self.ui.faces())
        elif path in ("/", "/index.html"):
            self._send(200, self.ui.kiosk.page(), "text/html")
        elif path == "/api/camera.mjpg":
            self._stream_camera()
        elif path == "/favicon.ico":
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif path == "/strings.json":
            self._send(200, (STATIC / "strings.json").read_bytes(), "application/json; charset=utf-8")
        elif path == "/api/events":
            self._stream_events()
        elif path == "/api/screen-qr.svg":
            svg = self.ui.kiosk.screen_qr_svg()
            if svg is None:
                self._send(404, {"error": "no screen code now (a session is open)"})
            else:
                self._send(200, svg, "image/svg+xml")
        elif path == "/api/ads":
            self._send(200, {"ads": self.ui.kiosk.ads_ready()})
        elif path.startswith("/ads/"):
            found = self.ui.kiosk.ad_file(path[5:])
            if found is None:
                self._send(404, {"error": f"no ad {path[5:]!r} ready"})
            else:
                self._send(200, *found)
        else:
            self._send(404, {"error": f"no such resource: {path}"})

    def _stream(self, content_type: str, chunks) -> None:
        """A response that lasts as long as `chunks` goes on, or until the client goes away (a
        page reloaded, the face check over)."""
        self.close_connection = True  # the stream ends with the connection
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        try:
            for chunk in chunks:
                self.wfile.write(chunk)
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass  # gone, or not reading for IDLE_SECONDS

    def _stream_events(self) -> None:
        self._stream("text/event-stream; charset=utf-8", self.ui.kiosk.events())

    def _stream_camera(self) -> None:
        if self.ui.kiosk.camera is None:
            self._send(404, {"error": "this cabinet has no camera"})
            return
        self._stream("multipart/x-mixed-replace; boundary=frame", self.ui.kiosk.camera_frames())

    def _read_body(self, limit: int) -> bytes | None:
        """The body, at most `limit` bytes; None once a 400 or 413 was sent (the connection is
        then closed: an unread body cannot be skipped)."""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:  # rfile.read(-1) would read until the client stops: no limit at all
            self.close_connection = True
            self._send(400, {"error": "bad Content-Length: give the body's size in bytes"})
            return None
        if length > limit:
            self.close_connection = True
            self._send(413, {"error": f"body of {length} bytes is over the {limit}-byte limit"})
            return None
        return self.rfile.read(length) if length else b""

    def _refused_as_foreign(self) -> bool:
        """True (and answered 403) unless the request is from the cabinet's own tools or page:
        Host a loopback name (DNS rebinding brings a foreign one), Origin absent or a loopback
        http origin (a browser names the page that sends a cross-site request)."""
        origin = self.headers.get("Origin")
        problem = None
        try:
            host = urlsplit("//" + (self.headers.get("Host") or "")).hostname
            origin_parts = urlsplit(origin) if origin is not None else None
        except ValueError:  # "[::1" and the like: not a name this cabinet answers to
            host, origin_parts = None, None
        if host not in LOCAL_NAMES:
            problem = f"Host {self.headers.get('Host')!r} is not this cabinet's loopback name"
        elif origin is not None and (origin_parts is None or origin_parts.scheme != "http"
                                     or origin_parts.hostname not in LOCAL_NAMES):
            problem = f"Origin {origin!r} is not this cabinet"
        if problem:
            self.close_connection = True   # its body is not read
            self._send(403, {"error": f"refused: {problem}; state changes come only from the "
                                      "cabinet itself"})
            return True
        return False

    def _send_refusal(self, exc: Exception) -> None:
        """The one answer to a request that did not run: 400 for its arguments (an operation's
        `invalid`, a BadRequest), 409 with the reason for anything refused now."""
        if isinstance(exc, BadRequest) or getattr(exc, "kind", None) == "invalid":
            self._send(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
        else:
            self._send(HTTPStatus.CONFLICT, {"error": str(exc), "reason": exc.reason})

    def do_PUT(self):
        if self._refused_as_foreign():
            return
        path = self.path.split("?", 1)[0]
        if path != "/api/planogram":
            self._send(404, {"error": f"no such resource: {path}"})
            return
        raw = self._read_body(MAX_JSON_BYTES * 16)
        if raw is None:
            return
        try:
            self._send(200, self.ui.put_planogram(raw))
        except (BadRequest, Conflict, OperationError) as exc:
            self._send_refusal(exc)

    def _receive_upload(self, receiver: Any, limit: int, refused: type, what: str) -> None:
        """`cabinet voice install PACK`, `cabinet update FILE`: the file is the body, copied
        into the daemon's own folder as it is read by `receiver.receive(stream, length)`
        (never a path the daemon would open: it cannot see the technician's files, and must not
        open any it is named). `refused`: the receiver's refusal, answered 400."""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if receiver is None or not 0 < length <= limit:
            self.close_connection = True   # the body is not read
            self._send(413 if length > limit else 400, {
                "error": f"this daemon takes no {what}" if receiver is None else
                f"send the {what} as the body: 1 byte to {limit >> 20} MiB"})
            return
        try:
            self._send(200, {"ok": True, **receiver.receive(self.rfile, length)})
        except refused as refusal:
            self.close_connection = True
            self._send(400, {"error": str(refusal),
                             "problems": getattr(refusal, "problems", [str(refusal)])})

    def _stream_selftest(self) -> None:
        """One JSON line per check as it finishes (the `cabinet selftest` progress)."""
        if self.ui.selftest is None:
            self._send(404, {"error": "no selftest in this daemon"})
            return
        selftest = self.ui.selftest

        def lines():
            yield (json.dumps({"checks": selftest.names()}) + "\n").encode()
            for result in selftest.run():
                yield (json.dumps(result, ensure_ascii=False) + "\n").encode()
        self._stream("application/x-ndjson", lines())

    def do_POST(self):
        if self._refused_as_foreign():
            return
        path = self.path.split("?", 1)[0]
        if path == "/api/selftest":
            if self._read_body(MAX_JSON_BYTES) is None:
                return  # refused (400/413): the lock is not cycled
            self._stream_selftest()
            return
        if path in ("/api/voice/install", "/api/update"):
            from ..release import MAX_BUNDLE_BYTES, ReleaseRefused
            from ..voice_pack import MAX_PACK_BYTES, PackRefused
            if path == "/api/update":
                self._receive_upload(self.ui.updates, MAX_BUNDLE_BYTES, ReleaseRefused,
                                     "software release")
            else:
                self._receive_upload(self.ui.voice, MAX_PACK_BYTES, PackRefused, "voice pack")
            return
        if path.startswith("/api/"):
            raw = self._read_body(MAX_JSON_BYTES)
            if raw is None:
                return
            try:
                self._send(200, self.ui.api_post(path[5:], parse_json(raw)))
            except (BadRequest, Conflict, OperationError) as exc:
                self._send_refusal(exc)
            except LookupError:
                self._send(404, {"error": f"no such resource: {path}"})
            return
        if not path.startswith("/sim/"):
            self._send(404, {"error": f"no such resource: {path}"})
            return
        if self.ui.sim is None:
            self._send(404, {"error": "simulation control exists only with cabinetd --simulate"})
            return
        route = self.ui.sim.routes.get(path[5:])
        if route is None:
            self._send(404, {"error": f"no such simulation control: {path}"})
            return
        content_type = (self.headers.get("Content-Type") or "application/json").split(";")[0]
        raw = self._read_body(MAX_IMAGE_BYTES if content_type.startswith("image/")
                              else MAX_JSON_BYTES)
        if raw is None:
            return
        body: Any = None
        if not content_type.startswith("image/"):
            try:
                body = parse_json(raw)
            except BadRequest as exc:
                self._send(400, {"error": str(exc)})
                return
        try:
            result = route(body, raw, content_type)
        except OperationError as exc:
            self._send_refusal(exc)
        except OSError as exc:
            self._send(HTTPStatus.CONFLICT, {"error": str(exc)})
        else:
            self._send(200, result)
