"""Room kept on the card for the database: a file of RESERVE_BYTES in the data folder, given back
the moment the card is full.

A card filled by something else (logs, a stuck download, another program) would otherwise stop
the cabinet recording the sale in progress, the alarm that says so and the `set_ads` that frees the
card, and a daemon restarted on it could not even open its database (SQLite needs room to start
its write-ahead log). With the reserve given back, all of that is written, the cabinet goes on
selling with `disk_full` raised, and it refuses sessions only once the reserve is spent too. The
reserve is made again (and `disk_full` cleared) once the card has room for it and a margin.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

log = logging.getLogger("cabinetd")

RESERVE_BYTES = 8 * 1024 * 1024     # thousands of sales, alarms and command results
MARGIN_BYTES = 8 * 1024 * 1024      # free beyond the reserve before the card counts as not full


class Reserve:
    def __init__(self, data_dir: str | Path):
        self.path = Path(data_dir) / "reserve"

    @property
    def held(self) -> bool:
        try:
            return self.path.stat().st_size >= RESERVE_BYTES
        except OSError:
            return False

    def ensure(self) -> bool:
        """Hold the reserve; True when it is held (made now, or already), False when the card
        has no room for it and the margin (it is still full)."""
        if self.held:
            return True
        try:
            if shutil.disk_usage(self.path.parent).free < RESERVE_BYTES + MARGIN_BYTES:
                return False
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                os.posix_fallocate(fd, 0, RESERVE_BYTES)  # real blocks, not a sparse file
            finally:
                os.close(fd)
        except OSError as exc:
            log.warning("cannot keep %s as room for the database: %s", self.path, exc)
            self.path.unlink(missing_ok=True)
            return False
        return True

    def release(self) -> bool:
        """Give the room back to the database; True when there was a reserve to give."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        except OSError as exc:
            log.error("cannot give back %s: %s", self.path, exc)
            return False
        log.error("the card is full: %d MiB kept for the database given back to it",
                  RESERVE_BYTES >> 20)
        return True
