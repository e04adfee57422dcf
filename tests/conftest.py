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
    """The backend (backend/, FastAPI on uvicorn) on loopback, its database migrated, with one
    registered cabinet and an admin's API token as `operator_token`."""

    def __init__(self, db_url: str, cabinet_id: str = "cabinet-0001", *, certfile=None,
                 keyfile=None, max_body: int | None = None, on_exchange=None,
                 service_kw: dict | None = None):
        from backend.app import create_app
        from backend.server import ThreadedServer
        from backend.storage import Storage
        from backend.storage.engine import migrate

        migrate(db_url)
        self.storage = Storage(db_url)
        self.app = create_app(self.storage, **(service_kw or {}),
                              **({"max_body_bytes": max_body} if max_body else {}))
        self.storage.people.create_user("admin", "admin", "correct horse battery", "test")
        self.operator_token = self.storage.people.new_token("admin", "api", "tests", None,
                                                            "test")["token"]
        self.device_token = self.storage.fleet.add_cabinet(cabinet_id)
        self.cabinet_id = cabinet_id
        app = self.app if on_exchange is None else Recording(self.app, on_exchange)
        self.server = ThreadedServer(app, certfile=certfile, keyfile=keyfile).start()
        self.url = self.server.url

    def token_for(self, role: str) -> str:
        """An API token of a new user with `role`."""
        name = f"{role}-{len(self.storage.people.users())}"
        self.storage.people.create_user(name, role, "correct horse battery", "test")
        return self.storage.people.new_token(name, "api", "tests", None, "test")["token"]

    def operator(self, method: str, path: str, body=None, token: str | None = None):
        import requests

        reply = requests.request(method, self.url + "/v1/operator/" + path, json=body,
                                 headers={"Authorization": f"Bearer {token or self.operator_token}"},
                                 timeout=10, verify=False)
        return reply.status_code, reply.json() if reply.content else None

    def close(self):
        self.server.close()
        self.storage.close()


class Recording:
    """ASGI middleware handing every request and its reply to `on_exchange(request, reply)`,
    for the tests that check real traffic against backend/openapi.json."""

    def __init__(self, app, on_exchange):
        self.app, self.on_exchange = app, on_exchange
        self.state = app.state

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        from urllib.parse import parse_qs

        body, reply = [], {"status": None, "body": b""}

        async def recv():
            message = await receive()
            body.append(message.get("body", b""))
            return message

        async def sent(message):
            if message["type"] == "http.response.start":
                reply["status"] = message["status"]
            elif message["type"] == "http.response.body":
                reply["body"] += message.get("body", b"")
            await send(message)
        await self.app(scope, recv, sent)
        self.on_exchange({"method": scope["method"], "path": scope["path"],
                          "query": parse_qs(scope["query_string"].decode()),
                          "headers": {k.decode(): v.decode("latin-1")
                                      for k, v in scope["headers"]},
                          "body": b"".join(body)}, reply)


@pytest.fixture
def backend(backend_db_url):
    b = RunningBackend(backend_db_url)
    yield b
    b.close()
