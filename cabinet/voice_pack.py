"""Voice packs: the kiosk's prompts recorded by a native speaker, sent to the fleet like ads.

Elderly mode speaks its prompts; espeak-ng has Mandarin and English but no Tibetan voice, so an
operator has each prompt recorded once and sends the recordings. A pack is a plain tar archive
(or, to build and check one, a folder):

    manifest.json    {"format": 1, "name": "...", "languages": ["bo"],
                      "clips": {"bo/scan.wav": "<sha256>", ...},
                      "amount_order": {"bo": "unit_first"}}          (optional)
    bo/scan.wav      one PCM WAV per message id of strings.json and language (but those with a
                     number in their text, which no fixed recording can say)
    bo/number_12.wav numbers 0-99 and the hundreds 100-900, and the units unit_yuan, unit_jiao,
                     unit_fen: amounts are spoken from them ("total ¥12.50": number_12 unit_yuan
                     number_5 unit_jiao, or unit first where the language says the unit first,
                     as Tibetan does: སྒོར་མོ་ བཅུ་གཉིས་)

A pack is installed only whole: every clip its manifest lists is present, matches its sha256 and
is a readable PCM WAV of the pack's one format (so clips can be joined), and every message id and
number of each language it declares is there. Otherwise it is refused with the names of what is
missing or corrupt, and the pack in use stays. Installing unpacks into a new folder and swaps the
`current` link in one rename; the pack it replaces is kept until the next install (a prompt may
be playing from it). docs/voice.md is the operator's side.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import shutil
import tarfile
import threading
import uuid
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .downloads import Spool

log = logging.getLogger("cabinetd.voice")
FORMAT = 1
LANGUAGES = ("zh", "bo", "en")
NUMBERS = (*range(100), *range(100, 1000, 100))
UNITS = ("unit_yuan", "unit_jiao", "unit_fen")
MAX_PACK_BYTES = 64 * 1024 * 1024
MAX_CLIPS = 3000
CLIP = re.compile(r"(zh|bo|en)/([a-z0-9_]{1,64})\.wav")
STRINGS = Path(__file__).parent / "ui" / "static" / "strings.json"
# Where the unit comes before the number (Tibetan: སྒོར་མོ་ བཅུ་གཉིས།); a manifest may say otherwise.
UNIT_FIRST = frozenset({"bo"})


class PackRefused(ValueError):
    """A pack that cannot be installed; `problems` names each clip or key that is wrong."""

    def __init__(self, problems: list[str]):
        shown = "; ".join(problems[:12]) + (f"; and {len(problems) - 12} more"
                                            if len(problems) > 12 else "")
        super().__init__(f"voice pack refused: {shown}")
        self.problems = problems


def required_ids(strings: dict[str, Any]) -> list[str]:
    """What a language of a pack must hold: every message (but those with a number in them,
    "Alarm in {s} s", which no fixed recording can say), the numbers and the units."""
    return ([k for k, texts in strings.items() if not k.startswith("_")
             and not any("{" in text for text in texts.values())]
            + [f"number_{n}" for n in NUMBERS] + list(UNITS))


@dataclass(frozen=True)
class VoicePack:
    folder: Path
    manifest: dict[str, Any]
    sha256: str | None = None   # the archive's, when it came as one

    @property
    def name(self) -> str:
        return str(self.manifest.get("name", ""))

    @property
    def languages(self) -> list[str]:
        return list(self.manifest["languages"])

    def clip(self, message: str, lang: str) -> Path | None:
        key = f"{lang}/{message}.wav"
        return self.folder / key if key in self.manifest["clips"] else None

    def amount(self, fen: int, lang: str) -> list[Path] | None:
        """The clips that say `fen` as yuan, jiao and fen (None: this pack cannot say it)."""
        if not isinstance(fen, int) or isinstance(fen, bool) or not 0 <= fen < 1000 * 100:
            return None
        yuan, jiao, cents = fen // 100, fen // 10 % 10, fen % 10
        order = self.manifest.get("amount_order", {}).get(
            lang, "unit_first" if lang in UNIT_FIRST else "number_first")
        ids: list[str] = []
        for count, unit in ((yuan, "unit_yuan"), (jiao, "unit_jiao"), (cents, "unit_fen")):
            if count == 0 and (unit != "unit_yuan" or jiao or cents):
                continue   # ¥12.05 is 12 yuan 5 fen; ¥0.50 is 5 jiao; ¥0 is 0 yuan
            number = ([f"number_{count}"] if count < 100 else
                      [f"number_{count // 100 * 100}"]
                      # 三百零五: Mandarin says the missing tens (三百五 is 350)
                      + (["number_0"] if lang == "zh" and 0 < count % 100 < 10 else [])
                      + ([f"number_{count % 100}"] if count % 100 else []))
            ids += [unit, *number] if order == "unit_first" else [*number, unit]
        clips = [self.clip(i, lang) for i in ids]
        return None if any(c is None for c in clips) else clips

    def missing(self, strings: dict[str, Any]) -> list[str]:
        """What this pack lacks against `strings` (a software update may add messages)."""
        return [f"{lang}/{i}" for lang in self.languages for i in required_ids(strings)
                if f"{lang}/{i}.wav" not in self.manifest["clips"]]


# --- building and checking ----------------------------------------------------------------------

def build(folder: Path, name: str, amount_order: dict[str, str] | None = None) -> dict[str, Any]:
    """Write `folder`/manifest.json for the clips found there (LANG/ID.wav)."""
    clips = {}
    for path in sorted(folder.glob("*/*.wav")):
        key = path.relative_to(folder).as_posix()
        if CLIP.fullmatch(key):
            clips[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    languages = sorted({key.split("/")[0] for key in clips})
    manifest = {"format": FORMAT, "name": name, "languages": languages, "clips": clips,
                **({"amount_order": amount_order} if amount_order else {})}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False))
    return manifest


def archive(folder: Path, out: Path) -> str:
    """The folder as a pack archive (the manifest and the clips it lists, each as a regular
    file, whatever links the folder holds); returns its sha256 (what set_voice_pack names)."""
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    with tarfile.open(out, "w") as tar:
        for name in ("manifest.json", *sorted(manifest.get("clips", {}))):
            data = (folder / name).read_bytes()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return hashlib.sha256(out.read_bytes()).hexdigest()


def check(folder: Path, strings: dict[str, Any]) -> dict[str, Any]:
    """The pack's manifest if it is whole; else PackRefused with every problem named."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PackRefused(["manifest.json: missing"]) from None
    except (OSError, ValueError) as exc:
        raise PackRefused([f"manifest.json: unreadable ({exc})"]) from None
    problems = _manifest_problems(manifest)
    if problems:
        raise PackRefused(problems)
    formats: dict[tuple, list[str]] = {}
    for key, sha in sorted(manifest["clips"].items()):
        path = folder / key
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            problems.append(f"{key}: listed in the manifest, not in the pack")
            continue
        if hashlib.sha256(data).hexdigest() != sha:
            problems.append(f"{key}: corrupt (sha256 differs from the manifest)")
            continue
        try:
            with wave.open(str(path)) as clip:
                shape = (clip.getnchannels(), clip.getsampwidth(), clip.getframerate(),
                         clip.getcomptype())
                if clip.getnframes() == 0:
                    raise wave.Error("no samples")
        except (wave.Error, EOFError, RuntimeError, ValueError) as exc:
            problems.append(f"{key}: corrupt (not a PCM WAV: {str(exc) or type(exc).__name__}; "
                            "record or convert to 16-bit PCM: sox in.wav -b 16 out.wav)")
            continue
        formats.setdefault(shape, []).append(key)
    if len(formats) > 1:
        common = max(formats, key=lambda f: len(formats[f]))
        for shape, keys in formats.items():
            if shape != common:
                problems += [f"{k}: {shape[2]} Hz x {shape[0]} channel(s) x {shape[1] * 8} bit, "
                             f"not the pack's {common[2]} Hz x {common[0]} x {common[1] * 8}"
                             for k in keys]
    for lang in manifest["languages"]:
        problems += [f"{lang}/{i}: missing" for i in required_ids(strings)
                     if f"{lang}/{i}.wav" not in manifest["clips"]]
    problems += [f"{key}: a clip of {key[:2]!r}, which the manifest's languages do not declare"
                 for key in sorted(manifest["clips"]) if key[:2] not in manifest["languages"]]
    if problems:
        raise PackRefused(problems)
    return manifest


def _manifest_problems(manifest: Any) -> list[str]:
    if not isinstance(manifest, dict):
        return ["manifest.json: not a JSON object"]
    problems = []
    name = manifest.get("name", "")
    if not isinstance(name, str) or len(name) > 200 or not name.isprintable():
        problems.append("manifest.json: name must be at most 200 printable characters")
    if manifest.get("format") != FORMAT:
        problems.append(f"manifest.json: format {manifest.get('format')!r}, this cabinet reads "
                        f"{FORMAT}")
    languages = manifest.get("languages")
    if not isinstance(languages, list) or not languages or \
            not set(languages) <= set(LANGUAGES) or len(set(languages)) != len(languages):
        problems.append(f"manifest.json: languages must list some of {', '.join(LANGUAGES)}")
    clips = manifest.get("clips")
    if not isinstance(clips, dict) or len(clips) > MAX_CLIPS:
        problems.append(f"manifest.json: clips must map LANG/ID.wav to a sha256 (at most "
                        f"{MAX_CLIPS})")
    else:
        for key, sha in clips.items():
            if not CLIP.fullmatch(str(key)) or not re.fullmatch(r"[0-9a-f]{64}", str(sha)):
                problems.append(f"manifest.json: clip {str(key)[:80]!r}: must be LANG/ID.wav "
                                "with a sha256")
    order = manifest.get("amount_order", {})
    if not isinstance(order, dict) or any(v not in ("unit_first", "number_first")
                                          for v in order.values()):
        problems.append("manifest.json: amount_order maps a language to unit_first or "
                        "number_first")
    return problems


def check_pack(pack: Path, strings: dict[str, Any] | None = None
               ) -> tuple[list[str], dict[str, Any] | None]:
    """(problems, manifest) of a pack archive or folder against `strings` (this software's
    strings.json by default): for `cabinet voice check` and tools/voice_pack.py."""
    import tempfile

    if strings is None:
        strings = json.loads(STRINGS.read_text(encoding="utf-8"))
    try:
        if Path(pack).is_dir():
            return [], check(Path(pack), strings)
        with tempfile.TemporaryDirectory() as tmp:
            unpack(Path(pack), Path(tmp))
            return [], check(Path(tmp), strings)
    except PackRefused as refusal:
        return refusal.problems, None
    except OSError as exc:
        return [f"{pack}: {exc.strerror or exc}"], None


def unpack(archive_path: Path, into: Path,
           room_for: Callable[[int], None] = lambda size: None) -> None:
    """Extract a pack archive (a plain tar: compressed ones could hide millions of members in a
    few megabytes): only manifest.json and LANG/ID.wav regular files, nothing outside `into`, at
    most MAX_CLIPS members and MAX_PACK_BYTES unpacked, each file synced to the card. `room_for`
    raises (ValueError) when the disk cannot take that many more bytes."""
    total, count = 0, 0
    try:
        with tarfile.open(archive_path, "r:") as tar:
            while (member := tar.next()) is not None:
                tar.members.clear()   # headers are not kept: memory stays flat
                count += 1
                if count > MAX_CLIPS + 1 + len(LANGUAGES) + 1:
                    raise PackRefused([f"more than {MAX_CLIPS} clips"])
                name = member.name.removeprefix("./")
                if member.isdir() and name in ("", ".", *LANGUAGES):
                    continue
                if not member.isfile() or not (name == "manifest.json" or CLIP.fullmatch(name)):
                    raise PackRefused([f"{member.name[:80]}: not a pack file (manifest.json or "
                                       "LANG/ID.wav, regular files only)"])
                total += member.size
                if total > MAX_PACK_BYTES:
                    raise PackRefused([f"over {MAX_PACK_BYTES >> 20} MiB unpacked"])
                room_for(member.size)
                target = into / name
                target.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(member) as source, open(target, "wb") as out:
                    shutil.copyfileobj(source, out)
                    out.flush()
                    os.fsync(out.fileno())   # a power cut after the switch finds whole clips
    except (tarfile.TarError, EOFError) as exc:
        raise PackRefused([f"{archive_path.name}: not a pack archive (a plain tar: {exc})"]) \
            from None
    except ValueError as exc:   # room_for's
        raise PackRefused([str(exc)]) from None
    for folder in (into, *[into / lang for lang in LANGUAGES if (into / lang).is_dir()]):
        _fsync_dir(folder)


# --- on the cabinet -------------------------------------------------------------------------------

class VoicePacks(Spool):
    """DATA/voice: the installed pack (`current`, a link to pack-SHA-N), and installs from the
    backend's command or a technician's upload (cabinet/downloads.Spool). Each outcome is handed
    to `outcome` ({"state": "installed" | "refused", ...}), which the controller records. The
    pack replaced is kept until the next install, so a prompt being played from it is not cut
    off."""

    suffix = ".tar"
    Refused = PackRefused

    def __init__(self, folder: str | Path, strings: dict[str, Any], *,
                 outcome: Callable[[dict[str, Any]], None] = lambda result: None,
                 ca_file: str = "", refuse_loopback: bool = True, timeout: float = 30.0):
        super().__init__("voice packs", folder, max_bytes=MAX_PACK_BYTES, timeout=timeout,
                         ca_file=ca_file, refuse_loopback=refuse_loopback)
        self.strings = strings
        self._outcome = outcome
        self._lock = threading.Lock()   # one install at a time, whoever asks
        self._current: VoicePack | None = None
        self._loaded_from: str | None = None
        (self.root / "current.new").unlink(missing_ok=True)   # a power cut's half switch

    # --- what is installed -----------------------------------------------------------------------
    def current(self) -> VoicePack | None:
        link = self.root / "current"
        try:
            target = os.readlink(link)
        except OSError:
            return None
        if target != self._loaded_from:
            folder = self.root / target
            try:
                manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                log.error("voice pack %s unreadable: %s", folder, exc)
                return None
            sha = target.split("-")[1] if target.startswith("pack-") else None
            self._current, self._loaded_from = VoicePack(folder, manifest, sha), target
        return self._current

    # --- installing (cabinet/downloads.Spool asks) ------------------------------------------------
    def take(self, path: Path, sha256: str) -> dict[str, Any]:
        return self.install(path, sha256)

    def refusal(self, why: str) -> PackRefused:
        return PackRefused([why])

    def fetching(self, url: str, sha256: str) -> bool:
        return not self._installed(sha256)   # sent again: in use already, nothing to fetch

    def download_failed(self, url: str, sha256: str, why: str) -> None:
        self._report({"state": "refused", "sha256": sha256, "url": url[:300],
                      "problems": [f"download failed: {why}"[:300]]})

    def _installed(self, sha: str) -> bool:
        pack = self.current()
        return pack is not None and pack.sha256 == sha

    def install(self, archive_path: Path, sha256: str | None = None) -> dict[str, Any]:
        """Install a pack archive whole, or raise PackRefused (the current pack stays, and
        nothing of the refused one is left)."""
        if sha256 is None:
            digest = hashlib.sha256()
            with open(archive_path, "rb") as f:
                while chunk := f.read(1 << 20):
                    digest.update(chunk)
            sha256 = digest.hexdigest()
        with self._lock:
            if self._installed(sha256):   # sent again: in use already
                pack = self.current()
                result = {"state": "installed", "sha256": sha256, "name": pack.name,
                          "languages": pack.languages, "clips": len(pack.manifest["clips"])}
                self._report(result)
                return result
            staging = self.root / f"staging-{uuid.uuid4().hex}"
            staging.mkdir(parents=True)
            try:
                unpack(Path(archive_path), staging, self._room_for)
                manifest = check(staging, self.strings)
            except PackRefused as refusal:
                shutil.rmtree(staging, ignore_errors=True)
                self._report({"state": "refused", "sha256": sha256, "problems": refusal.problems})
                raise
            except BaseException as exc:   # a full card, a read error: nothing left behind
                shutil.rmtree(staging, ignore_errors=True)
                refusal = PackRefused([f"cannot install: {type(exc).__name__}: {exc}"[:300]])
                self._report({"state": "refused", "sha256": sha256, "problems": refusal.problems})
                raise refusal from exc
            previous = self.current()
            final = self.root / f"pack-{sha256}-{uuid.uuid4().hex[:8]}"
            staging.rename(final)
            link = self.root / "current.new"
            link.unlink(missing_ok=True)
            link.symlink_to(final.name)
            os.replace(link, self.root / "current")   # the one step that switches packs
            _fsync_dir(self.root)
            keep = {final, previous.folder if previous is not None else None}
            for old in self.root.glob("pack-*"):
                if old not in keep:
                    shutil.rmtree(old, ignore_errors=True)
            result = {"state": "installed", "sha256": sha256, "name": manifest.get("name", ""),
                      "languages": manifest["languages"], "clips": len(manifest["clips"])}
        log.info("voice pack %r installed (%s; %d clips)", result["name"],
                 ", ".join(result["languages"]), result["clips"])
        self._report(result)
        return result

    def _report(self, result: dict[str, Any]) -> None:
        if result["state"] == "refused":
            log.warning("voice pack %s refused: %s", (result.get("sha256") or "")[:12],
                        "; ".join(result["problems"][:5]))
        try:
            self._outcome(result)
        except Exception:
            log.exception("voice pack outcome not recorded")


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
