"""Software updates on the cabinet, the daemon's first step: a release bundle is fetched (the
backend's update_software, resumed after a cut) or uploaded (`cabinet update FILE`), checked
against the release key of the config (cabinet/release.py), and spooled, verified, for the root
installer (cabinet/installer.py; docs/updates.md says the whole way).

Nothing here installs, switches or restarts anything (cabinet/update_watch.py does the restart): a bundle that is refused leaves nothing
but its `update` record. A verified one is kept in DATA/updates/ready/VERSION-SHA12/ (the bundle
itself, for the installer to verify again, since it must not trust this daemon, and its wheels),
and `ready.json` names the newest; older spooled releases are removed. Each step is an `update`
record: downloading, verified, or refused with the reason.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import uuid
from pathlib import Path
from typing import Any, Callable

from .downloads import Spool
from .release import MAX_BUNDLE_BYTES, ReleaseRefused, public_key, verify

log = logging.getLogger("cabinetd.update")


class Updates(Spool):
    """DATA/updates: releases from the backend's command or a technician's upload
    (cabinet/downloads.Spool), verified and spooled in ready/."""

    suffix = ".release"
    Refused = ReleaseRefused

    def __init__(self, folder: str | Path, key: str, *,
                 outcome: Callable[[dict[str, Any]], None] = lambda record: None,
                 ca_file: str = "", refuse_loopback: bool = True, timeout: float = 30.0):
        """`key`: the config's updates.public_key (empty: every update is refused)."""
        super().__init__("updates", folder, max_bytes=MAX_BUNDLE_BYTES, timeout=timeout,
                         ca_file=ca_file, refuse_loopback=refuse_loopback)
        self._key = public_key(key) if key else None
        self._outcome = outcome
        self._lock = threading.Lock()

    def ready(self) -> dict[str, Any] | None:
        """The newest verified release waiting for the installer, or None."""
        try:
            return json.loads((self.root / "ready.json").read_text())
        except (OSError, ValueError):
            return None

    # --- cabinet/downloads.Spool asks ------------------------------------------------------------
    def take(self, path: Path, sha256: str) -> dict[str, Any]:
        return self.check(path, sha256)

    def refusal(self, why: str) -> ReleaseRefused:
        return ReleaseRefused(why)

    def fetching(self, url: str, sha256: str) -> bool:
        self._report({"state": "downloading", "sha256": sha256, "url": url[:300]})
        return True

    def download_failed(self, url: str, sha256: str, why: str) -> None:
        self._report({"state": "refused", "sha256": sha256,
                      "reason": f"download failed: {why}"[:300]})

    # --- checking ------------------------------------------------------------------------------------
    def check(self, bundle: Path, sha256: str) -> dict[str, Any]:
        """Verify `bundle` and spool it for the installer; raise ReleaseRefused (reported as an
        `update` record) when it must not be installed."""
        with self._lock:
            staging = self.root / f"staging-{uuid.uuid4().hex}"
            try:
                if self._key is None:
                    raise ReleaseRefused("no release key configured (updates.public_key): "
                                         "this cabinet takes no software updates")
                manifest = verify(bundle, self._key, staging / "unpacked")
                shutil.copyfile(bundle, staging / "release.bundle")
                name = f"{manifest['version']}-{sha256[:12]}"
                final = self.root / "ready" / name
                final.parent.mkdir(parents=True, exist_ok=True)
                shutil.rmtree(final, ignore_errors=True)
                staging.rename(final)
                record = {"state": "verified", "sha256": sha256,
                          "version": manifest["version"], "wheels": len(manifest["files"])}
                # A new attempt each time: the same release sent again is tried again.
                self._write_ready({**record, "path": str(final), "attempt": uuid.uuid4().hex})
                for old in (self.root / "ready").iterdir():
                    if old != final:
                        shutil.rmtree(old, ignore_errors=True)
            except ReleaseRefused as refusal:
                shutil.rmtree(staging, ignore_errors=True)
                self._report({"state": "refused", "sha256": sha256, "reason": str(refusal)})
                raise
            except BaseException as exc:   # a full card, a read error: nothing left behind
                shutil.rmtree(staging, ignore_errors=True)
                refusal = ReleaseRefused(f"cannot check: {type(exc).__name__}: {exc}"[:300])
                self._report({"state": "refused", "sha256": sha256, "reason": str(refusal)})
                raise refusal from exc
        log.info("release %s verified and spooled for the installer", record["version"])
        self._report(record)
        return record

    def _write_ready(self, ready: dict[str, Any]) -> None:
        tmp = self.root / "ready.json.tmp"
        tmp.write_text(json.dumps(ready))
        with open(tmp) as f:
            os.fsync(f.fileno())
        os.replace(tmp, self.root / "ready.json")

    def _report(self, record: dict[str, Any]) -> None:
        if record["state"] == "refused":
            log.warning("release %s refused: %s", record["sha256"][:12], record["reason"])
        try:
            self._outcome(record)
        except Exception:
            log.exception("update outcome not recorded")
