"""A private PostgreSQL server in a folder, for tests and benchmarks: Debian's binaries, its own
data directory, socket and port, stopped and removed afterwards. As root, it runs as the `postgres`
user that Debian's package creates (PostgreSQL refuses to run as root)."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                   key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if not found:
        raise FileNotFoundError(f"PostgreSQL's {name} not found: install Debian's postgresql "
                                f"package (tools/setup.sh test does)")
    return found[-1]


class PrivatePostgres:
    def __init__(self):
        self.folder = Path(tempfile.mkdtemp(prefix="cabinet-pg-"))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self._as:
            shutil.chown(self.folder, "postgres", "postgres")
        self.data = self.folder / "data"

    @property
    def url(self) -> str:
        return f"postgresql://cabinet@127.0.0.1:{self.port}/postgres"

    def start(self) -> "PrivatePostgres":
        subprocess.run([*self._as, _bin("initdb"), "-D", str(self.data), "-A", "trust",
                        "-U", "cabinet", "--no-sync"], check=True, capture_output=True)
        subprocess.run([*self._as, _bin("pg_ctl"), "-D", str(self.data), "-w", "-l",
                        str(self.folder / "log"), "-o",
                        f"-k {self.folder} -p {self.port} -c listen_addresses=127.0.0.1",
                        "start"], check=True, capture_output=True)
        return self

    def stop(self) -> None:
        subprocess.run([*self._as, _bin("pg_ctl"), "-D", str(self.data), "-m", "immediate",
                        "stop"], capture_output=True)
        shutil.rmtree(self.folder, ignore_errors=True)
