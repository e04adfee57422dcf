"""Start `cabinetd` as a real process and talk to it over HTTP: for black-box tests and benchmarks.

The process gets its own NOTIFY_SOCKET, so the caller sees READY/WATCHDOG/STOPPING exactly as
systemd would, and its URL is read from the first log lines (`--http-port 0`).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path


class CabinetProcess:
    def __init__(self, *args: str, data_dir: str | Path, env: dict | None = None,
                 watchdog_usec: int | None = None, wrap: list[str] | None = None,
                 program: list[str] | None = None, cwd: str | Path | None = None):
        """`wrap` comes before the command, which it must exec (the pid stays the daemon's): a
        private mount namespace with the data folder on a small tmpfs, say. `program`: the
        daemon to run (this checkout's by default; a release's venv's cabinetd, say)."""
        self._tmp = tempfile.TemporaryDirectory(prefix="cabinetd-notify-")
        self.notify_path = os.path.join(self._tmp.name, "notify")
        self._notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._notify.bind(self.notify_path)
        self._notify.settimeout(0.1)
        self.notifications: list[tuple[float, str]] = []
        self.log_lines: list[str] = []
        self.url: str | None = None
        self.started = time.monotonic()
        full_env = {**os.environ, "NOTIFY_SOCKET": self.notify_path, **(env or {})}
        full_env.pop("JOURNAL_STREAM", None)
        if watchdog_usec:
            full_env["WATCHDOG_USEC"] = str(watchdog_usec)
        self.proc = subprocess.Popen(
            [*(wrap or []), *(program or [sys.executable, "-m", "cabinet"]), "--simulate",
             "--http-port", "0", "--data-dir", str(data_dir), *args],
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=full_env, cwd=cwd)
        self._threads = [threading.Thread(target=self._read_log, daemon=True),
                         threading.Thread(target=self._read_notify, daemon=True)]
        for t in self._threads:
            t.start()

    def _read_log(self):
        for line in self.proc.stderr:
            self.log_lines.append(line.rstrip("\n"))
            found = re.search(r"listening on (http://\S+)", line)
            if found and self.url is None:
                self.url = found.group(1)

    def _read_notify(self):
        while True:
            try:
                data = self._notify.recv(4096)
            except socket.timeout:
                if self.proc.poll() is not None:
                    return
                continue
            except OSError:
                return
            self.notifications.append((time.monotonic(), data.decode()))

    def wait_ready(self, timeout: float = 30) -> float:
        """Seconds from spawn to READY=1."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for at, message in list(self.notifications):
                if "READY=1" in message:
                    return at - self.started
            if self.proc.poll() is not None:
                raise RuntimeError("cabinetd exited: " + "\n".join(self.log_lines[-20:]))
            time.sleep(0.01)
        raise TimeoutError("no READY=1 from cabinetd:\n" + "\n".join(self.log_lines[-20:]))

    def request(self, method: str, path: str, body=None, *, raw: bytes | None = None,
                content_type: str = "application/json", timeout: float = 10):
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": content_type})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as reply:
                return reply.status, json.load(reply)
        except urllib.error.HTTPError as err:
            return err.code, json.load(err)

    def state(self) -> dict:
        status, body = self.request("GET", "/api/state")
        assert status == 200, body
        return body

    def post(self, path: str, body=None, **kw):
        return self.request("POST", path, {} if body is None and "raw" not in kw else body, **kw)

    def terminate(self, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            # Say where it stood: its last log lines and what it told systemd.
            raise AssertionError(
                f"the daemon did not stop within {timeout} s of SIGTERM; its log ends:\n"
                + "\n".join(self.log_lines[-30:]) + "\nnotifications: "
                + repr([m for _, m in self.notifications][-5:])) from None
        finally:
            self.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._notify.close()
        self._tmp.cleanup()
