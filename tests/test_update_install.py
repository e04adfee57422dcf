"""Remote updates end to end (issue 20; docs/updates.md): a simulated cabinet installed as the SD
image leaves it (a release's venv in OPT/venvs/, the `venv` link), run under its own unit's rules
(tools/unit_runner.py reads systemd/cabinetd.service, cabinet-update.path and .service), syncing
with the reference backend. The operator sends update_software; the cabinet fetches the release
from another host, verifies it, the root installer builds and checks it and switches, and the
daemon restarts into it between sessions, never during one. A release that crashes at start and
one whose selftest fails are rolled back by themselves, reported, and the cabinet keeps selling.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import re
import shutil
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from cabinet import supervisor
from cabinet.installer import build_venv
from tools import release
from tools.unit_runner import PathTrigger, UnitRunner

from .conftest import REPO, RunningBackend, wait_for

SYSTEMD = REPO / "systemd"


def _this_hosts_address() -> str | None:
    """An address of this machine that is not loopback: the cabinet downloads only from other
    hosts (cabinet/downloads.py), and this test's file server must look like one."""
    import socket

    out = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True,
                         text=True).stdout if shutil.which("ip") else ""
    found = [a for a in re.findall(r"inet (\d+\.\d+\.\d+\.\d+)/", out)
             if not a.startswith("127.")]
    for probe in ("192.0.2.1", "10.255.255.255", "172.31.255.255"):   # no packet is sent
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.connect((probe, 9))
                found.append(s.getsockname()[0])
            except OSError:
                pass
    found = [a for a in found if not a.startswith("127.") and a != "0.0.0.0"]
    return found[0] if found else None


ADDRESS = _this_hosts_address()
pytestmark = pytest.mark.skipif(ADDRESS is None, reason="no non-loopback IPv4 address here")


def _broken_copy(tmp: Path, name: str, *changes: tuple[str, str, str]) -> Path:
    """A copy of this checkout with (file, old, new) replaced."""
    tree = tmp / name
    shutil.copytree(REPO, tree, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "__pycache__", "var", ".pytest_cache"))
    for file, old, new in changes:
        path = tree / file
        text = path.read_text()
        assert old in text, f"{file}: {old!r} not found"
        path.write_text(text.replace(old, new, 1))
    return tree


LAST_MIGRATION = '    INSERT INTO schema_floor VALUES (6);\n    """,\n]'


def _migration(sql: str) -> tuple[str, str, str]:
    """A release that adds migration 7."""
    return ("cabinet/store.py", LAST_MIGRATION, LAST_MIGRATION[:-1] + f'    """{sql}""",\n]')


@pytest.fixture(scope="module")
def releases(tmp_path_factory):
    """Four releases of this checkout: 0.90.0 (the SD image's), 0.91.0 (the update), 0.92.0 that
    crashes at start, 0.93.0 whose selftest fails a line 0.90.0 passes."""
    folder = tmp_path_factory.mktemp("releases")
    public = release.keygen(folder / "key")
    key = folder / "key" / "release-signing-key"
    made = {}
    crash = _broken_copy(folder, "crash", ("cabinet/app.py", "    notifier = Notifier()\n",
                         "    notifier = Notifier()\n    raise RuntimeError('a broken release')\n"))
    # Its selftest fails, after it has added a table and a column (a rollback must read that).
    unhealthy = _broken_copy(folder, "unhealthy", ("cabinet/selftest.py",
                             "    def _disk(self) -> Check:\n",
                             "    def _disk(self) -> Check:\n"
                             "        return Check('disk space', False, 'a broken release')\n"),
                             _migration("CREATE TABLE added (x INTEGER);\n"
                                        "ALTER TABLE sales ADD COLUMN added TEXT;\n"))
    breaking = _broken_copy(folder, "breaking", _migration(
        "ALTER TABLE sales RENAME TO sales_v7;\nUPDATE schema_floor SET readable_from = 7;\n"))
    for version, tree in (("0.90.0", REPO), ("0.91.0", REPO), ("0.92.0", crash),
                          ("0.93.0", unhealthy), ("0.94.0", breaking)):
        bundle = folder / "www" / f"cabinet-{version}.release"
        bundle.parent.mkdir(exist_ok=True)
        release.build(key, bundle, [], version, tree)
        made[version] = bundle
    return {"public": public, "bundles": made, "www": folder / "www"}


@pytest.fixture(scope="module")
def file_server(releases):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler,
                                directory=str(releases["www"]))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer((ADDRESS, 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://{ADDRESS}:{server.server_address[1]}"
    server.shutdown()


class Cabinet:
    """OPT with 0.90.0 installed as first boot leaves it, the backend, cabinetd under its unit,
    and the path unit's installer."""

    def __init__(self, tmp: Path, releases):
        self.opt, self.data, self.hooks = tmp / "opt", tmp / "data", tmp / "hooks"
        self.data.mkdir()
        self.hooks.mkdir()
        shutil.copy(REPO / "cabinet" / "supervisor.py", self.hooks / "supervisor.py")
        bundle = releases["bundles"]["0.90.0"]
        from cabinet.release import public_key, verify
        verify(bundle, public_key(releases["public"]), tmp / "unpacked")
        name = f"0.90.0-{_sha(bundle)[:12]}"
        venv = build_venv(tmp / "unpacked" / "wheels", "0.90.0", self.opt / "venvs" / name,
                          running=Path(sys.prefix))
        (venv / ".complete").write_text(name)
        supervisor.switch(self.opt, name)
        self.first = name
        self.backend = RunningBackend(f"sqlite://{tmp}/backend.db")
        token = tmp / "device-token"
        token.write_text(self.backend.device_token)
        token.chmod(0o600)
        self.config = tmp / "cabinet.toml"
        self.config.write_text(
            f"[cabinet]\ndata_dir = '{self.data}'\n"
            f"[checkout]\nplanogram_file = '{REPO / 'config' / 'planogram.toml'}'\n"
            f"[sync]\nbackend_url = '{self.backend.url}'\ndevice_token_file = '{token}'\n"
            "long_poll_seconds = 2\n"
            f"[updates]\npublic_key = '{releases['public']}'\ninstall_dir = '{self.opt}'\n")
        paths = {"/opt/cabinet": str(self.opt), "/etc/cabinet/cabinet.toml": str(self.config),
                 "/var/lib/cabinet": str(self.data), "/usr/local/lib/cabinet": str(self.hooks),
                 "/usr/bin/python3": getattr(sys, "_base_executable", sys.executable)}
        self.runner = UnitRunner(SYSTEMD / "cabinetd.service", paths, data_dir=self.data,
                                 timeout_start=60, restart_seconds=0.5).start()
        self.installer = PathTrigger(SYSTEMD / "cabinet-update.path",
                                     SYSTEMD / "cabinet-update.service", paths).start()

    def daemon(self, version: str, timeout: float = 90):
        def running():
            d = self.runner.ready_daemon(timeout)
            try:
                return d if d.state()["software_version"] == version else None
            except OSError:   # it stopped as it was asked: the next one is coming
                return None
        try:
            return wait_for(running, timeout=timeout, interval=0.3,
                            what=f"cabinetd {version} READY")
        except AssertionError:
            raise AssertionError(f"no cabinetd {version}: runs {self.runner.runs}, state "
                                 f"{self.state()}, hooks {self.runner.hook_output[-4:]}, "
                                 f"installer {self.installer.output[-3:]}") from None

    def send_update(self, url: str, sha256: str) -> None:
        status, _ = self.backend.operator("POST", "cabinets/cabinet-0001/commands", {
            "type": "update_software", "args": {"url": url, "sha256": sha256}})
        assert status == 201

    def state(self) -> dict:
        return supervisor.read_state(self.opt)

    def records(self, collection: str) -> list[dict]:
        return self.backend.operator("GET", f"{collection}?cabinet_id=cabinet-0001")[1]["records"]

    def close(self) -> None:
        self.installer.stop()
        self.runner.stop()
        self.backend.close()


@pytest.fixture
def cabinet(tmp_path, releases):
    c = Cabinet(tmp_path, releases)
    yield c
    c.close()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _idle(daemon):
    s = daemon.state()
    return s["session"] is None and s["receipt"] is None and all(
        sh["stable"] for sh in s["shelves"]) and s


def open_session(daemon, subject: str) -> str:
    said = []

    def authorised():
        status, reply = daemon.post("/sim/authorise", {"subject": subject})
        said[:] = [status, reply]
        return status == 200 and reply["session_id"]
    try:
        session = wait_for(authorised, timeout=30, interval=0.3, what="a session to open")
    except AssertionError:
        raise AssertionError(f"no session: the last answer {said}") from None
    daemon.post("/sim/door", {"state": "open"})
    daemon.post("/sim/shelf", {"shelf": 1, "take": {"water-550ml": 1}})
    return session


def close_session(daemon) -> dict:
    daemon.post("/sim/door", {"state": "closed"})
    return wait_for(lambda: daemon.state()["receipt"], timeout=20, what="the receipt")


def test_an_update_through_the_backend_switches_between_sessions_and_loses_no_sale(
        cabinet, releases, file_server):
    old = cabinet.daemon("0.90.0")
    close_session_in = open_session(old, "acct-before")
    assert close_session(old)["total_fen"] == 200
    bundle = releases["bundles"]["0.91.0"]
    wait_for(lambda: _idle(old), timeout=20, what="idle again")

    # A shopper is inside when the new release is switched to: the old daemon keeps the session.
    during = open_session(old, "acct-during")
    cabinet.send_update(f"{file_server}/{bundle.name}", _sha(bundle))
    wait_for(lambda: cabinet.state().get("state") == "trial", timeout=180, interval=0.5,
             what="the installer to switch to 0.91.0")
    assert supervisor.running_venv(cabinet.opt).startswith("0.91.0-")
    import time
    time.sleep(5)   # the watch has seen the switch (it polls every 2 s): still no restart
    assert old.proc.poll() is None and old.state()["session"]["session_id"] == during
    assert old.state()["software_version"] == "0.90.0"
    assert close_session(old)["total_fen"] == 200

    new = cabinet.daemon("0.91.0")
    assert new.state()["software_version"] == "0.91.0"
    wait_for(lambda: cabinet.state().get("state") == "healthy", timeout=90, interval=0.5,
             what="0.91.0 healthy")
    open_session(new, "acct-after")
    close_session(new)

    def all_sales():
        sales = cabinet.records("sales")
        return len(sales) >= 3 and sales
    sales = wait_for(all_sales, timeout=30, interval=0.5, what="three sales at the backend")
    sessions = [s["body"]["session_id"] for s in sales]
    assert len(sessions) == len(set(sessions)) == 3, "no sale lost or sent twice"
    assert during in sessions and close_session_in in sessions
    steps = wait_for(lambda: [r["body"]["state"] for r in cabinet.records("updates")
                              if r["body"]["state"] == "healthy"] and cabinet.records("updates"),
                     timeout=30, interval=0.5, what="the update's steps at the backend")
    states = [r["body"]["state"] for r in steps]
    assert states[:2] == ["downloading", "verified"] and "switched" in states \
        and states.index("switched") < states.index("healthy"), states
    assert [r["status"] for r in cabinet.runner.runs] == ["75"], "one restart, for the update"
    assert {p.name for p in (cabinet.opt / "venvs").iterdir()} == {
        cabinet.first, supervisor.running_venv(cabinet.opt)}, "the previous release is kept"
    _, cabinets = cabinet.backend.operator("GET", "cabinets")
    assert cabinets["cabinets"][0]["software_version"] == "0.91.0"


@pytest.mark.parametrize("version, why", [
    ("0.92.0", r"failed 3 starts: exit status 1"),
    ("0.93.0", r"selftest failed: disk space: a broken release"),
])
def test_a_broken_release_is_rolled_back_by_itself_and_the_cabinet_keeps_selling(
        cabinet, releases, file_server, version, why):
    old = cabinet.daemon("0.90.0")
    bundle = releases["bundles"][version]
    cabinet.send_update(f"{file_server}/{bundle.name}", _sha(bundle))
    wait_for(lambda: cabinet.state().get("state") == "rolled_back", timeout=240, interval=0.5,
             what=f"{version} rolled back")
    assert re.search(why, cabinet.state()["reason"]), cabinet.state()
    assert supervisor.running_venv(cabinet.opt) == cabinet.first
    back = cabinet.daemon("0.90.0")
    assert back is not old
    alarm = wait_for(lambda: [a for a in back.state()["alarms"] if a["kind"] == "update_failed"],
                     timeout=20, interval=0.3, what="the update_failed alarm")
    assert re.search(why, alarm[0]["detail"]), alarm
    open_session(back, "acct-after-rollback")
    assert close_session(back)["total_fen"] == 200
    reported = wait_for(lambda: [r["body"] for r in cabinet.records("updates")
                                 if r["body"]["state"] == "rolled_back"],
                        timeout=30, interval=0.5, what="rolled_back at the backend")
    assert reported[0]["version"] == version and re.search(why, reported[0]["reason"])
    assert not any(p.name.startswith(version) for p in (cabinet.opt / "venvs").iterdir()), \
        "the failed release is removed"
    if version == "0.93.0":   # it had migrated the database: the previous version reads it
        with sqlite3.connect(cabinet.data / "cabinet.db") as db:
            assert db.execute("PRAGMA user_version").fetchone()[0] == 7


def test_a_release_whose_migration_the_running_version_could_not_read_is_refused(
        cabinet, releases, file_server):
    """A rollback would find a database it cannot open: the installer refuses before the
    switch, the database untouched, and the cabinet keeps its version and keeps selling."""
    old = cabinet.daemon("0.90.0")
    bundle = releases["bundles"]["0.94.0"]
    cabinet.send_update(f"{file_server}/{bundle.name}", _sha(bundle))
    wait_for(lambda: cabinet.state().get("state") == "install_failed", timeout=180,
             interval=0.5, what="0.94.0 refused by the installer")
    assert "a rollback must read it" in cabinet.state()["reason"], cabinet.state()
    assert supervisor.running_venv(cabinet.opt) == cabinet.first
    alarm = wait_for(lambda: [a for a in old.state()["alarms"] if a["kind"] == "update"],
                     timeout=20, interval=0.3, what="the update alarm")
    assert "install failed" in alarm[0]["detail"]
    with sqlite3.connect(cabinet.data / "cabinet.db") as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 6, "only a copy was migrated"
    open_session(old, "acct-after-refusal")
    assert close_session(old)["total_fen"] == 200
    assert cabinet.runner.runs == [], "never restarted"



def test_a_power_cut_at_each_step_leaves_a_cabinet_that_starts_on_a_complete_version(
        tmp_path, releases):
    """tools/chaos_update.py: the installer, or the rollback, killed at each step; then the
    unit's ExecStartPre and cabinetd from the link (READY), and the installer run again."""
    from tools import chaos_update

    bundles = releases["bundles"]
    for step in (*chaos_update.INSTALL_STEPS, *chaos_update.ROLLBACK_STEPS):
        assert chaos_update.cut(tmp_path / step, releases["public"], bundles["0.90.0"],
                                bundles["0.91.0"], step) == []
