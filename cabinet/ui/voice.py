"""Spoken prompts for elderly mode: espeak-ng on its own thread, only the kiosk's known messages.

Mandarin uses espeak-ng's `cmn-latn-pinyin` voice (plain `cmn` reads Chinese as pinyin spelled out
in English); English uses `en`. There is no offline Tibetan voice in Debian, espeak-ng or PyPI, so
Tibetan prompts are not spoken: recorded clips keyed by message id would be the way (not done).
Only message ids from strings.json are spoken, never text from a request.
"""

from __future__ import annotations

import json
import logging
import queue
import shutil
import subprocess
import threading
from pathlib import Path

log = logging.getLogger("cabinetd.voice")
VOICES = {"zh": "cmn-latn-pinyin", "en": "en"}


class Speaker(threading.Thread):
    def __init__(self, strings: Path, *, rate: int = 140, enabled: bool = True,
                 wav_dir: Path | None = None):
        super().__init__(name="speaker", daemon=True)
        self.strings = json.loads(strings.read_text(encoding="utf-8"))
        self.rate, self.wav_dir = rate, wav_dir
        self.espeak = shutil.which("espeak-ng")
        self.enabled = enabled and self.espeak is not None
        if enabled and self.espeak is None:
            log.warning("espeak-ng not installed: elderly mode shows prompts but cannot speak them")
        self._queue: queue.Queue = queue.Queue(maxsize=4)
        self.spoken: list[tuple[str, str]] = []

    def say(self, message: str, lang: str) -> str:
        """Queue a message; returns what happens to it: spoken, unknown, no_voice or off."""
        if message not in self.strings or message.startswith("_"):
            return "unknown"
        if lang not in VOICES:
            return "no_voice"
        if not self.enabled:
            return "off"
        try:
            self._queue.put_nowait((message, lang))
        except queue.Full:  # a screen changing faster than speech: drop, the next one matters
            return "busy"
        return "spoken"

    def close(self) -> None:
        self._queue.put((None, None))

    def run(self) -> None:
        while True:
            message, lang = self._queue.get()
            if message is None:
                return
            text = self.strings[message][lang].replace("{s}", "").replace("{n}", "")
            args = [self.espeak, "-v", VOICES[lang], "-s", str(self.rate)]
            if self.wav_dir is not None:
                args += ["-w", str(self.wav_dir / f"{len(self.spoken):03d}-{message}-{lang}.wav")]
            try:
                subprocess.run(args + [text], capture_output=True, timeout=30, check=True)
                self.spoken.append((message, lang))
            except (OSError, subprocess.SubprocessError) as exc:
                log.warning("speech failed: %s", exc)
