"""The simulation's handle: `/sim/*` as a route table over the twins, and what a simulated cabinet
brings of its own (a signing key for access codes, a face key beside its data).

`build_hardware` returns it with the devices when the cabinet runs on twins (drivers/sim), None
on a real cabinet; the HTTP server mounts its routes and adds its `snapshot()` to /api/state, and
nothing else in the daemon knows whether it runs on twins. The twins' effects reach the controller
through the real drivers (a door pin, a pty, Modbus frames, a 1-Wire file), exactly as hardware
would; two routes stand in for what a simulation has no peer for: `authorise` (the access modules)
and `remote_unlock` (the backend's command, through the operations table). Each route takes the
JSON body (or the raw bytes of an image), returns the reply, and raises OperationError, the
operations' one error type: "invalid" answers 400, anything else 409.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Any, Callable

from .operations import BACKEND, SIMULATION, get_arg, invalid, number

Route = Callable[[Any, bytes, str], dict[str, Any]]


class SimulationHandle:
    def __init__(self, world: Any, data_dir: Path):
        self.world = world                 # drivers.sim.world.SimulatedCabinet
        self.data_dir = data_dir
        self._controller: Any = None
        self.routes: dict[str, Route] = {
            "authorise": self._authorise, "remote_unlock": self._remote_unlock,
            "camera": self._camera, "scan": self._scan, "door": self._door,
            "shelf": self._shelf, "ambient": self._ambient, "unplug": self._unplug,
            "plug": self._plug, "thermometer": self._thermometer, "lock": self._lock,
            "power": self._power}

    # --- what a simulated cabinet brings --------------------------------------------------------
    def attach(self, controller: Any) -> None:
        """The controller, for the two stand-ins (once it exists: it is built after the devices)."""
        self._controller = controller

    def snapshot(self) -> dict[str, Any]:
        return self.world.snapshot()

    def access_keys(self, keys: dict) -> dict:
        """The backend's keys, and the simulation's own stand-in backend key (id 0), whose
        private half is in DATA/sim/access-signing-key for `cabinet token mint`."""
        import logging

        from .access.codes import ensure_key_pair

        keys = dict(keys)
        if 0 not in keys:
            path, key = ensure_key_pair(self.data_dir / "sim")
            keys[0] = key
            logging.getLogger("cabinetd").info(
                "simulation: access codes signed with %s (key id 0) are accepted", path)
        return keys

    @property
    def face_key(self) -> str:
        return str(self.data_dir / "sim" / "face.key")  # beside its data, not in /etc

    # --- the routes ---------------------------------------------------------------------------------
    def _authorise(self, body: Any, raw: bytes, content_type: str) -> dict[str, Any]:
        """Stands in for the access modules (QR, phone, face): the `authorise` operation."""
        return {"ok": True, **self._controller.request("authorise", _object(body),
                                                       source=SIMULATION)}

    def _remote_unlock(self, body: Any, raw: bytes, content_type: str) -> dict[str, Any]:
        """The backend's remote_unlock command, for a simulation with no backend."""
        return {"ok": True, **self._controller.request("remote_unlock", body, source=BACKEND)}

    def _camera(self, body: Any, raw: bytes, content_type: str) -> dict[str, Any]:
        turn_head = False
        if content_type.startswith("image/"):
            data = raw
        else:
            path = get_arg(body, "path", str)
            turn_head = body.get("turn_head", False)
            if not isinstance(turn_head, bool):
                raise invalid("'turn_head' must be true or false")
            try:
                data = Path(path).read_bytes()
            except OSError as exc:
                raise invalid(f"cannot read image {path!r}: {exc.strerror}") from None
        try:
            self.world.show_image(data, turn_head=turn_head)
        except ValueError as exc:
            raise invalid(str(exc)) from None
        return {"ok": True, "bytes": len(data), "turn_head": turn_head}

    def _scan(self, body: Any, raw: bytes, content_type: str) -> dict[str, Any]:
        body = _object(body)
        if "hex" in body:
            try:
                self.world.scan_bytes(bytes.fromhex(get_arg(body, "hex", str)))
            except ValueError:
                raise invalid("'hex' must be hexadecimal digits") from None
        else:
            text = get_arg(body, "text", str)
            if "\r" in text or "\n" in text:
                raise invalid("'text' is one scanner line: no CR or LF")
            self.world.scan(text)
        return {"ok": True}

    def _door(self, body: Any, raw: bytes, content_type: str) -> dict[str, Any]:
        body = _object(body)
        state = get_arg(body, "state", str)
        if state not in ("open", "closed"):
            raise invalid("'state' must be \"open\" or \"closed\"")
        door = _optional_int(body, "door")
        try:
            self.world.set_door(state == "open", door)
        except KeyError as exc:
            raise invalid(exc.args[0]) from None
        return {"ok": True, "door": state, **({} if door is None else {"door_id": door})}

    def _shelf(self, body: Any, raw: bytes, content_type: str) -> dict[str, Any]:
        body = _object(body)
        shelf = get_arg(body, "shelf", int)
        try:
            if "grams" in body:
                self.world.add_grams(shelf, number(body, "grams"))
            else:
                take, put = body.get("take", {}), body.get("put_back", {})
                if not take and not put:
                    raise invalid("give 'take' or 'put_back' ({sku: count}) or 'grams'")
                for items, sign in ((take, 1), (put, -1)):
                    if not isinstance(items, dict):
                        raise invalid("'take' and 'put_back' map sku to a count")
                    for sku, count in items.items():
                        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
                            raise invalid(f"count for {sku!r} must be a positive integer")
                        self.world.take(shelf, sku, sign * count)
        except (KeyError, ValueError) as exc:
            raise invalid(exc.args[0] if exc.args else str(exc)) from None
        return {"ok": True, "shelf": self.world.snapshot()["shelves"][str(shelf)]}

    def _ambient(self, body: Any, raw: bytes, content_type: str) -> dict[str, Any]:
        celsius = number(_object(body), "celsius")
        if not -50 <= celsius <= 60:
            raise invalid("'celsius' must be between -50 and 60")
        self.world.set_ambient(celsius)
        return {"ok": True, "ambient_celsius": celsius}

    def _unplug(self, body: Any, raw: bytes, content_type: str) -> dict[str, Any]:
        return self._plugging(body, plugged=False)

    def _plug(self, body: Any, raw: bytes, content_type: str) -> dict[str, Any]:
        return self._plugging(body, plugged=True)

    def _plugging(self, body: Any, *, plugged: bool) -> dict[str, Any]:
        device = get_arg(_object(body), "device", str)
        try:
            (self.world.plug if plugged else self.world.unplug)(device)
        except KeyError as exc:
            raise invalid(exc.args[0]) from None
        return {"ok": True, "device": device, "plugged": plugged}

    def _thermometer(self, body: Any, raw: bytes, content_type: str) -> dict[str, Any]:
        fault = _object(body).get("fault")
        if fault not in (None, "power_on", "crc", "all_ff", "gone"):
            raise invalid("'fault' must be null, \"power_on\", \"crc\", \"all_ff\" or \"gone\"")
        zone = _optional_int(body, "zone")
        try:
            self.world.set_thermometer_fault(fault, zone)
        except KeyError as exc:
            raise invalid(exc.args[0]) from None
        return {"ok": True, "fault": fault}

    def _lock(self, body: Any, raw: bytes, content_type: str) -> dict[str, Any]:
        jammed = _object(body).get("jammed")
        try:
            self.world.jam_lock(jammed, _optional_int(body, "door"))
        except KeyError as exc:
            raise invalid(exc.args[0]) from None
        return {"ok": True, "jammed": jammed}

    def _power(self, body: Any, raw: bytes, content_type: str) -> dict[str, Any]:
        # As a power cut: no shutdown, no cleanup, no flush. Answer first so the caller knows.
        threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGKILL)).start()
        return {"ok": True, "power": "cut"}


def _optional_int(body: dict[str, Any], key: str) -> int | None:
    """A door or zone number, when given (None: the first)."""
    value = body.get(key)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise invalid(f"'{key}' must be a whole number")
    return value


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise invalid("body must be a JSON object")
    return body
