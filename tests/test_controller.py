"""The controller loop on a fake clock, with MockFactory relays and a real SQLite store."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from cabinet import operations
from cabinet.config import Config
from cabinet.controller import Actuators, Controller
from cabinet.events import (OperationRequested, DeviceFaulted, DeviceRecovered, DoorClosed, DoorOpened, ShelfWeighed,
                            TemperatureRead)
from cabinet.store import Store
from cabinet.systemd import Notifier
from cabinet.timers import TimerHeap
from drivers.lock import LockRelay
from drivers.relay import Relay


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


def make_actuators(factory) -> Actuators:
    return Actuators(lock=LockRelay(17, active_high=True, pin_factory=factory),
                     buzzer=Relay("buzzer", 24, active_high=True, pin_factory=factory),
                     compressor=Relay("compressor", 22, active_high=True, pin_factory=factory),
                     heater=Relay("heater", 23, active_high=True, pin_factory=factory))


@pytest.fixture
def rig(tmp_path, factory):
    clock = FakeClock()
    store = Store(tmp_path / "c.db", cabinet_id="c-1", software_version="t")
    out = make_actuators(factory)
    controller = Controller(Config(), out, store, clock=clock)
    yield controller, clock, out, store
    store.close()


def test_starts_locked_with_unknown_door(rig):
    controller, clock, out, store = rig
    state = controller.snapshot
    assert state["lock"] == "locked" and state["door"] == "unknown" and state["alarms"] == []


def test_door_opened_without_authorisation_is_forced_open(rig):
    controller, clock, out, store = rig
    controller.emit(DoorClosed(clock()))
    controller.run_pending()
    assert controller.snapshot["door"] == "closed" and not out.buzzer.energised
    controller.emit(DoorOpened(clock()))
    controller.run_pending()
    state = controller.snapshot
    assert state["door"] == "open" and state["lock"] == "locked"
    assert [a["kind"] for a in state["alarms"]] == ["forced_open"]
    assert out.buzzer.energised
    assert [r["body"]["kind"] for r in store.pending_outbox()] == ["forced_open"]
    controller.emit(DoorClosed(clock()))
    controller.run_pending()
    assert not out.buzzer.energised
    assert [a["kind"] for a in controller.snapshot["alarms"]] == ["forced_open"], \
        "the alarm stays until a technician clears it"


def test_door_found_open_at_start(rig):
    controller, clock, out, store = rig
    controller.emit(DoorOpened(clock()))
    controller.run_pending()
    assert "start-up" in controller.snapshot["alarms"][0]["detail"]


def test_device_fault_and_recovery(rig):
    controller, clock, out, store = rig
    for grams in (5000, 5001, 5000, 5001):
        controller.emit(ShelfWeighed(2, grams, clock()))
    controller.run_pending()
    shelf2 = controller.snapshot["shelves"][1]
    assert shelf2["stable"] and shelf2["stable_grams"] == 5000.5 and shelf2["health"] == "ok"
    controller.emit(DeviceFaulted("shelf:2", "shelf:2 on /dev/ttyUSB0: no reply", clock()))
    controller.run_pending()
    state = controller.snapshot
    assert state["shelves"][1]["health"] == "fault" and not state["shelves"][1]["stable"]
    assert "no reply" in state["faults"]["shelf:2"]["detail"]
    assert [a["kind"] for a in state["alarms"]] == ["device_fault:shelf:2"]
    controller.emit(DeviceRecovered("shelf:2", clock()))
    controller.run_pending()
    assert controller.snapshot["faults"] == {} and controller.snapshot["alarms"] == []


def test_temperature_age_follows_the_clock(rig):
    controller, clock, out, store = rig
    controller.emit(TemperatureRead(4.25, "28-x", clock()))
    controller.run_pending()
    clock.advance(30)
    controller.run_pending()
    assert controller.snapshot["temperature"] == {"celsius": 4.25, "sensor": "28-x",
                                                  "age_seconds": 30.0}


def test_a_failing_handler_locks_and_the_loop_goes_on(rig):
    controller, clock, out, store = rig
    out.lock.unlock()
    controller.emit(ShelfWeighed(1, "not a number", clock()))  # a bug's worth of bad data
    controller.emit(DoorClosed(clock()))
    controller.run_pending()
    assert out.lock.locked and controller.snapshot["door"] == "closed"


def test_an_operation_requested_from_another_thread_runs_on_the_controller_thread(
        rig, monkeypatch):
    """Only data crosses into the loop (an operation's name and arguments), and the answer or
    the refusal comes back to the asking thread."""
    controller, clock, out, store = rig
    ran_on = []
    probe = operations.Operation("probe", "where am I run", (), frozenset({operations.TECHNICIAN}),
                                 lambda ctx, args, source: ran_on.append(threading.get_ident())
                                 or {"ok": True})
    monkeypatch.setitem(operations.OPERATIONS, "probe", probe)
    loop = threading.Thread(target=controller.run)
    loop.start()
    try:
        assert controller.request("probe") == {"ok": True} and ran_on == [loop.ident]
        with pytest.raises(operations.OperationError) as refused:
            controller.request("set_setpoint", {"celsius": "warm"})
        assert refused.value.kind == "invalid"
        with pytest.raises(operations.OperationError) as unknown:
            controller.request("probe", source=operations.BACKEND)
        assert unknown.value.reason == "unknown"
    finally:
        controller.stop()
        loop.join(5)
    assert not loop.is_alive()


def test_timer_heap_order_and_cancel():
    clock = FakeClock()
    heap = TimerHeap(clock)
    fired = []
    heap.call_later(5, "b", lambda: fired.append("b"))
    a = heap.call_later(1, "a", lambda: fired.append("a"))
    heap.call_later(1, "a2", lambda: fired.append("a2"))
    a.cancel()
    assert heap.next_delay(cap=60) == 1
    clock.advance(2)
    heap.run_due()
    assert fired == ["a2"]
    clock.advance(10)
    heap.run_due()
    assert fired == ["a2", "b"] and heap.next_delay(cap=60) == 60


def test_watchdog_pings_stop_while_the_loop_is_stuck(tmp_path, factory, monkeypatch):
    sock_path = str(tmp_path / "notify")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(sock_path)
    listener.settimeout(0.05)
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    notifier = Notifier(address=sock_path)
    store = Store(tmp_path / "c.db", cabinet_id="c", software_version="t")
    controller = Controller(Config(), make_actuators(factory), store, notifier=notifier)
    loop = threading.Thread(target=controller.run)
    loop.start()

    def drain(seconds):
        got, end = [], time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                got.append(listener.recv(100))
            except socket.timeout:
                pass
        return got
    try:
        assert b"WATCHDOG=1" in drain(0.5)
        release = threading.Event()
        stuck = operations.Operation("stuck", "a handler that hangs", (),
                                     frozenset({operations.TECHNICIAN}),
                                     lambda ctx, args, source: release.wait(5) and {})
        monkeypatch.setitem(operations.OPERATIONS, "stuck", stuck)
        controller.emit(OperationRequested("stuck", {}, operations.TECHNICIAN, None,
                                           lambda r, e: None))
        time.sleep(0.3)  # let the loop pick up the stuck call and the socket empty
        drain(0.1)
        assert drain(0.8) == [], "a stuck loop must not feed the watchdog"
        release.set()
        assert b"WATCHDOG=1" in drain(0.5)
    finally:
        controller.stop()
        loop.join(5)
        store.close()
        listener.close()


def test_notifier_without_socket_does_nothing_and_with_a_dead_socket_raises(tmp_path, monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    Notifier().ready()
    from cabinet.systemd import NotifyError
    with pytest.raises(NotifyError, match="READY=1"):
        Notifier(address=str(tmp_path / "gone")).ready()


def test_a_stop_from_a_signal_handler_that_interrupts_the_controllers_queue_goes_through(rig):
    """cabinetd's SIGTERM handler calls stop(), which queues an event, on the main thread, which
    is the controller's: the handler can run in the middle of the controller's own get(). With
    queue.Queue that put waited for a lock its own thread held, for ever (a daemon that ignored
    SIGTERM, seen once in the README walkthrough). A timer signal every millisecond for a second
    lands in every part of get(); faulthandler ends the process if it hangs."""
    import faulthandler
    import queue as queues
    import signal

    from cabinet.events import StopRequested

    controller, *_ = rig
    previous = signal.signal(signal.SIGALRM, lambda *_: controller.stop(0, "signal"))
    faulthandler.dump_traceback_later(60, exit=True)
    signal.setitimer(signal.ITIMER_REAL, 0.001, 0.001)
    stops, end = 0, time.monotonic() + 1.0
    try:
        while time.monotonic() < end:
            controller.emit("noise")
            try:
                while True:
                    stops += isinstance(controller.queue.get(timeout=0.0005), StopRequested)
            except queues.Empty:
                pass
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        faulthandler.cancel_dump_traceback_later()
        signal.signal(signal.SIGALRM, previous)
    assert stops > 100
