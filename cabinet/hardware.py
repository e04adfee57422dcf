"""Build the cabinet's devices from config: the one place that knows whether they are simulated.

`devices(simulate)` (called by the CLI's argument parsing) says what the daemon runs on, as the rest
of it needs to know: a `Devices` whose fields say what changes (is this a deployed cabinet whose
files a technician must get right?), never "is it a simulation?". `build_hardware(config, emit,
devices, stack, data_dir)` returns the same Hardware either way; on twins, the pin factory is
gpiozero's MockFactory and the serial ports, 1-Wire tree and camera are the twins of drivers/sim,
built first so that the real driver code opens their paths, and `Hardware.sim` is the simulation's
handle (cabinet/sim_controls.py: its /sim routes, its own keys). Everything is registered on the
caller's ExitStack, so shutdown runs in reverse order and the lock relay, created first, is the last
thing released.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack, closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from drivers.camera import CameraReader, open_v4l2
from drivers.door import DoorSwitch
from drivers.lock import LockFeedback, LockRelay
from drivers.modbus import ModbusBus
from drivers.reader import ReaderThread
from drivers.relay import Relay
from drivers.scanner import ScannerReader
from drivers.shelf import ShelfBoard, ShelfReader
from drivers.thermometer import Ds18b20Reader, ModbusThermometerReader

from .config import Config, thermometer_device
from .doors import LockGroup
from .sim_controls import SimulationHandle

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Devices:
    """What the daemon runs on. `deployed`: a cabinet in the field, whose deployment files (device
    token, access keys, face key, planogram, first boot) a technician must get right, so their
    problems are warned about; twins bring their own."""
    name: str          # "hardware" or "simulation", for the log
    twins: bool        # the devices are drivers/sim's twins
    deployed: bool


def devices(simulate: bool) -> Devices:
    return (Devices("simulation", twins=True, deployed=False) if simulate
            else Devices("hardware", twins=False, deployed=True))


class NoOutput:
    """A zone's missing compressor or heater (an ambient zone with a heater only): never on."""
    energised = False

    def energise(self) -> None:
        pass

    def release(self) -> None:
        pass


@dataclass
class Hardware:
    pin_factory: Any
    lock: LockGroup                      # every door's lock relay, as one lock
    doors: dict[int, DoorSwitch]
    compressor: Relay | NoOutput         # the first zone's (a one-zone cabinet's)
    heater: Relay | NoOutput
    buzzer: Relay
    zone_outputs: dict[int, tuple[Any, Any]] = field(default_factory=dict)  # (compressor, heater)
    readers: list[ReaderThread] = field(default_factory=list)
    camera: CameraReader | None = None
    shelves: ShelfReader | None = None
    lock_feedbacks: dict[int, LockFeedback] = field(default_factory=dict)
    sim: Any = None  # the simulation's handle (cabinet/sim_controls.py) on twins, else None
    gpio_fault: str | None = None  # why the GPIO lines cannot be driven (pins are stand-ins)

    def start(self) -> None:
        for reader in self.readers:
            reader.start()
        if self.gpio_fault is not None:
            return  # stand-in pins: the doors' state is unknown, not "closed"
        for door in self.doors.values():
            door.announce()
        for feedback in self.lock_feedbacks.values():
            feedback.announce()


def _pin_factory(config: Config, twins: bool) -> tuple[Any, str | None]:
    """The pin factory, and why the real one is unusable (None when it is fine)."""
    from gpiozero.pins.mock import MockFactory

    if twins or config.gpio.pin_factory == "mock":
        return MockFactory(), None
    # Chosen explicitly: gpiozero's fallback chain could silently pick a factory that cannot
    # drive the pins, and an unlocked door must never be the result of a guess.
    try:
        from gpiozero.pins.lgpio import LGPIOFactory
        return LGPIOFactory(chip=config.gpio.chip), None
    except Exception as exc:  # ImportError (no lgpio), lgpio.error (no chip), OSError
        # No GPIO: nothing can energise the lock relay, so the door stays locked (the pin is an
        # input, pulled so the relay is off, as at power-up). Everything else keeps running:
        # stand-in pins let the daemon start, sync its queue and answer the technician.
        return MockFactory(), (
            f"GPIO unusable ({type(exc).__name__}: {exc}): the lock stays locked and no session "
            f"can open; check that python3-lgpio is installed and /dev/gpiochip{config.gpio.chip}"
            " exists")


def build_hardware(config: Config, emit: Callable[[object], None], *, devices: Devices,
                   stack: ExitStack, data_dir: Path,
                   stock: list[tuple[int, str, float, int]] = ()) -> Hardware:
    """`stock` (shelf, sku, unit grams, count) fills the simulated shelves the first time a
    simulation runs in `data_dir`; later runs continue from the simulated world's saved state."""
    factory, gpio_fault = _pin_factory(config, devices.twins)
    if gpio_fault is not None:
        log.critical("%s", gpio_fault)
    if devices.twins or gpio_fault is not None:
        stack.callback(factory.reset)  # releases the mock pins, as a test's teardown must
    doors, zones = config.door_list(), config.zone_list()
    # The locks first, driven locked, before anything else can fail or take time.
    lock = LockGroup({d.id: stack.enter_context(LockRelay(d.lock.pin,
                                                          active_high=d.lock.active_high,
                                                          pin_factory=factory))
                      for d in doors})
    buzzer = stack.enter_context(Relay("buzzer", config.buzzer.pin,
                                       active_high=config.buzzer.active_high, pin_factory=factory))
    zone_outputs = {}
    for zone in zones:
        outputs = []
        for part in ("compressor", "heater"):
            relay = getattr(zone, part)
            name = f"{part}:{zone.id}" if len(zones) > 1 else part
            outputs.append(NoOutput() if relay is None else stack.enter_context(
                Relay(name, relay.pin, active_high=relay.active_high, pin_factory=factory)))
        zone_outputs[zone.id] = tuple(outputs)

    sim = None
    rs485_port = config.rs485.port
    scanner_port = config.scanner.port
    w1_base_dir = config.thermometer.w1_base_dir
    open_camera = lambda: open_v4l2(config.camera.device, config.camera.width,  # noqa: E731
                                    config.camera.height, config.camera.frames_per_second)
    camera_where = config.camera.device
    if devices.twins:
        sim = stack.enter_context(closing(_build_simulation(config, factory, data_dir / "sim",
                                                            stock)))
        for zone_id, (compressor, heater) in zone_outputs.items():
            sim.attach_relays(lambda c=compressor: c.energised, lambda h=heater: h.energised,
                              zone=zone_id)
        rs485_port, scanner_port, w1_base_dir = sim.rs485_port, sim.scanner_port, sim.w1_base_dir
        open_camera, camera_where = sim.camera.open, "simulated camera"

    switches, feedbacks = {}, {}
    for d in doors:
        switches[d.id] = stack.enter_context(DoorSwitch(
            d.switch.pin, pull_up=d.switch.pull_up, bounce_seconds=d.switch.bounce_seconds,
            pin_factory=factory, emit=emit, door=d.id))
        if sim is not None:  # as the simulated world was left (shut the first time)
            sim.set_door(sim.doors_open[d.id], d.id)
        if d.lock.feedback:
            feedbacks[d.id] = stack.enter_context(closing(LockFeedback(
                d.lock.feedback_pin, pull_up=d.lock.feedback_pull_up, pin_factory=factory,
                emit=emit, door=d.id)))
            if sim is not None:
                sim.attach_lock(lambda n=d.id: lock.door_locked(n), d.lock.feedback_pin,
                                d.lock.feedback_pull_up, door=d.id)

    r = config.rs485
    bus = stack.enter_context(closing(ModbusBus(rs485_port, baudrate=r.baudrate, parity=r.parity,
                                                 stopbits=r.stopbits,
                                                 timeout_seconds=r.timeout_seconds)))
    readers: list[ReaderThread] = []
    s = config.shelves
    shelves = ShelfReader(bus, [ShelfBoard(b.id, b.device_id, b.grams_per_count, b.offset_grams)
                                     for b in s.shelf],
                               register=s.weight_register, register_kind=s.register_kind,
                               value_format=s.value_format, word_order=s.word_order,
                               poll_interval_seconds=s.poll_interval_seconds, emit=emit)
    readers.append(shelves)
    for zone in zones:
        t = zone.thermometer
        device = thermometer_device(zone.id, len(zones) > 1)
        if t.kind == "ds18b20":
            readers.append(Ds18b20Reader(w1_base_dir, t.sensor_id, device=device,
                                         poll_interval_seconds=t.poll_interval_seconds, emit=emit))
        else:
            readers.append(ModbusThermometerReader(bus, device_id=t.modbus_device_id,
                                                   register=t.modbus_register,
                                                   celsius_per_count=t.modbus_celsius_per_count,
                                                   poll_interval_seconds=t.poll_interval_seconds,
                                                   emit=emit, device=device))
    if config.scanner.enabled:
        readers.append(ScannerReader(scanner_port, baudrate=config.scanner.baudrate,
                                     max_line_bytes=config.scanner.max_line_bytes, emit=emit))
    camera = None
    if config.camera.enabled:
        camera = CameraReader(open_camera, where=camera_where, emit=emit,
                              read_timeout_seconds=config.camera.read_timeout_seconds)
        readers.append(camera)
    for reader in readers:
        stack.callback(reader.close)
    first = zone_outputs[zones[0].id]
    return Hardware(pin_factory=factory, lock=lock, doors=switches, buzzer=buzzer,
                    compressor=first[0], heater=first[1], zone_outputs=zone_outputs,
                    readers=readers, camera=camera, shelves=shelves, lock_feedbacks=feedbacks,
                    sim=None if sim is None else SimulationHandle(sim, data_dir),
                    gpio_fault=gpio_fault)


def _build_simulation(config: Config, factory, folder: Path, stock):
    from drivers.sim.world import (DEFAULT_SENSOR_ID, SimDoor, SimItem, SimShelf,
                                   SimulatedCabinet, SimZone)

    sim = config.simulation
    zones = []
    for zone in config.zone_list():
        t = zone.thermometer
        zones.append(SimZone(zone.id, zone.doors,
                             DEFAULT_SENSOR_ID if t.sensor_id == "auto" else t.sensor_id,
                             t.modbus_device_id if t.kind == "modbus" else None,
                             t.modbus_register, t.modbus_celsius_per_count))
    return SimulatedCabinet(
        folder, pin_factory=factory, zones=zones,
        doors=[SimDoor(d.id, d.switch.pin, d.switch.pull_up) for d in config.door_list()],
        shelves=[SimShelf(b.id, b.device_id, b.grams_per_count / sim.load_cell_gain)
                 for b in config.shelves.shelf],
        items=[SimItem(*entry) for entry in stock],
        register=config.shelves.weight_register, value_format=config.shelves.value_format,
        word_order=config.shelves.word_order, tare_grams=sim.tare_grams,
        noise_grams=sim.noise_grams, creep_grams_per_hour=sim.creep_grams_per_hour,
        settle_seconds=sim.settle_seconds, ambient_celsius=sim.ambient_celsius,
        start_celsius=sim.start_celsius,
        camera_size=(config.camera.width, config.camera.height),
        camera_fps=config.camera.frames_per_second)
