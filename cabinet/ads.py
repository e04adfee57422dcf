"""The ads playlist's files, fetched in the background and kept only when their sha256 matches.

The backend's set_ads command gives a playlist of {url, sha256, seconds}; the controller saves it
(kv `ads.playlist`) and hands it here. This thread downloads what is missing into DATA/ads/<sha256>
(through a .part file, renamed only after the checksum matches, so the screen never shows half a
file or someone else's), deletes files no longer listed, and retries failures every few minutes.
The screen shows only ads whose files are ready; an empty or failed playlist just means no ads.

Limits (issue 15, cabinet/downloads.py): an ad comes only from an http(s) host that is not this
device (loopback or unspecified addresses are refused, at every redirect, of which there may be 5),
is at most MAX_AD_BYTES, takes at most MAX_FETCH_SECONDS, and is not fetched when it would leave
less than FREE_FLOOR_BYTES on the disk (the database needs that room for sales). A download that
fails for any reason leaves no .part file behind.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import requests

from .downloads import MAX_FETCH_SECONDS, Downloads

log = logging.getLogger("cabinetd.ads")
MAX_AD_BYTES = 64 * 1024 * 1024


class AdsCache(Downloads, threading.Thread):
    def __init__(self, folder: str | Path, playlist: list[dict[str, Any]] | None = None, *,
                 retry_seconds: float = 300.0, timeout: float = 30.0, ca_file: str = "",
                 refuse_loopback: bool = True, fetch_seconds: float = MAX_FETCH_SECONDS):
        threading.Thread.__init__(self, name="ads", daemon=True)
        Downloads.__init__(self, folder, max_bytes=MAX_AD_BYTES, timeout=timeout,
                           ca_file=ca_file, refuse_loopback=refuse_loopback,
                           fetch_seconds=fetch_seconds)
        self.retry_seconds = retry_seconds
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
