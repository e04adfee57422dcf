"""The backends the benchmarks put side by side, each as its own process on loopback: today's
(`cabinet-backend serve`, backend/) and the one it replaced (the stdlib ThreadingHTTPServer
reference backend in tools/backend, as of commit PREVIOUS, taken from this repository's history
with `git archive`, so it is never kept twice in the tree).

Both answer the same protocol; each gives `url`, `operator_token`, `register(ids)` (device tokens
for cabinets), `pids()` (for RSS and CPU) and `close()`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from tools.bench.baseline import tree

REPO = Path(__file__).resolve().parents[2]
PREVIOUS = "4d1eeda"  # the last commit with the stdlib reference backend


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _url_from(proc: subprocess.Popen) -> str:
    line = proc.stdout.readline()
    found = re.search(r"(https?://\S+)", line)
    if not found:
        raise RuntimeError(f"the backend did not start: {line!r}")
    return found.group(1)


class _Process:
    """What both backends' processes share: the error count from their log, and stopping."""

    def errors_logged(self) -> int:
        """Requests the backend logged as failed (its log is kept for reading: self.log.name)."""
        text = Path(self.log.name).read_text(errors="replace")
        return text.count("request failed") + text.count("Exception in ASGI application")

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class NewBackend(_Process):
    label = "backend/ (FastAPI, uvicorn)"

    def __init__(self, db_url: str, workers: int = 1):
        self.db_url = db_url

        def cli(*args: str, stdin: str | None = None) -> str:
            return subprocess.run([sys.executable, "-m", "backend", "--db", db_url, *args],
                                  cwd=REPO, capture_output=True, text=True, check=True,
                                  input=stdin).stdout.strip()
        cli("migrate")
        cli("create-user", "bench", "--role", "operator", stdin="bench password\n")
        self.operator_token = cli("api-token", "bench", "--name", "bench")
        port = "0" if workers == 1 else str(free_port())
        self.log = tempfile.NamedTemporaryFile(prefix="new-backend-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "backend", "--db", db_url, "serve", "--port", port,
             "--workers", str(workers)], cwd=REPO, stdout=subprocess.PIPE, stderr=self.log,
            text=True)
        self.url = _url_from(self.proc)
        if workers > 1:
            _wait_listening(int(port))
        self.label = f"{self.label}, {workers} worker{'s' if workers > 1 else ''}"

    def register(self, cabinet_ids: list[str]) -> dict[str, str]:
        sys.path.insert(0, str(REPO))
        from backend.storage import Storage

        storage = Storage(self.db_url, pool_size=1)
        try:
            return {c: storage.fleet.add_cabinet(c, "bench") for c in cabinet_ids}
        finally:
            storage.close()

    def pids(self) -> list[int]:
        return [self.proc.pid, *_children(self.proc.pid)]



class OldBackend(_Process):
    label = f"tools/backend at {PREVIOUS} (stdlib threads)"

    def __init__(self, db_url: str):
        self.db_url = db_url
        self.folder = tree(PREVIOUS, ("tools/__init__.py", "tools/backend", "cabinet", "drivers"))
        if self.folder is None:
            raise RuntimeError(f"the old backend needs commit {PREVIOUS} in this clone")
        self.operator_token = "bench-operator"
        self.log = tempfile.NamedTemporaryFile(prefix="old-backend-", suffix=".log", delete=False)
        token = self.folder / "operator-token"
        token.write_text(self.operator_token)
        os.chmod(token, 0o600)
        self.register(["cabinet-0000"])  # creates the schema before the server starts
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tools.backend", "serve", "--db", db_url, "--port", "0",
             "--operator-token-file", str(token)], cwd=self.folder, stdout=subprocess.PIPE,
            stderr=self.log, text=True)
        self.url = _url_from(self.proc)

    def register(self, cabinet_ids: list[str]) -> dict[str, str]:
        script = ("import json, sys\nfrom tools.backend.db import Database\n"
                  "from tools.backend.service import Backend\n"
                  "b = Backend(Database(sys.argv[1]))\n"
                  "print(json.dumps({c: b.add_cabinet(c) for c in json.loads(sys.stdin.read())}))")
        out = subprocess.run([sys.executable, "-c", script, self.db_url], cwd=self.folder,
                             input=json.dumps(cabinet_ids), capture_output=True, text=True,
                             check=True).stdout
        return json.loads(out)

    def pids(self) -> list[int]:
        return [self.proc.pid]

    def close(self) -> None:
        super().close()
        shutil.rmtree(self.folder, ignore_errors=True)


def _children(pid: int) -> list[int]:
    try:
        found = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    pids = [int(p) for p in found]
    return pids + [c for p in pids for c in _children(p)]


def _wait_listening(port: int, timeout: float = 30) -> None:
    import time
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listening on {port}")


def usage(pids: list[int]) -> tuple[float, float]:
    """(CPU seconds so far, resident MB now) summed over the processes."""
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = rss = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            cpu += (int(fields[11]) + int(fields[12])) / ticks
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss += int(line.split()[1]) / 1024
        except OSError:
            pass
    return cpu, rss


def postgres_pids(data_dir: Path) -> list[int]:
    """The PostgreSQL server's processes (the postmaster and its backends)."""
    try:
        main = int((data_dir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError):
        return []
    return [main, *_children(main)]


def pg_database(server, name: str) -> str:
    import psycopg

    with psycopg.connect(server.url, autocommit=True) as db:
        db.execute(f"DROP DATABASE IF EXISTS {name}")
        db.execute(f"CREATE DATABASE {name}")
    return server.url.rsplit("/", 1)[0] + "/" + name
