"""The ads playlist's files, fetched in the background and kept only when their sha256 matches.

The backend's set_ads command gives a playlist of {url, sha256, seconds}; the controller saves it
(kv `ads.playlist`) and hands it here. This thread downloads what is missing into DATA/ads/<sha256>
(through a .part file, renamed only after the checksum matches, so the screen never shows half a
file or someone else's), deletes files no longer listed, and retries failures every few minutes.
The screen shows only ads whose files are ready; an empty or failed playlist just means no ads.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from pathlib import Path
from typing import Any

import requests

log = logging.getLogger("cabinetd.ads")
MAX_AD_BYTES = 64 * 1024 * 1024


class AdsCache(threading.Thread):
    def __init__(self, folder: str | Path, playlist: list[dict[str, Any]] | None = None, *,
                 retry_seconds: float = 300.0, timeout: float = 30.0, ca_file: str = ""):
        super().__init__(name="ads", daemon=True)
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.retry_seconds, self.timeout = retry_seconds, timeout
        self.verify: str | bool = ca_file or True
        self._playlist = list(playlist or [])
        self._status: dict[str, str] = {}
        self._changed = threading.Event()
        self._halt = threading.Event()
        self._lock = threading.Lock()
        self._changed.set()

    def set_playlist(self, playlist: list[dict[str, Any]]) -> None:
        with self._lock:
            self._playlist = list(playlist)
        self._changed.set()

    def ready(self) -> list[dict[str, Any]]:
        """The playlist's ads whose files are here and checked, in playlist order."""
        with self._lock:
            playlist = list(self._playlist)
        return [{**ad, "file": str(self.folder / ad["sha256"])} for ad in playlist
                if (self.folder / ad["sha256"]).is_file()]

    def status(self) -> dict[str, str]:
        with self._lock:
            return dict(self._status)

    def close(self) -> None:
        self._halt.set()
        self._changed.set()
        if self.is_alive():
            self.join(timeout=5)

    def run(self) -> None:
        while not self._halt.is_set():
            self._changed.wait(self.retry_seconds)
            self._changed.clear()
            if self._halt.is_set():
                return
            try:
                self.sync_once()
            except Exception:
                log.exception("ads: sync failed")

    def sync_once(self) -> None:
        with self._lock:
            playlist = list(self._playlist)
        wanted = {ad["sha256"] for ad in playlist}
        for path in self.folder.iterdir():
            if path.name.removesuffix(".part") not in wanted:
                path.unlink(missing_ok=True)
        for ad in playlist:
            if self._halt.is_set():
                return
            target = self.folder / ad["sha256"]
            if target.is_file():
                self._set(ad["sha256"], "ready")
                continue
            try:
                self._fetch(ad["url"], ad["sha256"], target)
                self._set(ad["sha256"], "ready")
                log.info("ads: %s ready", ad["url"])
            except (requests.RequestException, OSError, ValueError) as exc:
                self._set(ad["sha256"], f"failed: {exc}"[:300])
                log.warning("ads: %s: %s", ad["url"], exc)

    def _set(self, sha: str, state: str) -> None:
        with self._lock:
            self._status[sha] = state

    def _fetch(self, url: str, sha: str, target: Path) -> None:
        part = target.with_name(target.name + ".part")
        digest, size = hashlib.sha256(), 0
        with requests.get(url, stream=True, timeout=self.timeout, verify=self.verify) as reply:
            reply.raise_for_status()
            with open(part, "wb") as out:
                for chunk in reply.iter_content(1 << 16):
                    size += len(chunk)
                    if size > MAX_AD_BYTES:
                        raise ValueError(f"over {MAX_AD_BYTES >> 20} MiB")
                    digest.update(chunk)
                    out.write(chunk)
        if digest.hexdigest() != sha:
            part.unlink(missing_ok=True)
            raise ValueError(f"checksum mismatch: got sha256 {digest.hexdigest()[:12]}…, "
                             f"playlist says {sha[:12]}…")
        part.rename(target)
