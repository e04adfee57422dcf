"""The simulated cabinet: every twin wired together, and the controls that people and tests use.

It owns the pseudo-terminals, the Modbus peer with its shelf models, the fake 1-Wire tree fed by the
thermal model, the scanner pty and the image-file camera, and it drives the door switch through the
gpiozero MockFactory pin. The daemon's drivers are built on the paths it publishes and cannot tell it
from hardware. All controls are safe to call from any thread.

The physical world outlives the daemon, as a real cabinet's contents outlive a power cut: what is on
the shelves, the door and the room are saved to `world.json` on every change and restored when the
simulation starts again in the same folder.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .camera import SimulatedCamera, decode_image
from .onewire import OneWireTree
from .pty import PtyCable, PtyPort
from .shelf_server import ModbusPeer, ShelfModel
from .thermal import ThermalModel

log = logging.getLogger(__name__)

DEVICES = ("shelves", "shelf_peer", "shelf:N", "scanner", "thermometer", "thermometer:N",
           "camera")
DEFAULT_SENSOR_ID = "28-00000a1b2c3d"


@dataclass(frozen=True)
class SimDoor:
    door: int
    pin: int
    pull_up: bool


@dataclass(frozen=True)
class SimZone:
    """A temperature zone: its own air (a thermal model sharing the room's ambient), behind its
    doors, read by a DS18B20 with `sensor_id` on the shared 1-Wire tree or by a Modbus sensor."""
    zone: int
    doors: tuple[int, ...]
    sensor_id: str = DEFAULT_SENSOR_ID
    modbus_id: int | None = None
    register: int = 0
    celsius_per_count: float = 0.1


@dataclass(frozen=True)
class SimShelf:
    shelf: int
    device_id: int
    grams_per_count: float


@dataclass(frozen=True)
class SimItem:
    shelf: int
    sku: str
    unit_grams: float
    count: int


class SimulatedCabinet:
    def __init__(self, folder: str | Path, *, pin_factory, doors: list[SimDoor],
                 zones: list[SimZone], shelves: list[SimShelf], items: list[SimItem],
                 register: int, value_format: str, word_order: str, tare_grams: float,
                 noise_grams: float, creep_grams_per_hour: float, settle_seconds: float,
                 ambient_celsius: float, start_celsius: float,
                 camera_size: tuple[int, int] = (640, 480), camera_fps: float = 10.0,
                 clock: Callable[[], float] = time.monotonic):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._factory = pin_factory
        self._doors = {d.door: d for d in doors}
        self.first_door = doors[0].door
        self._clock = clock
        self._stop = threading.Event()

        self.rs485 = PtyCable(self.folder / "rs485-peer", self.folder / "rs485")
        self.peer = ModbusPeer(str(self.rs485.a_path), register=register,
                               value_format=value_format, word_order=word_order)
        self.shelves: dict[int, ShelfModel] = {}
        self._board_ids = {board.shelf: board.device_id for board in shelves}
        for board in shelves:
            model = ShelfModel(tare_grams=tare_grams, noise_grams=noise_grams,
                               creep_grams_per_hour=creep_grams_per_hour,
                               settle_seconds=settle_seconds, clock=clock)
            self.shelves[board.shelf] = model
            self.peer.serve(board.device_id,
                            lambda m=model, g=board.grams_per_count: m.read_grams() / g)
        self.doors_open = {door: False for door in self._doors}
        self.state_file = self.folder / "world.json"
        saved = self._load_state()
        airs = {z.zone: start_celsius for z in zones}
        if saved is None:
            for item in items:
                self.shelves[item.shelf].add_item(item.sku, item.unit_grams, item.count)
        else:
            for key, shelf in saved["shelves"].items():
                if int(key) in self.shelves:
                    model = self.shelves[int(key)]
                    for sku, (unit, count) in shelf["items"].items():
                        model.add_item(sku, unit, count)
                    model.extra_grams = shelf["extra_grams"]
            opened = saved.get("doors_open", {str(self.first_door): saved["door_open"]})
            self.doors_open.update({int(d): v for d, v in opened.items() if int(d) in self._doors})
            ambient_celsius = saved["ambient_celsius"]
            zone_airs = saved.get("zones_air", {str(zones[0].zone): saved["air_celsius"]})
            airs.update({int(z): v for z, v in zone_airs.items() if int(z) in airs})
        # Each zone's air is its own, behind its own doors; the room (ambient) is shared.
        self.zones: dict[int, ThermalModel] = {}
        self.onewires: dict[int, OneWireTree] = {}
        for z in zones:
            model = ThermalModel(ambient_celsius=ambient_celsius, start_celsius=airs[z.zone],
                                 door_open=lambda ds=z.doors: any(self.doors_open[d] for d in ds))
            self.zones[z.zone] = model
            if z.modbus_id is not None:
                self.peer.serve(z.modbus_id, lambda m=model, k=z.celsius_per_count: m.air / k,
                                register=z.register, value_format="int16")
            tree = OneWireTree(self.folder / "w1", z.sensor_id)
            tree.write(model.air)
            self.onewires[z.zone] = tree
        self.first_zone = zones[0].zone
        self.thermal = self.zones[self.first_zone]    # the one-zone cabinet's air
        self.onewire = self.onewires[self.first_zone]
        self.scanner = PtyPort(self.folder / "scanner")
        self.camera = SimulatedCamera(width=camera_size[0], height=camera_size[1],
                                      frames_per_second=camera_fps)
        self.peer.start()
        self._thermal_thread = threading.Thread(target=self._run_thermal, name="sim thermal",
                                                daemon=True)
        self._thermal_thread.start()

    # --- paths the drivers open --------------------------------------------------------------------
    @property
    def rs485_port(self) -> str:
        return str(self.rs485.b_path)

    @property
    def scanner_port(self) -> str:
        return str(self.scanner.path)

    @property
    def w1_base_dir(self) -> str:
        return str(self.onewire.base)

    @property
    def door_open_now(self) -> bool:
        return any(self.doors_open.values())

    def attach_relays(self, compressor_on: Callable[[], bool], heater_on: Callable[[], bool],
                      zone: int | None = None) -> None:
        model = self.zones[self.first_zone if zone is None else zone]
        model.compressor_on = compressor_on
        model.heater_on = heater_on

    def attach_lock(self, commanded_locked: Callable[[], bool], feedback_pin: int,
                    pull_up: bool, door: int | None = None) -> None:
        """Give a door's lock a feedback contact that follows its relay, unless jammed."""
        if not hasattr(self, "_locks"):
            self._locks: dict[int, dict] = {}
            self._lock_thread = threading.Thread(target=self._run_lock, name="sim lock",
                                                 daemon=True)
            self._lock_thread.start()
        self._locks[self.first_door if door is None else door] = {
            "commanded": commanded_locked, "pin": self._factory.pin(feedback_pin),
            "pull_up": pull_up, "jammed": None, "last": None}   # jammed: None, "locked", "open"

    @property
    def lock_jammed(self) -> str | None:
        return getattr(self, "_locks", {}).get(self.first_door, {}).get("jammed")

    def jam_lock(self, state: str | None, door: int | None = None) -> None:
        if state not in (None, "locked", "open"):
            raise KeyError(f"jam state must be null, 'locked' or 'open', not {state!r}")
        door = self.first_door if door is None else door
        if door not in getattr(self, "_locks", {}):
            raise KeyError(f"door {door}'s lock has no feedback contact (lock.feedback = false)"
                           if door in self._doors else f"no door {door}")
        self._locks[door]["jammed"] = state

    def _run_lock(self) -> None:
        while not self._stop.wait(0.05):
            for lock in list(self._locks.values()):
                locked = (lock["commanded"]() if lock["jammed"] is None
                          else lock["jammed"] == "locked")
                if locked != lock["last"]:  # closed contact = locked; with a pull-up, low
                    (lock["pin"].drive_low if locked == lock["pull_up"]
                     else lock["pin"].drive_high)()
                    lock["last"] = locked

    # --- controls ----------------------------------------------------------------------------------
    def set_door(self, is_open: bool, door: int | None = None) -> None:
        door = self.first_door if door is None else door
        if door not in self._doors:
            raise KeyError(f"no door {door}; doors are {sorted(self._doors)}")
        pin = self._factory.pin(self._doors[door].pin)
        closed_low = self._doors[door].pull_up  # switch to ground: closed pulls the input low
        self.doors_open[door] = is_open
        self._save_state()
        if is_open == closed_low:
            pin.drive_high()
        else:
            pin.drive_low()

    def scan(self, text: str) -> None:
        self.scanner.write(text.encode("utf-8") + b"\r\n")

    def scan_bytes(self, data: bytes) -> None:
        self.scanner.write(data)

    def take(self, shelf: int, sku: str, count: int) -> None:
        self._shelf(shelf).take(sku, count)
        self._save_state()

    def add_grams(self, shelf: int, grams: float) -> None:
        self._shelf(shelf).add_grams(grams)
        self._save_state()

    def _shelf(self, shelf: int) -> ShelfModel:
        if shelf not in self.shelves:
            raise KeyError(f"no shelf {shelf}; shelves are {sorted(self.shelves)}")
        return self.shelves[shelf]

    def set_ambient(self, celsius: float) -> None:
        for model in self.zones.values():
            model.set_ambient(celsius)
        self._save_state()

    def _load_state(self) -> dict | None:
        try:
            return json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError) as exc:
            log.warning("simulated world state %s unreadable (%s); starting afresh",
                        self.state_file, exc)
            return None

    def _save_state(self) -> None:
        zones = getattr(self, "zones", {})
        state = {"door_open": self.door_open_now,
                 "doors_open": {str(d): v for d, v in self.doors_open.items()},
                 "ambient_celsius": self.thermal.ambient if hasattr(self, "thermal") else 20.0,
                 "air_celsius": self.thermal.air if hasattr(self, "thermal") else 4.0,
                 "zones_air": {str(z): m.air for z, m in zones.items()},
                 "shelves": {str(n): {"items": {sku: [u, c] for sku, (u, c) in m.items.items()},
                                      "extra_grams": m.extra_grams}
                             for n, m in self.shelves.items()}}
        tmp = self.state_file.with_suffix(".tmp")
        with open(tmp, "w") as f:
            json.dump(state, f)
            f.flush()
            os.fsync(f.fileno())  # the world must survive the daemon's power cut
        os.replace(tmp, self.state_file)

    def show_image(self, data: bytes, *, turn_head: bool = False) -> None:
        """What the camera sees; with `turn_head`, the image and its mirror image in turn every
        0.4 s, which the face check reads as a head turning left and right."""
        frame = decode_image(data)
        if turn_head:
            self.camera.play([frame, frame[:, ::-1]], 0.4)
        else:
            self.camera.show(frame)

    def set_thermometer_fault(self, fault: str | None, zone: int | None = None) -> None:
        zone = self.first_zone if zone is None else zone
        if zone not in self.zones:
            raise KeyError(f"no zone {zone}; zones are {sorted(self.zones)}")
        self.onewires[zone].fault = fault
        self.onewires[zone].write(self.zones[zone].air)

    def unplug(self, device: str) -> None:
        if device == "shelves":       # the USB-RS485 adapter pulled out
            self.peer.stop()
            self.rs485.unplug()
        elif device == "shelf_peer":  # the boards lose power: the port stays, nobody answers
            self.peer.stop()
        elif device.startswith("shelf:"):  # one shelf's board loses power
            self.peer.set_silent(self._board_id(device), True)
        elif device == "scanner":
            self.scanner.unplug()
        elif device == "thermometer" or device.startswith("thermometer:"):
            self.set_thermometer_fault("gone", _zone_of(device))
        elif device == "camera":
            self.camera.set_plugged(False)
        else:
            raise KeyError(f"unknown device {device!r}; one of {', '.join(DEVICES)}")

    def plug(self, device: str) -> None:
        if device in ("shelves", "shelf_peer"):
            self.rs485.plug()
            self.peer.start()
        elif device.startswith("shelf:"):
            self.peer.set_silent(self._board_id(device), False)
        elif device == "scanner":
            self.scanner.plug()
        elif device == "thermometer" or device.startswith("thermometer:"):
            self.set_thermometer_fault(None, _zone_of(device))
        elif device == "camera":
            self.camera.set_plugged(True)
        else:
            raise KeyError(f"unknown device {device!r}; one of {', '.join(DEVICES)}")

    def _board_id(self, device: str) -> int:
        for shelf, device_id in self._board_ids.items():
            if device == f"shelf:{shelf}":
                return device_id
        raise KeyError(f"unknown device {device!r}: no such shelf")

    def snapshot(self) -> dict:
        """The simulation's ground truth, for people and black-box tests."""
        return {
            "ambient_celsius": round(self.thermal.ambient, 2),
            "air_celsius": round(self.thermal.air, 3),
            "door_open": self.door_open_now,
            "doors": {str(d): v for d, v in sorted(self.doors_open.items())},
            "zones": {str(z): {"air_celsius": round(m.air, 3),
                               "thermometer_fault": self.onewires[z].fault}
                      for z, m in sorted(self.zones.items())},
            "shelves": {str(n): {"true_grams": round(m.true_grams(), 1),
                                 "items": {sku: c for sku, (_, c) in m.items.items()}}
                        for n, m in self.shelves.items()},
            "unplugged": [d for d, gone in (("shelves", not self.rs485.plugged),
                                            ("shelf_peer", not self.peer.running),
                                            ("scanner", not self.scanner.plugged),
                                            ("thermometer", self.onewire.fault == "gone"),
                                            ("camera", not self.camera.plugged)) if gone]
            + [f"thermometer:{z}" for z, tree in sorted(self.onewires.items())
               if z != self.first_zone and tree.fault == "gone"],
        }

    # --- time --------------------------------------------------------------------------------------
    def _run_thermal(self) -> None:
        last = self._clock()
        while not self._stop.wait(1.0):
            now = self._clock()
            for zone, model in self.zones.items():
                air = model.step(now - last)
                try:
                    self.onewires[zone].write(air)
                except OSError as exc:
                    log.warning("simulated 1-Wire tree: %s", exc)
            last = now

    def close(self) -> None:
        self._stop.set()
        self._thermal_thread.join(timeout=3)
        if hasattr(self, "_lock_thread"):
            self._lock_thread.join(timeout=3)
        self.peer.close()
        self.rs485.close()
        self.scanner.close()


def _zone_of(device: str) -> int | None:
    """The zone a `thermometer:N` names (None: the first zone's, `thermometer`)."""
    if device == "thermometer":
        return None
    try:
        return int(device.split(":", 1)[1])
    except ValueError:
        raise KeyError(f"unknown device {device!r}: thermometer:N names zone N") from None
