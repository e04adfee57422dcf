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

from .config import Config
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


@dataclass
class Hardware:
    pin_factory: Any
    lock: LockRelay
    door: DoorSwitch
    compressor: Relay
    heater: Relay
    buzzer: Relay
    readers: list[ReaderThread] = field(default_factory=list)
    camera: CameraReader | None = None
    shelves: ShelfReader | None = None
    lock_feedback: LockFeedback | None = None
    sim: Any = None  # the simulation's handle (cabinet/sim_controls.py) on twins, else None
    gpio_fault: str | None = None  # why the GPIO lines cannot be driven (pins are stand-ins)

    def start(self) -> None:
        for reader in self.readers:
            reader.start()
        if self.gpio_fault is not None:
            return  # stand-in pins: the door's state is unknown, not "closed"
        self.door.announce()
        if self.lock_feedback is not None:
            self.lock_feedback.announce()


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
    # The lock first, driven locked, before anything else can fail or take time.
    lock = stack.enter_context(LockRelay(config.lock.pin, active_high=config.lock.active_high,
                                         pin_factory=factory))
    relays = {name: stack.enter_context(Relay(name, getattr(config, name).pin,
                                              active_high=getattr(config, name).active_high,
                                              pin_factory=factory))
              for name in ("compressor", "heater", "buzzer")}

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
        sim.attach_relays(lambda: relays["compressor"].energised,
                          lambda: relays["heater"].energised)
        rs485_port, scanner_port, w1_base_dir = sim.rs485_port, sim.scanner_port, sim.w1_base_dir
        open_camera, camera_where = sim.camera.open, "simulated camera"

    door = stack.enter_context(DoorSwitch(config.door.pin, pull_up=config.door.pull_up,
                                          bounce_seconds=config.door.bounce_seconds,
                                          pin_factory=factory, emit=emit))
    if sim is not None:
        sim.set_door(sim.door_open_now)  # as the simulated world was left (shut the first time)
    lock_feedback = None
    if config.lock.feedback:
        lock_feedback = stack.enter_context(closing(LockFeedback(
            config.lock.feedback_pin, pull_up=config.lock.feedback_pull_up, pin_factory=factory,
            emit=emit)))
        if sim is not None:
            sim.attach_lock(lambda: lock.locked, config.lock.feedback_pin,
                            config.lock.feedback_pull_up)

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
    t = config.thermometer
    if t.kind == "ds18b20":
        readers.append(Ds18b20Reader(w1_base_dir, t.sensor_id,
                                     poll_interval_seconds=t.poll_interval_seconds, emit=emit))
    else:
        readers.append(ModbusThermometerReader(bus, device_id=t.modbus_device_id,
                                               register=t.modbus_register,
                                               celsius_per_count=t.modbus_celsius_per_count,
                                               poll_interval_seconds=t.poll_interval_seconds,
                                               emit=emit))
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
    return Hardware(pin_factory=factory, lock=lock, door=door, buzzer=relays["buzzer"],
                    compressor=relays["compressor"], heater=relays["heater"],
                    readers=readers, camera=camera, shelves=shelves, lock_feedback=lock_feedback,
                    sim=None if sim is None else SimulationHandle(sim, data_dir),
                    gpio_fault=gpio_fault)


def _build_simulation(config: Config, factory, folder: Path, stock):
    from drivers.sim.world import SimItem, SimShelf, SimulatedCabinet

    sim = config.simulation
    t = config.thermometer
    return SimulatedCabinet(
        folder, pin_factory=factory, door_pin=config.door.pin, door_pull_up=config.door.pull_up,
        shelves=[SimShelf(b.id, b.device_id, b.grams_per_count / sim.load_cell_gain)
                 for b in config.shelves.shelf],
        items=[SimItem(*entry) for entry in stock],
        register=config.shelves.weight_register, value_format=config.shelves.value_format,
        word_order=config.shelves.word_order, tare_grams=sim.tare_grams,
        noise_grams=sim.noise_grams, creep_grams_per_hour=sim.creep_grams_per_hour,
        settle_seconds=sim.settle_seconds, ambient_celsius=sim.ambient_celsius,
        start_celsius=sim.start_celsius,
        thermometer_modbus_id=t.modbus_device_id if t.kind == "modbus" else None,
        thermometer_register=t.modbus_register,
        thermometer_celsius_per_count=t.modbus_celsius_per_count,
        camera_size=(config.camera.width, config.camera.height),
        camera_fps=config.camera.frames_per_second)
