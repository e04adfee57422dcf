"""Wiring: config in, devices built, threads started, the controller run, everything shut down in order.

Start-up order matters for safety and for the technician reading the log: the store is checked
first (a corrupt database stops the start before any relay moves), then the hardware is built with
the lock relay driven locked before anything else, then the HTTP server (its URL is among the first
log lines), then the readers, then READY to systemd. Shutdown is the ExitStack in reverse: readers
stop, the ports close, the relays are released, and the lock relay, made first, goes last.
"""

from __future__ import annotations

import errno
import fcntl
import faulthandler
import json
import logging
import os
import queue
import signal
import socket
import threading
import time
from contextlib import ExitStack, closing, contextmanager
from pathlib import Path

from . import __version__
from .config import Config, ConfigError
from .planogram import Planogram, PlanogramError, from_json, load as load_planogram
from .preflight import preflight
from .controller import Actuators, Controller
from .events import DeviceFaulted
from .hardware import Devices, build_hardware
from .reserve import Reserve
from .store import Store, StoreError
from .systemd import Notifier
from .ui.server import UiServer
from .ui.setup_status import SetupStatus

log = logging.getLogger("cabinetd")


def run(config: Config, *, devices: Devices, data_dir: Path, http_port: int) -> int:
    notifier = Notifier()
    # The same checks as --check-config (its warnings are logged where each part starts).
    checked = preflight(config, deployed=devices.deployed)
    token = checked.token
    # SimpleQueue: its put() may run inside a signal handler that interrupted the controller's
    # own get() (SIGTERM below); queue.Queue's Python-level lock would deadlock there.
    events: queue.SimpleQueue = queue.SimpleQueue()
    with ExitStack() as stack:
        # Claimed before anything is opened: a second daemon on the same folder or port stops
        # here with one line, without touching the first one's database.
        reserve = Reserve(data_dir)
        stack.enter_context(_claim_data_dir(data_dir, reserve))
        listener = stack.enter_context(_claim_port(config.http.host, http_port))
        store = stack.enter_context(closing(_open_store(config, data_dir, reserve)))
        planogram = _planogram(config, store)
        if planogram is not None:
            store.report_planogram(planogram.to_json(), "start")
        if config.several_doors or config.several_zones or store.get_value("layout.reported"):
            store.report_layout(layout(config))
        stock = [] if planogram is None else [
            (shelf, sku, planogram.products[sku].unit_grams, count)
            for shelf, skus in planogram.shelves.items() for sku, count in skus.items()]
        hardware = build_hardware(config, events.put, devices=devices, stack=stack,
                                  data_dir=data_dir, stock=stock)
        fast, idle = config.shelves.session_poll_interval_seconds, config.shelves.poll_interval_seconds
        from .ads import AdsCache
        ads = AdsCache(data_dir / "ads", store.get_value("ads.playlist"), ca_file=config.sync.ca_file)
        stack.callback(ads.close)
        from .events import VoicePackChanged
        from .voice_pack import VoicePacks
        strings_file = Path(__file__).parent / "ui" / "static" / "strings.json"
        voice = VoicePacks(data_dir / "voice", json.loads(strings_file.read_text(encoding="utf-8")),
                           outcome=lambda result: events.put(VoicePackChanged(result)),
                           ca_file=config.sync.ca_file)
        voice.start()
        stack.callback(voice.close)
        from .events import UpdateReported
        from .update import Updates
        updates = Updates(data_dir / "updates", config.updates.public_key,
                          outcome=lambda record: events.put(UpdateReported(record)),
                          ca_file=config.sync.ca_file)
        updates.start()
        stack.callback(updates.close)
        controller = Controller(config, Actuators(
            lock=hardware.lock, buzzer=hardware.buzzer, compressor=hardware.compressor,
            heater=hardware.heater, zone_outputs=hardware.zone_outputs,
            weigh_fast=lambda on: hardware.shelves.set_interval(fast if on else idle)),
            store, notifier=notifier, events=events, planogram=planogram,
            access_keys=(checked.access_keys if hardware.sim is None
                         else hardware.sim.access_keys(checked.access_keys)),
            data_dir=str(data_dir),
            on_ads=ads.set_playlist, reserve=reserve, on_voice_pack=voice.want,
            on_update=updates.want,
            face_key=None if hardware.sim is None else hardware.sim.face_key)
        stack.callback(hardware.lock.lock)  # belt and braces: locked before the relays close
        from .ui.voice import Speaker
        speaker = Speaker(strings_file, rate=config.screen.speech_rate,
                          enabled=config.screen.speech, pack=voice.current)
        speaker.start()
        stack.callback(speaker.close)
        from .calibration import CALIBRATION_KEY, ShelfCalibration, apply_saved
        saved_scales = store.get_value(CALIBRATION_KEY)
        changed = apply_saved(hardware.shelves, saved_scales)
        if changed:
            log.info("shelf calibration from the database for shelves %s", changed)

        def save_scales(value: dict) -> None:  # on the controller's thread (its procedure)
            store.set_value(CALIBRATION_KEY, value, ("calibration", {"shelves": value}))
        calibration = ShelfCalibration(hardware.shelves, save_scales, saved_scales)
        controller.ops_context.calibration = calibration  # before the loop starts
        from .selftest import SelfTest, SelfTestPorts
        if hardware.sim is not None:
            hardware.sim.attach(controller)  # for its stand-ins: authorise, remote_unlock
        selftest = SelfTest(SelfTestPorts(
            config, lambda: controller.snapshot, controller.out,
            lambda unlock: controller.request("lock_test", {"unlock": unlock}),
            lambda: controller.request("check_store")["integrity"],
            controller.access.synchronised, controller.face.vault.key_path, voice),
            hardware, data_dir)
        ui = UiServer(listener, controller=controller, sim=hardware.sim,
                      ads=ads, speaker=speaker, selftest=selftest,
                      calibration=calibration, camera=hardware.camera, voice=voice,
                      updates=updates,
                      setup=SetupStatus() if devices.deployed else None)
        stack.callback(ui.close)
        ui.start()
        log.info("listening on %s (state at %s/api/state)", ui.url, ui.url)
        if hardware.gpio_fault is not None:
            events.put(DeviceFaulted("gpio", hardware.gpio_fault, time.monotonic()))
        hardware.start()
        ads.start()
        if hardware.camera is not None:
            from .access.camera_codes import CameraCodeReader
            codes = CameraCodeReader(
                hardware.camera.latest, emit=events.put,
                idle=lambda: controller.snapshot.get("session") is None,
                frames_per_second=config.camera.decode_frames_per_second,
                wait_frame=hardware.camera.wait_newer)
            stack.callback(codes.close)
            codes.start()
            if controller.face.available:
                _start_faces(config, hardware.camera, controller, events, stack)

        if token is not None:
            _start_sync(config, token, store, controller, stack)

        def on_signal(signum, frame):
            controller.stop()   # a put on the SimpleQueue: reentrant, safe from a handler
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        # `kill -USR1 PID` writes every thread's stack to the log (the journal under systemd):
        # what a stuck daemon is doing, without stopping it. In C, so it answers even when
        # Python code cannot run.
        faulthandler.register(signal.SIGUSR1, all_threads=True)

        # The readers' first events (the door's and the lock's state) are handled before READY,
        # so whoever waited for READY sees a known door, never "unknown".
        controller.run_pending()
        mode = devices.name
        notifier.ready(f"cabinet {config.cabinet.id} running on {mode}")
        from .events import RestartWanted
        from .update_watch import UpdateWatch
        def report_update(record: dict) -> bool:
            done = threading.Event()
            events.put(UpdateReported(record, done))
            return done.wait(30)   # recorded: only then is the step marked reported
        watch = UpdateWatch(config.updates.install_dir, data_dir / "updates",
                            report=report_update,
                            restart=lambda status, why: events.put(RestartWanted(status, why)),
                            selftest=lambda: selftest.run(cycle_lock=False))
        stack.callback(watch.close)
        watch.start()   # after READY: a release on trial is judged as it runs
        log.info("cabinet %s ready (%s, data in %s)", config.cabinet.id, mode, data_dir)
        controller.run()
        notifier.stopping()
        log.info("shutting down")
    log.info("stopped")
    return controller.exit_status


class StartError(Exception):
    """The daemon cannot start here and now (the message says why and what to do). `status` 2:
    restarting cannot help (another daemon holds the data folder); 1: it may (a port in use)."""

    def __init__(self, message: str, status: int = 1):
        super().__init__(message)
        self.status = status


@contextmanager
def _claim_data_dir(data_dir: Path, reserve: Reserve):
    """An exclusive lock on the data folder for the daemon's lifetime (released by the kernel
    when the process dies, so a power cut leaves no stale lock)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(data_dir / "cabinetd.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise StartError(f"{data_dir} is in use by another cabinetd (pid {holder}): stop that "
                         "one first, or give this one its own --data-dir", status=2) from None
    os.ftruncate(fd, 0)
    pid = f"{os.getpid()}\n".encode()
    try:
        os.write(fd, pid)
    except OSError as exc:  # a full card: the lock holds all the same; the pid is a courtesy
        try:
            if exc.errno != errno.ENOSPC or not reserve.release():
                raise
            os.write(fd, pid)
        except OSError as still:
            log.warning("%s: cannot write the pid: %s", data_dir / "cabinetd.lock",
                        still.strerror)
    try:
        yield
    finally:
        os.close(fd)


@contextmanager
def _claim_port(host: str, port: int):
    try:
        listener = socket.create_server((host, port))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise StartError(
                f"port {port} on {host} is in use (another cabinetd, or another program): stop "
                f"it, or start this one with --http-port N (0 picks a free port)") from None
        raise StartError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    with listener:
        yield listener


def _start_faces(config: Config, camera, controller: Controller, events, stack: ExitStack) -> None:
    from .access.face import LivenessRules
    from .access.face_camera import FaceReader, FaceSettings
    from .access.face_model import FaceModel

    f = config.face
    reader = FaceReader(
        camera.latest, emit=events.put, idle=lambda: controller.snapshot.get("session") is None,
        gallery=lambda: controller.face.gallery, model_factory=FaceModel,
        wait_frame=camera.wait_newer,
        settings=FaceSettings(f.tolerance, f.margin, f.frames_per_second, f.detect_width,
                              f.min_face_pixels, LivenessRules(f.turn_span, f.attempt_seconds)))
    stack.callback(reader.close)
    reader.start()


def _start_sync(config: Config, token: str, store: Store, controller: Controller,
                stack: ExitStack) -> None:
    """The uploader and the command poller, each with its own connection and HTTP session."""
    from .outbox import OutboxQueue
    from .sync import CommandPoller, Transport, Uploader

    s = config.sync

    def transport(read_timeout: float) -> Transport:
        return Transport(s.backend_url, config.cabinet.id, token, ca_file=s.ca_file,
                         connect_timeout=s.connect_timeout_seconds, read_timeout=read_timeout)
    outbox = stack.enter_context(closing(OutboxQueue(store.path)))
    uploader = Uploader(outbox, transport(s.read_timeout_seconds), controller.emit,
                        cabinet_id=config.cabinet.id, max_records=s.batch_max_records,
                        max_bytes=s.batch_max_kilobytes * 1024,
                        budget_bytes=s.queue_budget_megabytes << 20,
                        keep_delivered_days=s.keep_delivered_days)
    poller = CommandPoller(transport(s.read_timeout_seconds), controller.emit,
                           wait_seconds=s.long_poll_seconds)
    store.on_records = uploader.wake
    stack.callback(uploader.close)
    stack.callback(poller.close)
    uploader.start()
    poller.start()
    log.info("syncing with %s", s.backend_url)


def _open_store(config: Config, data_dir: Path, reserve: Reserve) -> Store:
    """The database; on a full card (SQLite cannot even start its write-ahead log) the room kept
    for it is given back first, so that a cabinet restarted on a full card still starts."""
    def open_it() -> Store:
        return Store(data_dir / "cabinet.db", cabinet_id=config.cabinet.id,
                     software_version=__version__)
    try:
        return open_it()
    except StoreError:
        if not reserve.release():
            raise
        return open_it()


def _planogram(config: Config, store: Store) -> Planogram | None:
    """The live planogram from the database; at first start, the one in checkout.planogram_file."""
    shelf_ids = {s.id for s in config.shelves.shelf}
    saved = store.planogram_json()
    if saved is not None:
        try:
            return from_json(saved, f"{store.path} (planogram)", shelf_ids)
        except PlanogramError as exc:
            # The config's shelves changed under a saved planogram: say so, sell nothing.
            log.error("saved planogram unusable: %s; load one with `cabinet planogram load`", exc)
            return None
    path = Path(config.checkout.planogram_file)
    if not path.exists():
        log.error("no planogram: %s does not exist and none is saved; the cabinet sells nothing "
                  "until one is loaded (`cabinet planogram load FILE`)", path)
        return None
    try:
        planogram = load_planogram(path, shelf_ids)
    except PlanogramError as exc:
        raise ConfigError(str(exc)) from None
    store.save_planogram(planogram.to_json())
    log.info("planogram %r loaded from %s", planogram.version, path)
    return planogram


def layout(config: Config) -> dict:
    """The doors and zones as the `layout` record tells the backend (docs/sync.md)."""
    return {"doors": [{"door": d.id, "name": d.label, "shelves": list(d.shelves)}
                      for d in config.door_list()],
            "zones": [{"zone": z.id, "name": z.label, "doors": list(z.doors),
                       "food_safety_rule": z.climate.food_safety,
                       "compressor": z.compressor is not None, "heater": z.heater is not None}
                      for z in config.zone_list()]}
