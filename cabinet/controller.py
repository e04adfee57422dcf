"""The controller: one thread, one event queue, all of the cabinet's state.

Drivers and the HTTP server only post events (`emit`); this loop takes them one at a time, runs the
timers that are due, and after each batch publishes an immutable snapshot of the state for the
screen and /api/state. Nothing else writes the state, so nothing here needs a lock. The systemd
watchdog is fed from a timer on this loop: if a handler hangs, the pings stop and systemd restarts
the daemon, which starts locked.

It routes door and weight events to the checkout machine (checkout.py), raises the forced-open
alarm for a door that opens with no session, tracks device faults, shelf stability and the
temperature, and at start-up resumes a session that a crash left unfinished. Climate control
(zones.py: one climate_control.py per zone), access (access/) and sync (sync_control.py) plug in
beside it. A cabinet with several doors is one door to the checkout (doors.py): open while any
door is, shut when every door is; each door's own switch, lock and alarms are handled here.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from .access.codes import PublicKey
from .alarms import Alarms
from .access.control import AccessControl
from .access.phone_scan import NonceRefused, PhoneScan
from .checkout import UNAUTHORISED, Authorisation, Checkout, Refused, Settings
from .config import Config
from .doors import DoorStates, alarm_kind, as_lock_group, base_kind
from .events import (OperationRequested, CodeScanned, DeviceFaulted, DeviceRecovered, DoorClosed,
                     DoorOpened, LockSensed, ScanUnreadable, ShelfWeighed, StopRequested, TemperatureRead)
from .planogram import Planogram
from .ports import AlarmPort, Ports
from .session_effects import SessionEffects
from .state_view import (ProductsView, State, alarms_view, doors_view, session_view,
                         shelves_view)
from .store import Store, utc_now
from .events import (CommandsArrived, FaceAttemptFailed, FaceChecking, FaceRecognised,
                     RestartWanted, SyncReported, UpdateReported, VoicePackChanged)
from .commands import CommandRunner
from . import operations
from .operations import TECHNICIAN, Context
from .sync_control import SyncControl
from .systemd import Notifier, NotifyError
from .timers import TimerHeap
from .ui.screens import screen_for
from .weighing import StabilityFilter
from .zones import Zones

log = logging.getLogger(__name__)
# Alarms that stay until a technician has looked (the rest clear when their cause goes).
ACKNOWLEDGED_ALARMS = frozenset({"forced_open", "face_attempts", "settle_error"})
STORAGE_RETRY_SECONDS = 5.0
ROOM_CHECK_SECONDS = 15.0   # while disk_full is up: how often to look for room for the reserve
LOCK_TEST_SECONDS = 3.0     # the longest the selftest may hold the lock open


class Lock(Protocol):
    @property
    def locked(self) -> bool: ...
    def lock(self) -> None: ...
    def unlock(self) -> None: ...


class Output(Protocol):
    @property
    def energised(self) -> bool: ...
    def energise(self) -> None: ...
    def release(self) -> None: ...


@dataclass
class Actuators:
    lock: Lock
    buzzer: Output
    compressor: Output
    heater: Output
    weigh_fast: Callable[[bool], None] = lambda fast: None  # shelf polling rate for sessions
    # zone id -> (compressor, heater), where the cabinet has several zones; empty: the first
    # zone drives `compressor` and `heater`.
    zone_outputs: dict[int, tuple[Output, Output]] = field(default_factory=dict)

    def __post_init__(self):
        self.lock = as_lock_group(self.lock)  # one relay: a one-door group (doors.py)


class Controller:
    def __init__(self, config: Config, actuators: Actuators, store: Store, *,
                 clock: Callable[[], float] = time.monotonic, notifier: Notifier | None = None,
                 events: queue.SimpleQueue | None = None, planogram: Planogram | None = None,
                 access_keys: dict[int, PublicKey] | None = None, data_dir: str | None = None,
                 on_ads: Callable[[list], None] | None = None, face_key: str | None = None,
                 reserve: Any = None, on_voice_pack: Callable[[str, str], None] | None = None,
                 on_update: Callable[[str, str], None] | None = None):
        self.config = config
        self.out = actuators
        self.store = store
        self.clock = clock
        self.notifier = notifier or Notifier(address="")
        # SimpleQueue: stop() may be called from a signal handler that interrupted get().
        self.queue: queue.SimpleQueue = events if events is not None else queue.SimpleQueue()
        self.timers = TimerHeap(clock)
        self.started_at = clock()
        self._stopping = False
        self.exit_status = 0
        self._restart_wanted: RestartWanted | None = None   # an update's restart, when idle
        self._door_opened_at: float | None = None
        sc = config.screen
        self._screen_config = {"default_language": sc.default_language,
                               "elderly_mode": sc.elderly_mode, "speech": sc.speech,
                               "language_reset_seconds": sc.language_reset_seconds}

        self.door_list = {d.id: d for d in config.door_list()}
        self.several_doors = len(self.door_list) > 1
        self.doors = DoorStates(self.door_list)
        self._held_timers: dict[int, Any] = {}   # door -> its held-open timer (several doors)
        self.planogram = planogram
        self.receipt: dict[str, Any] | None = None
        self.last_refusal: dict[str, Any] | None = None
        # A session a crash left open is resumed once the door's state is known.
        self._unfinished = store.unfinished_session()
        if self._unfinished:
            log.warning("session %s was left unfinished (%s); resuming it",
                        self._unfinished["session_id"], self._unfinished["state"])
        self.faults: dict[str, dict[str, Any]] = {}
        self.shelves = {s.id: StabilityFilter(readings=config.shelves.stable_readings,
                                              band_grams=config.shelves.stable_band_grams,
                                              fresh=config.shelves.fresh_readings)
                        for s in config.shelves.shelf}
        self._last_stable: dict[int, float] = {}   # shelf -> its last stable weight
        self.last_scan: dict[str, Any] | None = None
        self.alarm_book = Alarms(store)
        # The room kept on the card for the database (cabinet/reserve.py); None in tests.
        self.reserve = reserve
        self._storage_timer = None
        self._lock_test_timer = None   # the selftest's lock cycle, while it lasts
        # What the helpers get instead of the controller (cabinet/ports.py).
        self.ports = Ports(config, store, clock, self.timers,
                           AlarmPort(self.raise_alarm, self.clear_alarm, lambda: self.alarms))
        c = config.checkout
        self.checkout = Checkout(Settings(c.unlock_timeout_seconds, c.door_open_warning_seconds,
                                          c.door_open_alarm_seconds, c.settle_timeout_seconds,
                                          c.shelf_tolerance_grams), SessionEffects(
            self.ports, outputs=actuators, shelves=self.shelves, planogram=lambda: self.planogram,
            finished=self.session_finished, storage_failed=self.storage_failed,
            door_alarms=self._door_alarms), clock=clock)
        self.outbox = store.outbox_counts()
        self.snapshot: dict[str, Any] = {}   # the published State (cabinet/state_view.py)
        self._published = threading.Condition()  # notified at each publish (wait_published)
        self._products = ProductsView()
        self.handled = 0

        # Each door's lock feedback contact, where it has one: what it says, since when it
        # disagrees with the relay.
        self.lock_sensed: dict[int, bool | None] = {n: None for n in self.door_list}
        self._lock_mismatch_since: dict[int, float | None] = {n: None for n in self.door_list}
        feedback = [d.lock.feedback_seconds for d in self.door_list.values() if d.lock.feedback]
        if feedback:
            self._schedule_lock_check(min(feedback) / 4)
        self.out.lock.lock()  # fail-secure whatever the relay was doing before we took over
        # Weigh fast until every shelf is first stable: a restart (perhaps mid-session) should know
        # its shelves within a second, not after four idle polls.
        self._warming_up = True
        self.out.weigh_fast(True)
        first_zone = config.zone_list()[0].id
        self.zones = Zones(self.ports, actuators.zone_outputs or
                           {first_zone: (actuators.compressor, actuators.heater)})
        self.climate = self.zones.first   # a one-zone cabinet's climate
        self._name_old_alarms()
        self.access = AccessControl(self.ports, access_keys or {}, authorise=self.authorise,
                                    refused=self.refused)
        from .access.face_control import FaceAccess
        self.face = FaceAccess(self.ports, face_key or config.face.key_file,
                               authorise=self.authorise, refused=self.refused)
        self.phone = PhoneScan(config.cabinet.id, config.access.phone_url, clock=clock,
                               rotate_seconds=config.access.phone_nonce_seconds)
        # What the operations act on, whoever asks (a command, a technician, the simulation).
        self.ops_context = Context(self, data_dir=data_dir, on_ads=on_ads,
                                   on_voice_pack=on_voice_pack, on_update=on_update)
        self.sync = SyncControl(self.ports, CommandRunner(
            self.ops_context, store=store, clock=clock,
            stop=self.stop, storage_failed=self.storage_failed),
            pending=lambda: self.outbox["pending"])
        if self.notifier.watchdog_seconds:
            self._schedule_watchdog(self.notifier.watchdog_seconds / 2)
        if self.reserve is not None and not self.reserve.ensure():
            self.raise_alarm("disk_full", "the card has no room left for the database's reserve")
            self._retry_storage_in(ROOM_CHECK_SECONDS)
        self._publish()

    def _name_old_alarms(self) -> None:
        """A cabinet moved to door or zone tables keeps its active one-door, one-zone alarms
        under the first door's or zone's name, so that what clears them (the lock check, the
        thermostat, a technician) still can."""
        if not (self.several_doors or self.zones.several):
            return
        first_door, first_zone = next(iter(self.door_list)), self.zones.first.zone.id
        for alarm in list(self.alarms):
            kind = alarm["kind"]
            if self.several_doors and kind in ("forced_open", "held_open", "lock_fault"):
                renamed = alarm_kind(kind, first_door, True)
            elif self.zones.several and kind in ("sensor_fault", "food_safety_lockout"):
                renamed = f"{kind}:zone{first_zone}"
            elif self.zones.several and kind == "device_fault:thermometer":
                renamed = None   # raised again under the zone's device name if still faulty
            else:
                continue
            if renamed is not None:
                self.raise_alarm(renamed, alarm["detail"])
            self.clear_alarm(kind, by="config: doors and zones")

    # --- posting (any thread) -------------------------------------------------------------------
    def emit(self, event: object) -> None:
        self.queue.put(event)

    def request(self, name: str, args: Any = None, *, source: str = TECHNICIAN,
                renamed: dict[str, str] | None = None, timeout: float = 5.0) -> dict[str, Any]:
        """Run operation `name` of the table on the controller thread, from any other thread;
        its result, or the OperationError that says why not."""
        done: queue.Queue = queue.Queue(maxsize=1)
        self.emit(OperationRequested(name, {} if args is None else args, source, renamed,
                                     lambda result, error: done.put((result, error))))
        result, error = done.get(timeout=timeout)
        if error is not None:
            raise error
        return result

    # --- the loop ---------------------------------------------------------------------------------
    def call_now(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` as the controller thread would, then publish (tests and single-thread use)."""
        try:
            return fn()
        finally:
            self._publish()

    def run(self) -> None:
        log.info("controller running")
        while not self._stopping:
            try:
                event = self.queue.get(timeout=self.timers.next_delay(cap=1.0))
            except queue.Empty:
                event = None
            if event is not None:
                self._dispatch(event)
            self.run_pending()

    def run_pending(self) -> None:
        """Handle every queued event and due timer without blocking, then publish the state."""
        while True:
            try:
                event = self.queue.get_nowait()
            except queue.Empty:
                break
            self._dispatch(event)
        self.timers.run_due(on_error=self._timer_failed)
        self._publish()

    def _timer_failed(self, timer, exc: Exception) -> None:
        log.error("timer %s failed; locking", timer.name, exc_info=exc)
        self.out.lock.lock()

    def stop(self, exit_status: int = 0, reason: str = "stop requested") -> None:
        self.exit_status = exit_status
        self.emit(StopRequested(reason))

    def _dispatch(self, event: object) -> None:
        self.handled += 1
        try:
            handler = self._handlers.get(type(event))
            if handler is None:
                log.error("no handler for %r", event)
                return
            handler(self, event)
        except Exception:
            # A bug must not leave the door open or kill the loop: lock, log, carry on.
            log.exception("error handling %r; locking", event)
            self.out.lock.lock()

    # --- handlers ---------------------------------------------------------------------------------
    def _resume_if_needed(self, door_open: bool) -> bool:
        if self._unfinished is None:
            return False
        journal, self._unfinished = self._unfinished, None
        self.checkout.resume(journal, door_open)
        return True

    @property
    def door_open(self) -> bool | None:
        """The cabinet's door as the checkout sees it: open while any door is, shut when all are,
        None until every door has been read."""
        return self.doors.cabinet

    def _door_label(self, door: int) -> str:
        return f"{self.door_list[door].label}: " if self.several_doors else ""

    def _door_alarms(self, kind: str, detail: str, raising: bool) -> list[tuple[str, str]]:
        """The checkout's `held_open`, where there are several doors: each door times its own
        (`_time_door`), so the checkout's, timed from the first door opened, raises nothing;
        its clear (at the last close) clears every door's."""
        if not self.several_doors or kind != "held_open":
            return [(kind, detail)]
        if raising:
            return []
        return [(alarm_kind(kind, n, True), "") for n in self.door_list]

    def _time_door(self, door: int, is_open: bool) -> None:
        """Each door's own held-open time, on a cabinet with several: a door left open longer
        than checkout.door_open_alarm_seconds in a session raises `held_open:doorN`, cleared
        when it closes."""
        timer = self._held_timers.pop(door, None)
        if timer is not None:
            timer.cancel()
        kind = alarm_kind("held_open", door, True)
        if not is_open:
            self.clear_alarm(kind)
            return
        seconds = self.config.checkout.door_open_alarm_seconds

        def held() -> None:
            self._held_timers.pop(door, None)
            session = self.checkout.session
            if self.doors.states.get(door) and session is not None:
                self.raise_alarm(kind, f"{self._door_label(door)}door held open for more than "
                                       f"{seconds:g} s in session {session['session_id']}")
        self._held_timers[door] = self.timers.call_later(seconds, f"held_open:door{door}", held)

    def _forced(self, door: int, detail: str) -> None:
        self.raise_alarm(alarm_kind("forced_open", door, self.several_doors),
                         self._door_label(door) + detail)
        self.out.buzzer.energise()

    def _on_door_opened(self, event: DoorOpened) -> None:
        door = event.door
        if door not in self.door_list:
            raise ValueError(f"door {door} opened, and the config has no such door")
        first = self.doors.states[door] is None
        was_open = self.door_open
        self.doors.states[door] = True
        self.zones.on_door(door, True)
        if self.several_doors:
            self._time_door(door, True)
        if self._unfinished is not None:
            if self.doors.all_read:  # every door read: finish what a crash left
                self._resume_if_needed(door_open=True)
            return
        if was_open:
            self._another_door_opened(door, first)
            return
        if self.checkout.session is not None and self.checkout.state == "authorised":
            self._door_opened_at = self.clock()  # for the screen's held-open countdown
        before = self.checkout.state
        was_idle = before == "idle"
        if self.checkout.door_opened() and (before == "open"
                                            or not self.out.lock.door_locked(door)):
            return
        detail = ("door found open at start-up" if first
                  else "door opened while locked, with no authorised session")
        if not was_idle:
            session = self.checkout.session
            if session["authorisation"]["role"] == UNAUTHORISED and any(
                    str(n) not in session["before_grams"] for n in self._stable_behind(door)):
                # Another door forced while the first forced opening is weighed: its shelves
                # are weighed with it.
                self.checkout.door_forced_too(self._stable_behind(door))
                detail = ("door opened while locked, with no authorised session; weighed with "
                          f"the forced opening (session {session['session_id']})")
            elif self.checkout.state != "open" or session["reopened"]:
                detail = "door opened again after it closed, before the sale was settled"
            else:
                detail = "door held shut for this session, opened by force"
            session["reopened"] = True
        elif not first:  # weighed when it closes: what was taken is recorded
            forced = self.checkout.door_forced(stable_grams=self._stable_behind(door),
                                               planogram=self.planogram)
            if forced:
                detail += f"; weighed when it closes (session {forced})"
        self._forced(door, detail)

    def _another_door_opened(self, door: int, first: bool) -> None:
        """A door opened while another stands open: part of the session if its lock was
        released for it, else forced (and its shelves weighed with the forced opening's)."""
        session = self.checkout.session
        if session is not None and not first and not self.out.lock.door_locked(door):
            return
        if first:
            self._forced(door, "door found open at start-up")
            return
        detail = "door opened while locked, with no authorised session"
        if session is None:   # another door stands open (found so at start-up): weigh this one
            forced = self.checkout.door_forced(stable_grams=self._stable_behind(door),
                                               planogram=self.planogram)
            if forced:
                detail += f"; weighed when it closes (session {forced})"
        elif session["authorisation"]["role"] == UNAUTHORISED:
            self.checkout.door_forced_too(self._stable_behind(door))
            detail += f"; weighed with the forced opening (session {session['session_id']})"
        else:
            session["reopened"] = True
            detail = "door opened while locked during a session; the sale is flagged for review"
        self._forced(door, detail)

    def _stable_behind(self, door: int) -> dict[int, float | None]:
        """The stable weights of the shelves behind `door`. A settling session restarts every
        shelf's filter; behind a door that stayed shut and locked nothing can have moved, so
        the last stable weight seen stands for it until a new one comes."""
        return {n: (self.shelves[n].stable_grams if self.shelves[n].stable_grams is not None
                    else self._last_stable.get(n))
                for n in self.door_list[door].shelves if n in self.shelves}

    def _on_door_closed(self, event: DoorClosed) -> None:
        door = event.door
        if door not in self.door_list:
            raise ValueError(f"door {door} closed, and the config has no such door")
        was_open = self.doors.states[door]
        self.doors.states[door] = False
        if was_open:
            self.zones.on_door(door, False)
        if self.several_doors:
            self._time_door(door, False)
        if self._unfinished is not None:
            if self.doors.all_read:
                self._resume_if_needed(door_open=bool(self.door_open))
            return
        if self.checkout.state == "authorised":
            return  # unlocked and waiting: the door being shut is no news
        if self.door_open:
            return  # another door stands open: the session (or forced opening) goes on
        self.out.lock.lock()
        self.out.buzzer.release()
        self.checkout.door_closed()

    def _on_shelf_weighed(self, event: ShelfWeighed) -> None:
        grams = float(event.grams)
        if not math.isfinite(grams):
            raise ValueError(f"shelf {event.shelf} weighed {grams!r}")
        shelf = self.shelves.get(event.shelf)
        if shelf is not None:
            shelf.add(grams, event.at)
            if shelf.stable:
                self._last_stable[event.shelf] = shelf.stable_grams
            self.checkout.shelves_weighed()
            if self._warming_up and all(f.stable for f in self.shelves.values()):
                self._warming_up = False
                if self.checkout.state == "idle" and self._unfinished is None:
                    self.out.weigh_fast(False)

    def _on_temperature(self, event: TemperatureRead) -> None:
        self.zones.on_reading(event.device, event.celsius, event.sensor, event.at)

    def _on_code_scanned(self, event: CodeScanned) -> None:
        method = "camera" if event.source == "camera" else "scanner"
        session_id = self.access.present(event.text, method)
        if session_id == AccessControl.REPEAT:
            return  # the same presentation read twice: nothing new to show
        self.last_scan = {"length": len(event.text), "source": event.source, "at": utc_now(),
                          "result": (f"opened session {session_id}" if session_id else
                                     f"refused: {self.last_refusal['reason']}")}

    def _on_scan_unreadable(self, event: ScanUnreadable) -> None:
        log.warning("unreadable scan from %s: %s", event.source, event.reason)
        self.last_scan = {"source": event.source, "at": utc_now(),
                          "result": f"unreadable: {event.reason}"}

    def _on_device_faulted(self, event: DeviceFaulted) -> None:
        since = self.faults.get(event.device, {}).get("since", utc_now())
        self.faults[event.device] = {"detail": event.detail, "since": since}
        self.zones.on_sensor_fault(event.device)
        if event.device.startswith("shelf:"):
            self.shelves.get(int(event.device[6:]), StabilityFilter(readings=2, band_grams=1)).reset()
            self._last_stable.pop(int(event.device[6:]), None)
        self.raise_alarm(f"device_fault:{event.device}", event.detail)

    def _on_device_recovered(self, event: DeviceRecovered) -> None:
        self.faults.pop(event.device, None)
        self.clear_alarm(f"device_fault:{event.device}")

    def _on_lock_sensed(self, event: LockSensed) -> None:
        if event.door not in self.door_list:
            raise ValueError(f"lock feedback from door {event.door}, which the config lacks")
        self.lock_sensed[event.door] = event.locked

    def _schedule_lock_check(self, interval: float) -> None:
        """Compare each lock's feedback with the command; a disagreement that outlasts
        lock.feedback_seconds (a jammed bolt, a cut wire, a relay welded shut) is a lock_fault."""
        def check():
            for door, sensed in self.lock_sensed.items():
                if sensed is None:
                    continue
                kind = alarm_kind("lock_fault", door, self.several_doors)
                commanded = self.out.lock.door_locked(door)
                if sensed == commanded:
                    self._lock_mismatch_since[door] = None
                    self.clear_alarm(kind)
                elif self._lock_mismatch_since[door] is None:
                    self._lock_mismatch_since[door] = self.clock()
                elif (self.clock() - self._lock_mismatch_since[door]
                      >= self.door_list[door].lock.feedback_seconds):
                    self.raise_alarm(kind, "{}lock commanded {} but its feedback says {}".format(
                        self._door_label(door), "locked" if commanded else "open",
                        "locked" if sensed else "open"))
            self.timers.call_later(interval, "lock_check", check)
        self.timers.call_later(interval, "lock_check", check)

    def _on_operation(self, event: OperationRequested) -> None:
        try:
            result = operations.run(self.ops_context, event.name, event.args, event.source,
                                    event.renamed)
        except Exception as exc:
            event.reply(None, exc)
        else:
            event.reply(result, None)

    def _record_outcome(self, kind: str, outcome: dict[str, Any], why: str) -> None:
        """A voice pack's or a software update's step: recorded for the backend; a refusal is
        the `kind` alarm until one succeeds (what was in use stays in use meanwhile)."""
        self.store.add_record(kind, outcome)
        state = outcome["state"]
        if state in ("refused", "install_failed"):
            self.raise_alarm(kind, f"{kind.replace('_', ' ')} {state.replace('_', ' ')}: "
                                   f"{why}"[:500])
        elif state == "rolled_back":   # cabinet/update_watch.py: the release was taken back
            self.raise_alarm("update_failed", f"update to {outcome.get('version')} rolled back: "
                                              f"{why}"[:500])
        elif state != "downloading":
            self.clear_alarm(kind)
            if state == "healthy":
                self.clear_alarm("update_failed")
        self.outbox = self.store.outbox_counts()

    def _record_update(self, event: UpdateReported) -> None:
        self._record_outcome("update", event.outcome, event.outcome.get("reason", ""))
        if event.done is not None:
            event.done.set()   # cabinet/update_watch.py marks the step reported only now

    def _on_restart_wanted(self, event: RestartWanted) -> None:
        """An update's restart (cabinet/update_watch.py): never during a session, never with a
        door open or the lock being tested; checked again every second until then."""
        waiting = self._restart_wanted is not None
        self._restart_wanted = event
        if not waiting:
            log.info("restart wanted (%s): at the first moment no session is open", event.reason)
            self._restart_when_idle()

    def _restart_when_idle(self) -> None:
        wanted = self._restart_wanted
        if wanted is None or self._stopping:
            return
        # An unknown door (its switch faulted, or no GPIO) does not hold the restart back: the
        # lock stays locked across it. Only a door known to be open does.
        if self.checkout.state == "idle" and self._lock_test_timer is None \
                and self.doors.cabinet is not True and self._unfinished is None:
            self.stop(wanted.exit_status, wanted.reason)
        else:
            self.timers.call_later(1.0, "restart when idle", self._restart_when_idle)

    def _on_stop(self, event: StopRequested) -> None:
        log.info("controller stopping: %s", event.reason)
        self._stopping = True
        self.out.lock.lock()

    _handlers = {DoorOpened: _on_door_opened, DoorClosed: _on_door_closed,
                 ShelfWeighed: _on_shelf_weighed, TemperatureRead: _on_temperature,
                 CodeScanned: _on_code_scanned, ScanUnreadable: _on_scan_unreadable,
                 DeviceFaulted: _on_device_faulted, DeviceRecovered: _on_device_recovered,
                 LockSensed: _on_lock_sensed, OperationRequested: _on_operation, StopRequested: _on_stop,
                 SyncReported: lambda self, e: self._after_sync(self.sync.on_report, e),
                 CommandsArrived: lambda self, e: self._after_sync(self.sync.on_commands, e),
                 FaceChecking: lambda self, e: self.face.on_checking(e),
                 FaceRecognised: lambda self, e: self.face.on_recognised(e),
                 FaceAttemptFailed: lambda self, e: self.face.on_failed(e),
                 VoicePackChanged: lambda self, e: self._record_outcome(
                     "voice_pack", e.outcome, "; ".join(e.outcome.get("problems", [])[:8])),
                 RestartWanted: _on_restart_wanted,
                 UpdateReported: lambda self, e: self._record_update(e)}

    # --- checkout ---------------------------------------------------------------------------------
    def authorise(self, auth: Authorisation) -> str:
        """Open a session for `auth` (on the controller thread); raise Refused with the reason."""
        try:
            if self._unfinished is not None:
                raise Refused("recovering", "finishing the previous session first")
            if self._lock_test_timer is not None:
                raise Refused("selftest", "the selftest is cycling the lock; try again in a moment")
            if self._restart_wanted is not None and self.checkout.state == "idle":
                # An update's restart is due now: a session opened here would be cut short.
                raise Refused("restarting", "restarting for a software update; try again in a "
                                            "moment")
            if self.alarm_book.storage_failing:
                raise Refused("storage", "the database cannot be written (is the disk full?): "
                                         "no sale could be recorded")
            # A zone's lockout holds its doors shut for shoppers where perishables are behind
            # them; the other doors open as usual (technicians open every door, to clear it).
            held = self.zones.held_doors(self.planogram) if auth.role == "shopper" else set()
            if held and held >= set(self.door_list):
                raise Refused("food_safety", "perishable food is locked out after the cold chain "
                              "broke; a technician must remove it or clear the lockout")
            self.out.lock.choose(set(self.door_list) - held)
            stable = {n: f.stable_grams for n, f in self.shelves.items()}
            session_id = self.checkout.authorise(auth, stable_grams=stable,
                                                 faulted=set(self.faults),
                                                 door_open=self.door_open,
                                                 planogram=self.planogram)
        except Refused as refusal:
            self.refused(refusal.reason, str(refusal), auth.method)
            raise
        self.last_refusal = None
        self.receipt = None
        log.info("session %s opened for %s %s by %s%s", session_id, auth.role, auth.subject,
                 auth.method, f"; doors {sorted(set(self.door_list) - held)} released, "
                 f"{sorted(held)} held shut by the food-safety lockout" if held else "")
        return session_id

    def remote_unlock(self, nonce: str, subject: str) -> str:
        """The backend's remote_unlock for a phone that scanned the screen: the nonce must be the
        screen's live one, and opens at most one session."""
        try:
            which = self.phone.check(nonce)
        except NonceRefused as refusal:
            self.refused(refusal.reason, str(refusal), "phone")
            raise Refused(refusal.reason, str(refusal)) from None
        session_id = self.authorise(Authorisation("phone", subject, "shopper", nonce))
        self.phone.burn(which)
        return session_id

    def refused(self, reason: str, detail: str, method: str) -> None:
        """Record why someone was not let in (shown on the screen, kept in the log)."""
        self.last_refusal = {"reason": reason, "detail": detail, "method": method, "at": utc_now()}
        log.info("access refused (%s, %s): %s", method, reason, detail)

    def session_finished(self, session: dict[str, Any], outcome: str,
                         record: dict[str, Any] | None, planogram: Planogram | None) -> None:
        """A session's end is recorded (its outcome, record and new stock): follow it up."""
        if planogram is not None:
            self.planogram = planogram
        self.out.weigh_fast(False)
        self.outbox = self.store.outbox_counts()
        self._door_opened_at = None
        log.info("session %s ended: %s%s", session["session_id"], outcome,
                 f", total {record['total_fen']} fen" if record and "total_fen" in record else "")
        if outcome == "inventory" and session["authorisation"].get("restock"):
            self.zones.on_restock()
        if outcome == "no_sale":
            return
        if session["authorisation"]["role"] == UNAUTHORISED:
            lines = ", ".join(f"{line['count']} x {line['sku']}" for line in record.get("lines", ()))
            log.warning("forced opening %s: %s taken, worth %d fen", session["session_id"],
                        lines or "nothing", record.get("value_fen", 0))
            return  # nobody to show a receipt to
        self.receipt = {"session_id": session["session_id"], "outcome": outcome,
                        "lines": record.get("lines", []), "total_fen": record.get("total_fen", 0),
                        "flags": [f["kind"] for f in record["flags"]]}
        receipt_id = session["session_id"]

        def clear():
            if self.receipt and self.receipt["session_id"] == receipt_id:
                self.receipt = None
        self.timers.call_later(self.config.checkout.receipt_seconds, "receipt", clear)

    def _held_shelves(self) -> frozenset[int]:
        """The shelves behind doors a shopper's session would leave locked (a lockout). A
        one-door cabinet has none: its lockout refuses the shopper outright (the screen says
        so) and its list keeps showing what is sold when the door opens again."""
        if not self.several_doors or not self.zones.locked_out:
            return frozenset()
        return frozenset(n for door in self.zones.held_doors(self.planogram)
                         for n in self.door_list[door].shelves)

    def set_setpoint(self, celsius: float, zone: int | None = None) -> None:
        control = self.zones.zone(zone)
        control.set_setpoint(celsius)
        log.info("setpoint%s set to %.1f °C",
                 f" of {control.zone.label}" if self.zones.several else "", celsius)

    def clear_lockout(self, technician: str, zone: int | None = None) -> bool:
        """Clear the food-safety lockout of `zone` (None: the one zone locked out; with several
        locked out, the person names the zone whose food was checked)."""
        locked = [c.zone.id for c in self.zones.controls.values() if c.locked_out]
        if zone is None and len(locked) > 1:
            raise ValueError(f"zones {', '.join(map(str, locked))} are locked out: name the one "
                             "whose food was checked")
        controls = (self.zones.controls.values() if zone is None
                    else [self.zones.zone(zone)])
        cleared = False
        for control in controls:
            if control.clear_lockout(technician):
                cleared = True
                log.warning("food-safety lockout%s cleared by %s", f" of {control.zone.label}"
                            if self.zones.several else "", technician)
        if cleared:
            self._products.forget()
        return cleared

    def replace_planogram(self, new: Planogram) -> None:
        """Replace the planogram (products, prices, stock) between sessions."""
        if self.checkout.state != "idle" or self._unfinished is not None:
            raise Refused("busy", "a session is in progress; try again when it has ended")
        unchilled = self.zones.unchilled_perishables(new)
        if unchilled:
            raise ValueError("perishables behind a zone with no food-safety rule (food_safety = "
                             "\"none\"): " + ", ".join(unchilled) + "; put them behind a chilled "
                             "zone's door")
        self.store.save_planogram(new.to_json())
        self.planogram = new
        self.store.report_planogram(new.to_json(), "replaced")
        log.info("planogram replaced (version %r)", new.version)

    def _after_sync(self, handle: Callable[[Any], None], event: Any) -> None:
        """A sync event, then the outbox counted again (delivered, or new command results)."""
        try:
            handle(event)
        finally:
            self.outbox = self.store.outbox_counts()

    # --- alarms -----------------------------------------------------------------------------------
    @property
    def alarms(self) -> list[dict[str, Any]]:
        return self.alarm_book.active

    def raise_alarm(self, kind: str, detail: str) -> None:
        if self.alarm_book.raise_(kind, detail):
            log.warning("ALARM %s: %s", kind, detail)
            self._after_alarm_write()

    def clear_alarm(self, kind: str, by: str | None = None) -> None:
        if self.alarm_book.clear(kind, by):
            log.info("alarm cleared: %s%s", kind, f" by {by}" if by else "")
            self._after_alarm_write()

    def storage_failed(self, exc: BaseException) -> None:
        """The store refused a write (a full disk): alarm from memory, give the database the
        room kept for it, and retry until the store takes writes."""
        self.alarm_book.storage_failed(exc)
        if self.reserve is not None and self.reserve.release():
            self._retry_storage_in(0.0)
        self._after_alarm_write()

    def _after_alarm_write(self) -> None:
        if self.alarm_book.storage_failing:
            if self._storage_timer is None:
                self._retry_storage_in(STORAGE_RETRY_SECONDS)
            return
        self.outbox = self.store.outbox_counts()

    def _retry_storage_in(self, seconds: float) -> None:
        if self._storage_timer is not None:
            self._storage_timer.cancel()
        self._storage_timer = self.timers.call_later(seconds, "storage-retry",
                                                     self._retry_storage)

    def _retry_storage(self) -> None:
        self._storage_timer = None
        if not self.alarm_book.retry():
            self._retry_storage_in(STORAGE_RETRY_SECONDS)
            return
        self.outbox = self.store.outbox_counts()
        if self.reserve is None or self.reserve.ensure():
            for kind in ("disk_full", "storage_error"):
                self.clear_alarm(kind)   # the card has room again
        elif self.alarms and any(a["kind"] in ("disk_full", "storage_error")
                                 for a in self.alarms):
            self._retry_storage_in(ROOM_CHECK_SECONDS)  # selling on the reserve: look for room

    def lock_test(self, unlock: bool) -> None:
        """The selftest's lock cycle, as a procedure of this thread: unlocked only when no session
        is open (checked and done here, so none can start in between: authorise refuses while it
        lasts), and relocked by a timer if the selftest does not relock within LOCK_TEST_SECONDS."""
        if not unlock:
            if self._lock_test_timer is None:
                return  # the timer relocked it already: a session may hold the lock by now
            self._lock_test_timer.cancel()
            self._lock_test_timer = None
            self.out.lock.lock()
            return
        if self._lock_test_timer is not None or self.checkout.session is not None \
                or self._unfinished is not None:
            raise Refused("busy", "a session is open (or a selftest): the lock is not cycled")
        self._lock_test_timer = self.timers.call_later(LOCK_TEST_SECONDS, "lock test",
                                                       self._lock_test_over)
        self.out.lock.choose(None)   # every door's lock is cycled
        self.out.lock.unlock()

    def _lock_test_over(self) -> None:
        self._lock_test_timer = None
        self.out.lock.lock()

    def end_session(self, by: str) -> dict[str, Any]:
        """`cabinet session end`, the `end_session` command: a stuck session ended by a person."""
        session = self.checkout.session
        if session is not None and self.door_open is not False:
            # A DoorOpened may still be queued behind this: a shopper must never take goods
            # from a session ended as "no sale".
            raise Refused("door_open", "the door is open, or not known to be shut: close it")
        was = self.checkout.end_now()
        log.warning("session %s ended by %s (it was %s)", session["session_id"], by, was)
        return {"session_id": session["session_id"], "was": was}

    def acknowledge_alarm(self, kind: str, technician: str) -> bool:
        """A technician clears a latched alarm after looking (`cabinet alarm clear`). Only the
        alarms nothing else clears; the others clear themselves when their cause goes."""
        if kind.split(":")[0] not in ACKNOWLEDGED_ALARMS:
            raise ValueError(f"{kind!r} clears by itself when its cause goes; a technician "
                             f"clears only {', '.join(sorted(ACKNOWLEDGED_ALARMS))}")
        named = kind.partition(":door")[2]
        still_open = (self.doors.states.get(int(named)) if named.isdigit()
                      else self.door_open)
        if base_kind(kind) == "forced_open" and still_open:
            raise Refused("door_open", "the door is still open: close it first")
        if kind == "face_attempts":
            self.face.lift_pauses()
        active = any(a["kind"] == kind for a in self.alarms)
        self.clear_alarm(kind, by=technician)
        return active

    # --- watchdog ---------------------------------------------------------------------------------
    def _schedule_watchdog(self, interval: float) -> None:
        def ping():
            try:
                self.notifier.watchdog()
            except NotifyError as exc:
                log.error("%s", exc)
            self.timers.call_later(interval, "watchdog", ping)
        self.timers.call_later(0, "watchdog", ping)

    # --- state for the screen and /api/state ------------------------------------------------------
    def _publish(self) -> None:
        now = self.clock()
        first_door = next(iter(self.door_list))
        sensed = self.lock_sensed[first_door]
        zones = self.zones.views(now)
        snapshot = State(
            cabinet_id=self.config.cabinet.id,
            software_version=self.store.software_version,
            time=utc_now(),
            uptime_seconds=round(now - self.started_at, 1),
            door={None: "unknown", True: "open", False: "closed"}[self.door_open],
            lock="locked" if self.out.lock.locked else "unlocked",
            lock_sensed=None if sensed is None else "locked" if sensed else "unlocked",
            relays={"compressor": any(z["relays"]["compressor"] for z in zones),
                    "heater": any(z["relays"]["heater"] for z in zones),
                    "buzzer": self.out.buzzer.energised},
            temperature=zones[0]["temperature"],
            shelves=shelves_view(self.shelves, self.faults),
            alarms=alarms_view(self.alarms),
            faults={device: dict(info) for device, info in sorted(self.faults.items())},
            session=session_view(self.checkout.session, self.checkout.state,
                                 self.checkout.prompt),
            receipt=self.receipt,
            last_refusal=self.last_refusal,
            products=self._products(self.planogram, self.zones.locked_shelves(),
                                    self._held_shelves()),
            climate=zones[0]["climate"],
            doors=doors_view(self.door_list, self.doors, self.out.lock, self.lock_sensed),
            zones=zones,
            screen_qr=(None if self.checkout.session is not None else
                       {"url": self.phone.url,
                        "expires_in_seconds": round(self.phone.expires_in(), 1)}),
            last_scan=self.last_scan,
            outbox=dict(self.outbox),
            sync=self.sync.snapshot(),
            face=self.face.snapshot(),
            screen_config=self._screen_config,
            screen={})
        snapshot["screen"] = self._screen(snapshot, now)
        self.snapshot = snapshot  # one reference swap: readers see a whole snapshot or the last
        with self._published:
            self._published.notify_all()

    def wait_published(self, last: object, timeout: float) -> dict[str, Any]:
        """The published snapshot once it is another than `last`, or after `timeout` (any
        thread): the screen's event stream sends a receipt the moment it is published."""
        with self._published:
            self._published.wait_for(lambda: self.snapshot is not last, timeout)
            return self.snapshot

    def _screen(self, snapshot: dict[str, Any], now: float) -> dict[str, Any]:
        alarm_in = None
        if self._door_opened_at is not None:
            alarm_in = self.config.checkout.door_open_alarm_seconds - (now - self._door_opened_at)
        refused = None
        if self.alarm_book.storage_failing:
            refused = "storage"
        elif (self.zones.locked_out
              and self.zones.held_doors(self.planogram) >= set(self.door_list)):
            refused = "food_safety"
        return screen_for(snapshot, alarm_in_seconds=alarm_in,
                          recovering=self._unfinished is not None, shopper_refused=refused)

