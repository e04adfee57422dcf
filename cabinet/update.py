"""Software updates on the cabinet, the part built so far: a release bundle is fetched (the
backend's update_software) or uploaded (`cabinet update FILE`), checked against the release key of
the config (cabinet/release.py), and spooled, verified, for the installer (docs/updates.md).

Nothing here installs, switches or restarts anything: a bundle that is refused leaves nothing
but its `update` record. A verified one is kept in DATA/updates/ready/VERSION-SHA12/ (the bundle
itself, for the installer to verify again, since it must not trust this daemon, and its wheels),
and `ready.json` names the newest; older spooled releases are removed. Each step is an `update`
record: downloading, verified, or refused with the reason.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import shutil
import threading
import uuid
from pathlib import Path
from typing import Any, Callable

from .downloads import Downloads
from .release import MAX_BUNDLE_BYTES, ReleaseRefused, public_key, verify

log = logging.getLogger("cabinetd.update")


class Updates(Downloads, threading.Thread):
    def __init__(self, folder: str | Path, key: str, *,
                 outcome: Callable[[dict[str, Any]], None] = lambda record: None,
                 ca_file: str = "", refuse_loopback: bool = True, timeout: float = 30.0):
        """`key`: the config's updates.public_key (empty: every update is refused)."""
        threading.Thread.__init__(self, name="updates", daemon=True)
        Downloads.__init__(self, Path(folder) / "incoming", max_bytes=MAX_BUNDLE_BYTES,
                           timeout=timeout, ca_file=ca_file, refuse_loopback=refuse_loopback)
        self.root = Path(folder)
        self._key = public_key(key) if key else None
        self._outcome = outcome
        self._wanted: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        for leftover in (*self.root.glob("staging-*"), *self.folder.iterdir()):
            (shutil.rmtree if leftover.is_dir() else Path.unlink)(leftover)

    def ready(self) -> dict[str, Any] | None:
        """The newest verified release waiting for the installer, or None."""
        try:
            return json.loads((self.root / "ready.json").read_text())
        except (OSError, ValueError):
            return None

    # --- asking ------------------------------------------------------------------------------------
    def want(self, url: str, sha256: str) -> None:
        """The backend's update_software: fetched and checked in this thread."""
        self._wanted.put((url, sha256))

    def close(self) -> None:
        self._wanted.put(None)
        if self.is_alive():
            self.join(timeout=5)

    def run(self) -> None:
        while True:
            item = self._wanted.get()
            if item is None:
                return
            url, sha = item
            bundle = self.folder / f"{sha}.release"
            self._report({"state": "downloading", "sha256": sha, "url": url[:300]})
            try:
                self._fetch(url, sha, bundle)
                self.check(bundle, sha)
            except ReleaseRefused:
                pass   # reported by check
            except Exception as exc:   # the download's
                self._report({"state": "refused", "sha256": sha,
                              "reason": f"download failed: {str(exc) or type(exc).__name__}"[:300]})
            finally:
                bundle.unlink(missing_ok=True)

    def receive(self, stream: Any, length: int) -> dict[str, Any]:
        """`cabinet update FILE`: a bundle sent in a request's body, copied and checked."""
        if not 0 < length <= MAX_BUNDLE_BYTES:
            raise ReleaseRefused(f"{length} bytes: a release is 1 byte to "
                                 f"{MAX_BUNDLE_BYTES >> 20} MiB")
        try:
            self._room_for(length)
        except ValueError as exc:
            raise ReleaseRefused(str(exc)) from None
        path = self.folder / f"upload-{uuid.uuid4().hex}.release"
        digest = hashlib.sha256()
        try:
            with open(path, "wb") as out:
                left = length
                while left:
                    chunk = stream.read(min(left, 1 << 20))
                    if not chunk:
                        raise ReleaseRefused("the upload ended early")
                    digest.update(chunk)
                    out.write(chunk)
                    left -= len(chunk)
            return self.check(path, digest.hexdigest())
        finally:
            path.unlink(missing_ok=True)

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
                self._write_ready({**record, "path": str(final)})
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
