"""Wiring: config in, devices built, threads started, the controller run, everything shut down in order.

Start-up order matters for safety and for the technician reading the log: the store is checked
first (a corrupt database stops the start before any relay moves), then the hardware is built with
the lock relay driven locked before anything else, then the HTTP server (its URL is among the first
log lines), then the readers, then READY to systemd. Shutdown is the ExitStack in reverse: readers
stop, the ports close, the relays are released, and the lock relay, made first, goes last.
"""

from __future__ import annotations

import logging
import queue
import signal
from contextlib import ExitStack, closing
from pathlib import Path

from . import __version__
from .config import Config, read_secret
from .controller import Actuators, Controller
from .hardware import build_hardware
from .store import Store
from .systemd import Notifier
from .ui.server import UiServer

log = logging.getLogger("cabinetd")


def run(config: Config, *, simulate: bool, data_dir: Path, http_port: int) -> int:
    notifier = Notifier()
    if config.sync.backend_url:
        read_secret(config.sync.device_token_file, "device token")  # fail now, not at first sync
    events: queue.Queue = queue.Queue()
    with ExitStack() as stack:
        store = stack.enter_context(closing(Store(data_dir / "cabinet.db",
                                                  cabinet_id=config.cabinet.id,
                                                  software_version=__version__)))
        hardware = build_hardware(config, events.put, simulate=simulate, stack=stack,
                                  data_dir=data_dir)
        controller = Controller(config, Actuators(lock=hardware.lock, buzzer=hardware.buzzer,
                                                  compressor=hardware.compressor,
                                                  heater=hardware.heater),
                                store, notifier=notifier, events=events)
        stack.callback(hardware.lock.lock)  # belt and braces: locked before the relays close
        ui = UiServer(config.http.host, http_port, state=lambda: controller.snapshot,
                      sim=hardware.sim)
        stack.callback(ui.close)
        ui.start()
        log.info("listening on %s (state at %s/api/state)", ui.url, ui.url)
        hardware.start()

        def on_signal(signum, frame):
            controller.stop()
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

        mode = "simulation" if simulate else "hardware"
        notifier.ready(f"cabinet {config.cabinet.id} running on {mode}")
        log.info("cabinet %s ready (%s, data in %s)", config.cabinet.id, mode, data_dir)
        controller.run()
        notifier.stopping()
        log.info("shutting down")
    log.info("stopped")
    return 0
