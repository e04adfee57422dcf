"""Shared fixtures: real MockFactory pins, real ptys, a real SQLite file, and a waiting helper."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def wait_for(predicate, timeout: float = 5.0, interval: float = 0.02, what: str = "condition"):
    """Poll `predicate` until it returns something truthy; fail the test after `timeout`.
    (Waiting on real threads and ptys; no assertion is ever made about how long it took.)"""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


@pytest.fixture
def factory():
    f = MockFactory()
    yield f
    f.reset()


class Recorder:
    """An `emit` that keeps what it is given, safe to call from driver threads."""

    def __init__(self):
        self.events: list = []

    def __call__(self, event):
        self.events.append(event)

    def of(self, kind):
        return [e for e in list(self.events) if isinstance(e, kind)]

    def clear(self):
        self.events.clear()


@pytest.fixture
def recorder():
    return Recorder()
