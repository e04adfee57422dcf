"""A full disk, for real (issue 15 #4): cabinetd --simulate with its data folder on a small tmpfs in
a private mount namespace (`unshare`), filled to the last byte through /proc/PID/root. SQLite then
answers "database or disk is full" as it would on a full SD card.

The simulation's own files (DATA/sim: the twins' world, the 1-Wire tree) are bind-mounted from the
ordinary disk: on a cabinet they are the hardware, which a full card does not stop.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tools.daemon_process import CabinetProcess

from .conftest import RunningBackend, wait_for

MOUNT = ('d=$0 s=$1 full=$2; shift 2; mount -t tmpfs -o size=32m tmpfs "$d" && mkdir "$d/sim" '
         '&& mount --bind "$s" "$d/sim" || exit 1; if [ "$full" = full ]; then '
         'fallocate -l 8M "$d/reserve"; cat /dev/zero > "$d/ballast" 2>/dev/null; fi; exec "$@"')


def _can_unshare() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs tmpfs /mnt"],
                           capture_output=True)
    return probe.returncode == 0


pytestmark = pytest.mark.skipif(not _can_unshare(), reason="needs unshare -rm (user and mount "
                                "namespaces) to give the daemon a disk of its own to fill")


class SmallDisk:
    """A daemon whose data folder is a 32 MiB disk that the test can fill and empty (`full`:
    filled before the daemon starts, a reserve left by an earlier run in place)."""

    def __init__(self, tmp_path: Path, *args: str, full: bool = False):
        self.data = tmp_path / "data"
        (tmp_path / "sim").mkdir()
        self.data.mkdir()
        self.daemon = CabinetProcess(*args, data_dir=self.data,
                                     wrap=["unshare", "-rm", "sh", "-c", MOUNT, str(self.data),
                                           str(tmp_path / "sim"), "full" if full else "-"])
        self.daemon.wait_ready()
        wait_for(lambda: self.daemon.url, what="the daemon's URL")
        # The daemon's view of its data folder: its own mount namespace's.
        self.root = Path(f"/proc/{self.daemon.proc.pid}/root") / str(self.data).lstrip("/")

    def fill(self, *, spend_reserve: bool = False) -> None:
        """Fill the card to the last byte; `spend_reserve`: the room the daemon keeps for its
        database already used up too."""
        if spend_reserve:
            (self.root / "reserve").unlink()
        with open(self.root / "ballast", "ab") as f:
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError as exc:
                assert exc.errno == 28, exc
        assert os.statvfs(self.root).f_bavail == 0

    def free(self) -> None:
        (self.root / "ballast").unlink()

    def outbox(self) -> list[tuple[str, dict]]:
        """The outbox's records as (kind, body), read from the daemon's own disk."""
        import json
        import sqlite3

        copy = self.data.parent / "outbox-copy"
        copy.mkdir(exist_ok=True)
        for suffix in ("", "-wal"):  # the daemon is idle: a consistent pair
            shutil.copyfile(self.root / f"cabinet.db{suffix}", copy / f"cabinet.db{suffix}")
        db = sqlite3.connect(copy / "cabinet.db")
        try:
            rows = db.execute("SELECT kind, body FROM outbox ORDER BY seq").fetchall()
        finally:
            db.close()
        return [(kind, json.loads(record)["body"]) for kind, record in rows]

    def alarms(self) -> set[str]:
        return {a["kind"] for a in self.daemon.state()["alarms"]}

    def idle(self):
        s = self.daemon.state()
        return s["session"] is None and all(sh["stable"] for sh in s["shelves"]) and s


def test_a_sale_on_a_full_disk_is_alarmed_from_memory_and_recorded_when_space_returns(tmp_path):
    """On a full disk (its reserve spent too) a session in progress stuck `settling` with no
    alarm. Now: `disk_full` is raised from memory at once, the session ends (weighed) and waits to
    be recorded with the lock locked, nobody new is let in (`storage`), and when space returns the
    sale is recorded, exactly once, and the alarm clears by itself (raised and cleared)."""
    disk = SmallDisk(tmp_path)
    d = disk.daemon
    try:
        wait_for(disk.idle, timeout=20, what="idle")
        session_id = d.post("/sim/authorise", {"subject": "acct-1"})[1]["session_id"]
        d.post("/sim/door", {"state": "open"})
        d.post("/sim/shelf", {"shelf": 1, "take": {"water-550ml": 1}})
        disk.fill(spend_reserve=True)
        d.post("/sim/door", {"state": "closed"})
        wait_for(lambda: "disk_full" in disk.alarms(), timeout=10, what="disk_full")
        state = wait_for(lambda: (s := d.state())["session"]
                         and s["session"]["state"] == "recording" and s, timeout=10,
                         what="the sale weighed, waiting to be written")
        assert state["lock"] == "locked" and state["session"]["session_id"] == session_id
        status, refused = d.post("/sim/authorise", {"subject": "acct-2"})
        assert status == 409 and refused["reason"] in ("storage", "busy")
        disk.free()
        receipt = wait_for(lambda: d.state()["receipt"], timeout=20, what="the receipt")
        assert receipt["session_id"] == session_id and receipt["total_fen"] == 200
        wait_for(lambda: "disk_full" not in disk.alarms(), timeout=40, what="disk_full cleared")
        assert (disk.root / "reserve").stat().st_size == 8 << 20, "the reserve is kept again"
        wait_for(disk.idle, timeout=20, what="idle again")
        status, reply = d.post("/sim/authorise", {"subject": "acct-3"})
        assert status == 200, reply
        outbox = disk.outbox()
    finally:
        assert d.terminate() == 0, "\n".join(d.log_lines[-20:])
    sales = [body["session_id"] for kind, body in outbox if kind == "sale"]
    assert sales == [session_id], "recorded, exactly once"
    alarm_states = [(body["kind"], body["state"]) for kind, body in outbox if kind == "alarm"]
    assert ("disk_full", "raised") in alarm_states and ("disk_full", "cleared") in alarm_states


def test_an_empty_ads_playlist_runs_on_a_full_disk_and_frees_it(tmp_path):
    """`set_ads([])` could not run on a full disk, and it is how an operator frees the card: it
    runs unrecorded (deleting the ad files), the store writes again, and the command, sent again,
    is recorded `done`."""
    backend = RunningBackend(f"sqlite://{tmp_path}/backend.db")
    token = tmp_path / "device-token"
    token.write_text(backend.device_token)
    os.chmod(token, 0o600)
    config = tmp_path / "cabinet.toml"
    config.write_text(f"[sync]\nbackend_url = '{backend.url}'\ndevice_token_file = '{token}'\n"
                      "long_poll_seconds = 5\n")
    disk = SmallDisk(tmp_path, "--config", str(config))
    d = disk.daemon
    try:
        wait_for(disk.idle, timeout=20, what="idle")
        ad = disk.root / "ads" / ("ab" * 32)   # an ad fetched earlier, 4 MiB of the card
        ad.write_bytes(b"\0" * (4 << 20))
        disk.fill(spend_reserve=True)
        d.post("/sim/authorise", {"subject": "acct-1"})   # a write: the store finds it full
        wait_for(lambda: "disk_full" in disk.alarms(), timeout=10, what="disk_full")
        status, command = backend.operator("POST", "cabinets/cabinet-0001/commands",
                                           {"type": "set_ads", "args": {"playlist": []},
                                            "lifetime_seconds": 600})
        assert status == 201
        wait_for(lambda: not ad.exists(), timeout=20, what="the ad file deleted")
        wait_for(lambda: backend.operator("GET", f"commands/{command['command_id']}")[1]["status"]
                 == "done", timeout=40, what="set_ads recorded done")
    finally:
        assert d.terminate() == 0, "\n".join(d.log_lines[-20:])
        backend.close()


def test_the_reserve_records_a_sale_on_a_full_card_at_once_and_selling_goes_on(tmp_path):
    """With the room kept for the database, a card filled by something else costs no sale: the
    reserve is given back at the first refused write, the sale is recorded at once, `disk_full`
    is raised (and stays until the card has room again) and the next shopper gets in."""
    disk = SmallDisk(tmp_path)
    d = disk.daemon
    try:
        wait_for(disk.idle, timeout=20, what="idle")
        assert (disk.root / "reserve").stat().st_size == 8 << 20
        session_id = d.post("/sim/authorise", {"subject": "acct-1"})[1]["session_id"]
        d.post("/sim/door", {"state": "open"})
        d.post("/sim/shelf", {"shelf": 1, "take": {"water-550ml": 1}})
        disk.fill()
        d.post("/sim/door", {"state": "closed"})
        receipt = wait_for(lambda: d.state()["receipt"], timeout=20, what="the receipt")
        assert receipt["session_id"] == session_id
        assert not (disk.root / "reserve").exists(), "given back to the database"
        assert "disk_full" in disk.alarms()
        wait_for(disk.idle, timeout=20, what="idle again")
        status, reply = d.post("/sim/authorise", {"subject": "acct-2"})
        assert status == 200, reply
        d.post("/sim/door", {"state": "open"})
        d.post("/sim/door", {"state": "closed"})
        wait_for(lambda: (r := d.state()["receipt"]) and r["session_id"] == reply["session_id"],
                 timeout=20, what="the second sale recorded too")
        assert "disk_full" in disk.alarms(), "the card is still full"
        disk.free()
        wait_for(lambda: "disk_full" not in disk.alarms(), timeout=40, what="disk_full cleared")
        assert (disk.root / "reserve").exists()
    finally:
        assert d.terminate() == 0, "\n".join(d.log_lines[-20:])


def test_a_daemon_started_on_a_full_card_starts_with_disk_full(tmp_path):
    """Review of issue 15: on a full card the daemon could not open its database (SQLite cannot
    start its write-ahead log): after a power cut it stayed down, locked, with no alarm and no
    way to free the card remotely. The reserve an earlier run left is given back at start."""
    disk = SmallDisk(tmp_path, full=True)
    d = disk.daemon
    try:
        state = wait_for(disk.idle, timeout=20, what="started and idle")
        assert state["lock"] == "locked"
        assert "disk_full" in disk.alarms()
    finally:
        assert d.terminate() == 0, "\n".join(d.log_lines[-20:])
