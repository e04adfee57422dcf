"""Lock, relays and door switch on gpiozero's own MockFactory pins."""

from __future__ import annotations

import pytest

from drivers.door import DoorSwitch
from drivers.events import DoorClosed, DoorOpened
from drivers.lock import LockRelay
from drivers.relay import Relay


def _levels(pin):
    return [s.state for s in pin.states[1:]]  # states[0] is the mock's pre-setup state


@pytest.mark.parametrize("active_high, locked_level", [(True, False), (False, True)])
def test_lock_is_driven_locked_at_construction_and_never_pulses_open(factory, active_high,
                                                                     locked_level):
    lock = LockRelay(17, active_high=active_high, pin_factory=factory)
    pin = factory.pin(17)
    assert lock.locked
    assert set(_levels(pin)) <= {locked_level}, "the lock must never see the unlocking level"
    assert pin.state == locked_level
    lock.unlock()
    assert not lock.locked and pin.state == (not locked_level)
    lock.lock()
    assert lock.locked and pin.state == locked_level
    lock.close()


def test_a_second_daemon_start_keeps_the_lock_locked(factory):
    # A restart builds the relay again on a pin already at the locked level: no pulse.
    LockRelay(17, active_high=True, pin_factory=factory).close()
    before = len(factory.pin(17).states)
    lock = LockRelay(17, active_high=True, pin_factory=factory)
    assert not any(s.state for s in factory.pin(17).states[before:])
    assert lock.locked
    lock.close()


def test_closing_the_lock_relay_releases_it_locked(factory):
    lock = LockRelay(17, active_high=True, pin_factory=factory)
    lock.unlock()
    lock.close()
    assert factory.pin(17).state is False


def test_relay_energise_and_release_on_active_low_board(factory):
    relay = Relay("compressor", 22, active_high=False, pin_factory=factory)
    pin = factory.pin(22)
    assert not relay.energised and pin.state is True
    relay.energise()
    assert relay.energised and pin.state is False
    relay.release()
    assert pin.state is True
    relay.close()


def test_door_switch_posts_opened_and_closed(factory, recorder):
    door = DoorSwitch(27, pull_up=True, bounce_seconds=0, pin_factory=factory, emit=recorder)
    pin = factory.pin(27)
    pin.drive_low()   # switch closed by the door: pin to ground
    assert isinstance(recorder.events[-1], DoorClosed) and not door.is_open
    pin.drive_high()
    assert isinstance(recorder.events[-1], DoorOpened) and door.is_open
    recorder.clear()
    door.announce()
    assert isinstance(recorder.events[-1], DoorOpened)
    door.close()
    pin.drive_low()   # after close() nothing more is posted
    assert len(recorder.events) == 1


def test_door_switch_with_pull_down_wiring(factory, recorder):
    door = DoorSwitch(27, pull_up=False, bounce_seconds=0, pin_factory=factory, emit=recorder)
    factory.pin(27).drive_high()
    assert not door.is_open and isinstance(recorder.events[-1], DoorClosed)
    door.close()
