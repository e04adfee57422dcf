"""Shared fixtures: real MockFactory pins, real ptys, a real SQLite file, and a waiting helper."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

REPO = Path(__file__).resolve().parents[1]
TEST_DATA = REPO / "tests" / "data"   # the photographs: origin and licence in its README


# The longest tests start first, so that on several workers (pytest-xdist) the suite ends when
# the rest of the work does, not minutes after it with one long test left. xdist hands each
# worker two consecutive tests to begin with (tools/test.sh: --maxschedchunk 1), so the chaos
# cabinets are dealt every other place: one to each worker, each beside another long test.
LONGEST_FIRST = ("test_chaos.py", "test_readme.py", "test_kiosk.py", "test_fuzz.py",
                 "test_sync.py", "test_daemon_face.py", "test_selftest.py", "test_image.py")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
    chaos = [i for i in items if i.path.name == "test_chaos.py"]
    rest = [i for i in items if i.path.name != "test_chaos.py"]
    dealt = []
    for part in chaos:
        dealt += [part] + rest[:1]
        rest = rest[1:]
    items[:] = dealt + rest


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


def no_devices_config(tmp_path: Path, gpio: str) -> Path:
    """A config for a real (not simulated) start on this machine: none of the serial ports,
    1-Wire sensors or camera exist; `gpio` is the [gpio] table's body."""
    config = tmp_path / "c.toml"
    config.write_text(f"""
[gpio]
{gpio}
[rs485]
port = "{tmp_path}/no-rs485"
[scanner]
port = "{tmp_path}/no-scanner"
[thermometer]
w1_base_dir = "{tmp_path}/no-w1"
[camera]
enabled = false
[face]
key_file = "{tmp_path}/face.key"
""")
    return config


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


# --- the reference backend, on SQLite and on PostgreSQL --------------------------------------------

@pytest.fixture(scope="session")
def postgres():
    from tools.backend.postgres import PrivatePostgres

    server = PrivatePostgres().start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend_db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite://{tmp_path}/backend.db"
    server = request.getfixturevalue("postgres")
    import psycopg

    name = f"t{abs(hash(request.node.nodeid)) % 10**9}"
    with psycopg.connect(server.url, autocommit=True) as db:
        db.execute(f"DROP DATABASE IF EXISTS {name}")
        db.execute(f"CREATE DATABASE {name}")
    return server.url.rsplit("/", 1)[0] + "/" + name


class RunningBackend:
    """The reference backend on loopback, with one registered cabinet."""

    def __init__(self, db_url: str, cabinet_id: str = "cabinet-0001", **server_kw):
        from tools.backend.db import Database
        from tools.backend.server import BackendServer
        from tools.backend.service import Backend

        self.db = Database(db_url)
        self.service = Backend(self.db, **server_kw.pop("service_kw", {}))
        self.operator_token = "operator-secret"
        self.device_token = self.service.add_cabinet(cabinet_id)
        self.cabinet_id = cabinet_id
        self.server = BackendServer(self.service, operator_token=self.operator_token,
                                    **server_kw).start()
        self.url = self.server.url

    def operator(self, method: str, path: str, body=None):
        import requests

        reply = requests.request(method, self.url + "/v1/operator/" + path, json=body,
                                 headers={"Authorization": f"Bearer {self.operator_token}"},
                                 timeout=10, verify=False)
        return reply.status_code, reply.json()

    def close(self):
        self.server.close()
        self.db.close()


@pytest.fixture
def backend(backend_db_url):
    b = RunningBackend(backend_db_url)
    yield b
    b.close()
