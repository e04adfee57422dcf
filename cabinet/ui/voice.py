"""Spoken prompts for elderly mode, on their own thread, only the kiosk's known messages.

A recorded clip of the installed voice pack (cabinet/voice_pack.py) is played when there is one for
the message and language (with `aplay`); otherwise espeak-ng speaks it, Mandarin with its
`cmn-latn-pinyin` voice (plain `cmn` reads Chinese as pinyin spelled out in English) and English
with `en`. There is no offline Tibetan voice in Debian, espeak-ng or PyPI, so Tibetan is spoken
only from a pack. A receipt's total is spoken after its message: from the pack's number and unit
clips, or by espeak-ng. Only message ids from strings.json are spoken, never text from a request.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import wave
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger("cabinetd.voice")
VOICES = {"zh": "cmn-latn-pinyin", "en": "en"}


class Speaker(threading.Thread):
    def __init__(self, strings: Path, *, rate: int = 140, enabled: bool = True,
                 wav_dir: Path | None = None, pack: Callable[[], Any] = lambda: None):
        """`wav_dir`: write what would be played there (NNN-MESSAGE-LANG.wav) instead of
        playing it; `pack`: the installed voice pack (VoicePacks.current), or None."""
        super().__init__(name="speaker", daemon=True)
        self.strings = json.loads(strings.read_text(encoding="utf-8"))
        self.rate, self.wav_dir, self.pack = rate, wav_dir, pack
        self.on = enabled
        self.espeak = shutil.which("espeak-ng")
        self.player = shutil.which("aplay")
        self.enabled = enabled and self.espeak is not None   # the synthetic voice
        if enabled and self.espeak is None:
            log.warning("espeak-ng not installed: only a voice pack's recordings are spoken")
        self._queue: queue.Queue = queue.Queue(maxsize=4)
        self.spoken: list[tuple[str, str]] = []
        self.sources: list[str] = []   # "recording" or "espeak", as each was spoken

    def source_for(self, message: str, lang: str) -> str | None:
        """Which voice would say `message` in `lang` now: recording, espeak or None."""
        pack = self.pack()
        if pack is not None and pack.clip(message, lang) is not None:
            return "recording"
        if lang in VOICES and self.espeak is not None:
            return "espeak"
        return None

    def say(self, message: str, lang: str, total_fen: int | None = None) -> str:
        """Queue a message (and a total to say after it); returns what happens to it: spoken,
        unknown, no_voice, off or busy (`last_source` says which voice, for a caller alone on
        this speaker; the kiosk's threads use `speak`)."""
        result, self.last_source = self.speak(message, lang, total_fen)
        return result

    def speak(self, message: str, lang: str, total_fen: int | None = None
              ) -> tuple[str, str | None]:
        """As `say`, with the voice that will speak it (recording, espeak or None)."""
        if message not in self.strings or message.startswith("_"):
            return "unknown", None
        if not self.on or not self.is_alive():
            return "off", None
        source = self.source_for(message, lang)
        if source is None:
            return "no_voice", None
        try:
            self._queue.put_nowait((message, lang, total_fen, source))
        except queue.Full:  # a screen changing faster than speech: drop, the next one matters
            return "busy", None
        return "spoken", source

    def close(self) -> None:
        """Stop after the prompt being spoken (queued ones are dropped); never blocks."""
        while True:
            try:
                self._queue.put_nowait((None, None, None, None))
                return
            except queue.Full:
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    pass

    def run(self) -> None:
        while True:
            message, lang, total_fen, source = self._queue.get()
            if message is None:
                return
            out = (None if self.wav_dir is None
                   else self.wav_dir / f"{len(self.spoken):03d}-{message}-{lang}.wav")
            try:
                if source == "recording":
                    self._play_clips(message, lang, total_fen, out)
                else:
                    self._espeak(message, lang, total_fen, out)
                self.spoken.append((message, lang))
                self.sources.append(source)
            except Exception as exc:  # one bad clip or program must not silence the cabinet
                log.warning("speech failed: %s: %s", type(exc).__name__, exc)

    def _espeak(self, message: str, lang: str, total_fen: int | None, out: Path | None) -> None:
        text = self.strings[message][lang].replace("{s}", "").replace("{n}", "")
        text = text.replace("{d}", "")
        if total_fen is not None:
            text += f" {self.strings['total'][lang]} {total_fen / 100:.2f}"
        args = [self.espeak, "-v", VOICES[lang], "-s", str(self.rate)]
        if out is not None:
            args += ["-w", str(out)]
        subprocess.run(args + [text], capture_output=True, timeout=30, check=True)

    def _play_clips(self, message: str, lang: str, total_fen: int | None,
                    out: Path | None) -> None:
        """The message's clip, then "total" and the amount from the pack's clips, joined into
        one WAV (the pack's clips share one format: voice_pack.check) and played."""
        pack = self.pack()
        if pack is None or pack.clip(message, lang) is None:
            raise OSError("the voice pack went away before the prompt was played")
        clips = [pack.clip(message, lang)]
        if total_fen is not None:
            amount, total = pack.amount(total_fen, lang), pack.clip("total", lang)
            if amount is not None and total is not None:
                clips += [total, *amount]
        if out is None:
            handle, name = tempfile.mkstemp(prefix="cabinet-voice-", suffix=".wav")
            os.close(handle)   # _join writes it by name
        target = out or Path(name)
        try:
            _join(clips, target)
            if out is None:
                if self.player is None:
                    raise OSError("aplay is not installed (alsa-utils): recordings cannot play")
                subprocess.run([self.player, "-q", str(target)], capture_output=True,
                               timeout=60, check=True)
        finally:
            if out is None:
                target.unlink(missing_ok=True)


def _join(clips: list[Path], target: Path) -> None:
    with wave.open(str(clips[0])) as first:
        params = first.getparams()
    with wave.open(str(target), "wb") as joined:
        joined.setparams(params)
        for clip in clips:
            with wave.open(str(clip)) as part:
                joined.writeframes(part.readframes(part.getnframes()))
