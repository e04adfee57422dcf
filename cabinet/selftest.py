"""`cabinet selftest`: every configured device checked by the running daemon, one line each.

The daemon owns the hardware (GPIO lines and serial ports are exclusive), so the checks run inside
it (POST /api/selftest) and stream back one JSON line per check as it finishes; the `cabinet` tool
prints them as a table with progress. Each failure carries the hint a technician needs. The lock is
cycled only when no session is open, and ends locked whatever happens. A cabinet with several
doors and zones gets a line for each door's lock and switch and each zone's thermometer and relays.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from drivers.scanner import ScannerReader


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    hint: str = ""


@dataclass(frozen=True)
class SelfTestPorts:
    """What the selftest reads and does, and nothing more (it runs on an HTTP thread)."""
    config: Any                                 # cabinet.config.Config
    state: Callable[[], dict[str, Any]]         # the controller's published snapshot
    outputs: Any                                # the relays, read back (controller.Actuators)
    lock_test: Callable[[bool], None]           # the controller's lock-cycle procedure
    store_check: Callable[[], str]              # the database's quick_check, on its thread
    clock_trusted: Callable[[], bool]
    face_key_path: str
    voice: Any = None                           # the voice packs (cabinet/voice_pack.py)


class SelfTest:
    def __init__(self, ports: SelfTestPorts, hardware: Any, data_dir: Path, *,
                 settle_seconds: float = 8.0, sleep: Callable[[float], None] = time.sleep):
        self.p, self.hw, self.data_dir = ports, hardware, data_dir
        self.settle_seconds, self.sleep = settle_seconds, sleep

    def names(self) -> list[str]:
        shelves = [f"shelf {s.id}" for s in self.p.config.shelves.shelf]
        doors, zones = self._doors(), self._zones()
        return [*(f"lock{d}" for d in doors), *(f"door switch{d}" for d in doors), *shelves,
                *(f"temperature sensor{z}" for z in zones),
                *(f"{part} relay{z}" for z in zones for part in ("compressor", "heater")),
                "camera and QR decoding", "face checkout", "scanner",
                *(["voice pack"] if self._pack() is not None else []), "backend",
                "clock", "disk space", "database"]

    def _pack(self):
        return self.p.voice.current() if self.p.voice is not None else None

    def _doors(self) -> dict[int, str]:
        """Door id -> the suffix its lines carry (none on a one-door cabinet)."""
        doors = self.p.config.door_list()
        return {d.id: f" ({d.label})" if len(doors) > 1 else "" for d in doors}

    def _zones(self) -> dict[int, str]:
        zones = self.p.config.zone_list()
        return {z.id: f" ({z.label})" if len(zones) > 1 else "" for z in zones}

    def run(self, *, cycle_lock: bool = True) -> Iterator[dict[str, Any]]:
        """Every check's lines; `cycle_lock` False (an update's health check, with nobody at the
        cabinet) reads the locks without unlocking them."""
        checks = [self._lock if cycle_lock else self._lock_held, self._door, self._shelves, self._thermometer, self._relays,
                  self._camera, self._face, self._scanner, self._voice, self._backend, self._clock,
                  self._disk,
                  self._database]
        for check in checks:
            try:
                results = check()
            except Exception as exc:  # a check that breaks is a failed line, not a failed test
                results = [Check(check.__name__.strip("_"), False,
                                 f"{type(exc).__name__}: {exc}", "see `cabinet logs`")]
            for result in results if isinstance(results, list) else [results]:
                yield asdict(result)

    def _state(self) -> dict[str, Any]:
        return self.p.state()

    # --- the checks ---------------------------------------------------------------------------------
    def _lock(self) -> list[Check]:
        from .checkout import Refused
        doors = self._doors()
        try:
            self.p.lock_test(True)  # refused, on the controller's thread, if a session is open
        except Refused:
            return [Check(f"lock{d}", False, "a session is open: not cycled",
                          "run the selftest when the cabinet is idle") for d in doors.values()]
        try:
            self.sleep(0.6)
            opened = {d["door"]: d["lock_sensed"] for d in self._state()["doors"]}
        finally:
            self.p.lock_test(False)
        self.sleep(0.6)
        closed = {d["door"]: d["lock_sensed"] for d in self._state()["doors"]}
        out = []
        for entry in self.p.config.door_list():
            name = f"lock{doors[entry.id]}"
            if not self.p.outputs.lock.door_locked(entry.id):
                out.append(Check(name, False, "the relay did not return to locked",
                                 "check the relay board; the cabinet is not secure"))
            elif not entry.lock.feedback:
                out.append(Check(name, True, "relay cycled (no feedback contact configured)"))
            elif opened[entry.id] == "unlocked" and closed[entry.id] == "locked":
                out.append(Check(name, True, "relay cycled; the feedback contact followed"))
            else:
                out.append(Check(name, False, f"feedback said {opened[entry.id]} when unlocked, "
                                 f"{closed[entry.id]} when locked",
                                 "check the lock's feedback wire and its feedback_pin; a jammed "
                                 "bolt or a loose strike plate also shows here"))
        return out

    def _lock_held(self) -> list[Check]:
        doors, state = self._doors(), {d["door"]: d["lock_sensed"] for d in self._state()["doors"]}
        out = []
        for entry in self.p.config.door_list():
            name = f"lock{doors[entry.id]}"
            if not self.p.outputs.lock.door_locked(entry.id) and self._state().get("session"):
                out.append(Check(name, True, "unlocked for a session (not cycled)"))
            elif not entry.lock.feedback:
                out.append(Check(name, True, "not cycled (no feedback contact configured)"))
            else:
                out.append(Check(name, state[entry.id] in ("locked", "unlocked"),
                                 f"not cycled; the feedback contact says {state[entry.id]}"))
        return out

    def _door(self) -> list[Check]:
        doors = self._doors()
        out = []
        for door in self._state()["doors"]:
            name, state = f"door switch{doors[door['door']]}", door["state"]
            if state == "unknown":
                out.append(Check(name, False, "no reading",
                                 "check the door switch wire and its pin (door.pin, or the "
                                 "door's [doors.door.switch])"))
            else:
                out.append(Check(name, state == "closed", f"door {state}",
                                 "" if state == "closed" else
                                 "close the door and run the selftest again"))
        return out

    def _shelves(self) -> list[Check]:
        end = time.monotonic() + self.settle_seconds
        while True:
            shelves = {s["shelf"]: s for s in self._state()["shelves"]}
            # A faulted shelf will not settle by waiting: only healthy ones are waited for.
            if all(s["health"] == "fault" or s["stable"] for s in shelves.values()) \
                    or time.monotonic() > end:
                break
            self.sleep(0.25)
        out = []
        for shelf in self.p.config.shelves.shelf:
            s = shelves.get(shelf.id)
            name = f"shelf {shelf.id}"
            if s is None or s["health"] == "fault":
                out.append(Check(name, False, s["fault"] if s else "not reported",
                                 f"check the RS485 cable and power of the load-cell board "
                                 f"(Modbus address {shelf.device_id}, rs485.port "
                                 f"{self.p.config.rs485.port})"))
            elif not s["stable"]:
                out.append(Check(name, False, f"{s['grams']} g, not settling",
                                 "something is moving or touching the shelf; check the tray "
                                 "rests freely on its load cells"))
            else:
                out.append(Check(name, True, f"{s['stable_grams']:.1f} g, stable"))
        return out

    def _thermometer(self) -> list[Check]:
        state = self._state()
        zones = self._zones()
        several = len(zones) > 1
        out = []
        for zone in state["zones"]:
            name = f"temperature sensor{zones[zone['zone']]}"
            t = zone["temperature"]
            fault = state["faults"].get(f"thermometer:{zone['zone']}" if several else "thermometer")
            if t is None or fault:
                out.append(Check(name, False, (fault or {}).get("detail", "no reading"),
                                 "check the sensor's cable and thermometer settings (1-Wire: "
                                 "dtoverlay=w1-gpio in config.txt)"))
                continue
            sane = -30 <= t["celsius"] <= 50
            out.append(Check(name, sane, f"{t['celsius']:.1f} °C",
                             "" if sane else "a reading no cabinet should see: check the sensor"))
        return out

    def _relays(self) -> list[Check]:
        out = []
        zones = self._zones()
        outputs = self.p.outputs.zone_outputs or {
            next(iter(zones)): (self.p.outputs.compressor, self.p.outputs.heater)}
        for zone in self._state()["zones"]:
            relays = dict(zip(("compressor", "heater"), outputs[zone["zone"]]))
            for name, relay in relays.items():
                label = f"{name} relay{zones[zone['zone']]}"
                commanded = zone["relays"][name]
                if commanded is None:
                    out.append(Check(label, True, "none fitted in this zone"))
                    continue
                # Not toggled: the compressor must keep its minimum off time. The output line is
                # read back and compared with what the thermostat commands.
                out.append(Check(label, relay.energised == commanded,
                                 f"{'on' if commanded else 'off'} as commanded "
                                 f"({zone['climate']['mode']})",
                                 f"the {name} output does not follow the thermostat: check the "
                                 f"relay board and {name}.pin"))
        return out

    def _camera(self) -> Check:
        cam = self.hw.camera
        if cam is None:
            return Check("camera and QR decoding", True, "camera disabled in the config")
        latest = cam.latest()
        if latest is None or time.monotonic() - latest[1] > 3:
            return Check("camera and QR decoding", False, "no recent frame",
                         f"check the camera cable and camera.device ({self.p.config.camera.device})")
        from .access.qr_decode import decode
        from .access.qr_render import qr_image

        text = f"selftest-{self.p.config.cabinet.id}"
        ok = decode(qr_image(text, box=4)) == [text]
        frame = latest[2]
        return Check("camera and QR decoding", ok,
                     f"frame {frame.shape[1]}x{frame.shape[0]}; test code "
                     f"{'decoded' if ok else 'NOT decoded'}",
                     "" if ok else "the decoder is broken: reinstall the software")

    def _scanner(self) -> Check:
        fault = self._state()["faults"].get("scanner")
        if fault:
            # The port the reader really opened: a simulation's pty, not the config's default.
            port = next((r.port for r in self.hw.readers if isinstance(r, ScannerReader)),
                        self.p.config.scanner.port)
            cable = ("the simulated scanner is unplugged: POST /sim/plug "
                     '{"device": "scanner"}') if self.hw.sim else \
                "check the scanner's USB cable and scanner.port"
            return Check("scanner", False, fault["detail"], f"{cable} ({port})")
        last = self._state()["last_scan"]
        return Check("scanner", True, "port open" + (f"; last read {last['at']}" if last else
                                                       "; scan any code to see it here"))

    def _voice(self) -> list[Check]:
        """The recorded voice, when a pack is installed: which, and whether it still says every
        message (a software update may have added some: those fall back to espeak-ng, or
        silence in Tibetan). Without a pack, espeak-ng speaks zh and en and there is no line."""
        pack = self._pack()
        if pack is None:
            return []
        missing = pack.missing(self.p.voice.strings)
        said = f"{pack.name or 'unnamed'} ({', '.join(pack.languages)}, " \
               f"{len(pack.manifest['clips'])} clips)"
        if missing:
            return Check("voice pack", False, f"{said}: {len(missing)} missing, e.g. "
                         f"{', '.join(missing[:3])}",
                         "have the missing prompts recorded and send a complete pack "
                         "(tools/voice_pack.py check)")
        return Check("voice pack", True, f"{said}: complete")

    def _backend(self) -> Check:
        sync = self._state()["sync"]
        if not sync["configured"]:
            return Check("backend", True, "none configured (sales queue locally)")
        if sync["last_success_at"]:
            return Check("backend", True, f"last upload {sync['last_success_at']}")
        return Check("backend", False, sync["last_error"] or "no successful upload yet",
                     "check the network, sync.backend_url and the device token")

    def _clock(self) -> Check:
        ok = self.p.clock_trusted()
        return Check("clock", ok, "synchronised" if ok else "not synchronised",
                     "" if ok else "check NTP (timedatectl): until then codes issued before "
                                   "the last trusted time are refused")

    def _disk(self) -> Check:
        usage = shutil.disk_usage(self.data_dir)
        free = usage.free / usage.total
        ok = usage.free > 500 << 20 and free > 0.05
        return Check("disk space", ok, f"{usage.free / 2**30:.1f} GiB free ({free:.0%})",
                     "" if ok else "free space on the SD card (old logs: journalctl --vacuum-size)")

    def _face(self) -> Check:
        face = self._state().get("face", {})
        if not self.p.config.face.enabled:
            return Check("face checkout", True, "off (face.enabled = false)")
        if not face.get("available"):
            return Check("face checkout", False, f"unavailable: {face.get('reason')}",
                         "run tools/setup.sh (it installs the face extra), or set "
                         "face.enabled = false to run with QR codes only")
        model_fault = self._state()["faults"].get("face_model")
        if model_fault:
            return Check("face checkout", False, model_fault["detail"],
                         "reinstall the face extra (tools/setup.sh); the SD card may be failing")
        key_alarm = [a for a in self._state()["alarms"] if a["kind"] == "face_key"]
        if key_alarm:
            return Check("face checkout", False, key_alarm[0]["detail"],
                         f"restore {self.p.face_key_path} from the cabinet's backup, or "
                         "have the backend enrol the members again")
        from .access.face_model import model_files
        missing = [p for p in model_files() if not Path(p).exists()]
        if missing:
            return Check("face checkout", False, f"model file missing: {missing[0]}",
                         "reinstall the face extra: tools/setup.sh")
        paused = face.get("paused") or {}
        return Check("face checkout", True, f"{face.get('members', 0)} member(s) enrolled"
                     + (f"; paused after failed attempts: {', '.join(paused)}" if paused else ""))

    def _database(self) -> Check:
        result = self.p.store_check()
        return Check("database", result == "ok", f"integrity {result}",
                     "" if result == "ok" else "copy /var/lib/cabinet away and call support")
