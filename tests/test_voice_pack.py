"""Voice packs (cabinet/voice_pack.py): a small Tibetan pack made here (a tone a clip, generated with
sox, standing in for a native speaker's recordings), fetched over HTTP and installed through the
backend's set_voice_pack command; sox then checks that what the speaker played for a Tibetan
prompt is that clip's audio, and a total is spoken from its number and unit clips. Packs with a
missing or a corrupt clip are refused, naming them, and the installed pack stays."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from cabinet.events import VoicePackChanged
from cabinet.operations import BACKEND
from cabinet.ui.voice import Speaker
from cabinet.voice_pack import STRINGS, PackRefused, VoicePacks, archive, build, required_ids
from tools import voice_pack as tool

from .conftest import wait_for
from .test_commands import command, deliver, make_rig, results

SOX = shutil.which("sox")
pytestmark = pytest.mark.skipif(SOX is None, reason="sox: tools/setup.sh test installs it")
STRINGS_DATA = json.loads(STRINGS.read_text(encoding="utf-8"))


def tone(path: Path, hertz: int, seconds: float = 0.12) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([SOX, "-n", "-r", "16000", "-c", "1", "-b", "16", str(path), "synth",
                    str(seconds), "sine", str(hertz)], check=True, capture_output=True)


def make_pack(folder: Path, name: str, base_hertz: int = 300) -> Path:
    """Every clip a Tibetan pack needs, each its own tone, and the manifest."""
    for i, clip in enumerate(required_ids(STRINGS_DATA)):
        tone(folder / "bo" / f"{clip}.wav", base_hertz + 7 * i)
    build(folder, name)
    return folder


def same_audio(played: Path, *clips: Path) -> bool:
    """sox: the clips joined, minus what was played, is silence (and as long)."""
    expected = played.with_name(played.stem + "-expected.wav")
    subprocess.run([SOX, *map(str, clips), str(expected)], check=True, capture_output=True)
    lengths = [float(subprocess.run([SOX, "--i", "-D", str(f)], check=True, capture_output=True,
                                    text=True).stdout) for f in (played, expected)]
    diff = subprocess.run([SOX, "-m", "-v", "1", str(played), "-v", "-1", str(expected), "-n",
                           "stat"], check=True, capture_output=True, text=True).stderr
    peak = float(next(line for line in diff.splitlines()
                      if line.startswith("Maximum amplitude")).split(":")[1])
    return abs(lengths[0] - lengths[1]) < 1e-6 and peak == 0.0


@pytest.fixture
def served(tmp_path):
    """A plain HTTP server on loopback for the pack archives (the backend's stand-in)."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_pack_installed_by_command_speaks_tibetan_and_totals(tmp_path, factory, served):
    www, url = served
    pack = make_pack(tmp_path / "pack-a", "Lhasa voice, take 1")
    sha = archive(pack, www / "a.tar")
    rig = make_rig(tmp_path, factory)
    packs = VoicePacks(tmp_path / "voice", STRINGS_DATA, refuse_loopback=False,
                       outcome=lambda result: rig.c.emit(VoicePackChanged(result)))
    packs.start()
    rig.c.ops_context.on_voice_pack = packs.want
    speaker = Speaker(STRINGS, wav_dir=tmp_path / "played", pack=packs.current)
    (tmp_path / "played").mkdir()
    speaker.start()
    assert speaker.say("scan_short", "bo") == "no_voice", "no pack yet: Tibetan is silent"
    try:
        c = command("set_voice_pack", {"url": f"{url}/a.tar", "sha256": sha})
        deliver(rig, c)
        assert results(rig)[c["command_id"]]["status"] == "done"

        def installed():
            rig.step()
            return [r for r in rig.outbox("voice_pack") if r["state"] == "installed"]
        (record,) = wait_for(installed, timeout=30, what="the pack installed")
        assert record["sha256"] == sha and record["languages"] == ["bo"]
        assert packs.current().name == "Lhasa voice, take 1"

        assert speaker.say("scan_short", "bo") == "spoken" and speaker.last_source == "recording"
        assert speaker.say("thanks", "bo", total_fen=1250) == "spoken"
        assert speaker.say("close_door", "zh") == "spoken" and speaker.last_source == "espeak", \
            "a language the pack lacks: espeak-ng as before"
        wait_for(lambda: len(speaker.spoken) == 3, timeout=30, what="three prompts spoken")
        assert speaker.sources == ["recording", "recording", "espeak"]
        current = packs.current().folder / "bo"
        played = sorted((tmp_path / "played").glob("*.wav"))
        assert same_audio(played[0], current / "scan_short.wav")
        # "Thank you. Total: yuan 12, jiao 5" (Tibetan says the unit first).
        assert same_audio(played[1], *(current / f"{c}.wav" for c in (
            "thanks", "total", "unit_yuan", "number_12", "unit_jiao", "number_5")))
        assert not same_audio(played[1], current / "thanks.wav")

        # A pack with one clip missing, and one whose clip was changed after its manifest:
        # each refused with the names of what is wrong; the Lhasa pack stays.
        broken = make_pack(tmp_path / "pack-b", "missing one", base_hertz=500)
        (broken / "bo" / "number_7.wav").unlink()
        build(broken, "missing one")
        archive(broken, www / "b.tar")
        corrupt = make_pack(tmp_path / "pack-c", "corrupt one", base_hertz=700)
        data = bytearray((corrupt / "bo" / "close_door.wav").read_bytes())
        data[-10] ^= 0xFF
        (corrupt / "bo" / "close_door.wav").write_bytes(bytes(data))
        archive(corrupt, www / "c.tar")
        for name in ("b", "c"):
            tar = www / f"{name}.tar"
            deliver(rig, command("set_voice_pack", {
                "url": f"{url}/{name}.tar", "sha256": hashlib.sha256(tar.read_bytes()).hexdigest()}))

        def refused():
            rig.step()
            return [r for r in rig.outbox("voice_pack") if r["state"] == "refused"]
        missing, corrupted = wait_for(lambda: len(refused()) == 2 and refused(), timeout=30,
                                      what="both packs refused")
        assert missing["problems"] == ["bo/number_7: missing"]
        assert corrupted["problems"] == [
            "bo/close_door.wav: corrupt (sha256 differs from the manifest)"]
        assert "voice_pack" in {a["kind"] for a in rig.c.snapshot["alarms"]}
        assert packs.current().name == "Lhasa voice, take 1", "the installed pack stays"
        assert speaker.say("scan_short", "bo") == "spoken"
        wait_for(lambda: len(speaker.spoken) == 4, timeout=30, what="spoken again")
        assert same_audio(sorted((tmp_path / "played").glob("003-*.wav"))[0],
                          packs.current().folder / "bo" / "scan_short.wav")
        # A good pack again: installed, and the alarm clears.
        newer = make_pack(tmp_path / "pack-d", "Lhasa voice, take 2", base_hertz=900)
        deliver(rig, command("set_voice_pack", {"url": f"{url}/d.tar",
                                                "sha256": archive(newer, www / "d.tar")}))
        wait_for(lambda: len(installed()) == 2, timeout=30, what="the second pack installed")
        assert packs.current().name == "Lhasa voice, take 2"
        assert "voice_pack" not in {a["kind"] for a in rig.c.snapshot["alarms"]}
        assert len(list((tmp_path / "voice").glob("pack-*"))) == 2, \
            "the pack replaced is kept until the next install (a prompt may be playing)"
        # Sent again: nothing is fetched or unpacked, the pack in use stays in use.
        before = packs.current().folder
        deliver(rig, command("set_voice_pack", {"url": f"{url}/gone.tar",
                                                "sha256": packs.current().sha256}))
        wait_for(lambda: len(installed()) == 3, timeout=30, what="the re-sent pack reported")
        assert packs.current().folder == before
    finally:
        speaker.close()
        packs.close()


def test_a_pack_from_a_technician_and_the_tool(tmp_path, capsys):
    pack = make_pack(tmp_path / "pack", "on site")
    assert tool.main(["check", str(pack)]) == 0
    (pack / "bo" / "unit_fen.wav").write_bytes(b"RIFF not a wave")
    build(pack, "on site")   # the manifest now vouches for the broken file's bytes
    assert tool.main(["build", str(pack), "--name", "x", "--out", str(tmp_path / "x.tar")]) == 1
    out = capsys.readouterr().out
    assert "bo/unit_fen.wav: corrupt (not a PCM WAV" in out
    assert not (tmp_path / "x.tar").exists()
    tone(pack / "bo" / "unit_fen.wav", 440)
    assert tool.main(["build", str(pack), "--name", "x", "--out", str(tmp_path / "x.tar")]) == 0
    packs = VoicePacks(tmp_path / "voice", STRINGS_DATA)
    installed = packs.install(tmp_path / "x.tar")   # its sha256 computed here
    assert installed["state"] == "installed" and packs.current().name == "x"
    # An archive that tries to write outside its folder is refused before anything is written.
    import io
    import tarfile
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tar:
        info = tarfile.TarInfo("../../escaped.wav")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"RIFF"))
    with pytest.raises(PackRefused, match="not a pack file"):
        packs.install(evil)
    assert not (tmp_path / "escaped.wav").exists() and packs.current().name == "x"
    assert len(list((tmp_path / "voice").glob("pack-*"))) == 1
    assert not list((tmp_path / "voice").glob("staging-*"))


def test_on_site_a_technician_installs_a_pack_and_the_screen_says_which_voice(tmp_path, capsys):
    """cabinetd --simulate: `cabinet voice check` and `cabinet voice install` with a pack file;
    the kiosk in Chromium, in elderly mode, says a Tibetan prompt came from the recording and a
    Mandarin one (the pack has none) from espeak-ng; selftest reports the pack complete."""
    from playwright.sync_api import expect, sync_playwright

    from cabinet.cli import technician_main
    from tools.daemon_process import CabinetProcess
    from tools.kiosk_tour import CHROMIUM, CHROMIUM_ARGS, screen_shown, show

    pack = make_pack(tmp_path / "pack", "Shigatse voice")
    archive(pack, tmp_path / "pack.tar")
    broken = tmp_path / "broken.tar"
    (pack / "bo" / "thanks.wav").unlink()
    build(pack, "broken")
    archive(pack, broken)
    assert technician_main(["voice", "check", str(broken)]) == 1
    assert "bo/thanks: missing" in capsys.readouterr().out
    config = tmp_path / "elderly.toml"
    config.write_text("[screen]\nelderly_mode = true\ndefault_language = \"bo\"\n")
    daemon = CabinetProcess("--config", str(config), data_dir=tmp_path / "data")
    try:
        daemon.wait_ready()
        wait_for(lambda: daemon.url, timeout=10, what="the URL")
        with pytest.raises(SystemExit, match="bo/thanks: missing"):
            technician_main(["voice", "install", str(broken), "--url", daemon.url])
        assert technician_main(["voice", "install", str(tmp_path / "pack.tar"),
                                "--url", daemon.url]) == 0
        assert "voice pack 'Shigatse voice' installed: bo" in capsys.readouterr().out
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1080, "height": 1200})
            page.goto(daemon.url + "/")
            screen_shown(page, "idle")
            expect(page.locator("#speech")).to_have_attribute("data-source", "recording")
            show(page, "zh", elderly=True)
            expect(page.locator("#speech")).to_have_attribute("data-source", "espeak")
            expect(page.locator("#speech")).to_contain_text("合成语音")
            browser.close()
        assert technician_main(["selftest", "--url", daemon.url]) in (0, 1)
        out = capsys.readouterr().out
        assert f"] {'voice pack':<24} PASS" in out and "Shigatse voice (bo," in out
    finally:
        daemon.terminate()


def test_what_the_review_found(tmp_path, monkeypatch):
    """A hostile review of the first version: a file descriptor leaked per recorded prompt; one
    bad clip killed the speaker thread (and close() then hung); a failure other than a refusal
    left a staging folder; compressed archives were read (millions of members in a few MB);
    `archive` packed links and stray files the cabinet then refused; a clip of an undeclared
    language slipped in; Mandarin amounts lacked 零."""
    import os

    from cabinet import voice_pack
    from cabinet.voice_pack import check_pack

    pack = make_pack(tmp_path / "pack", "review")
    os.link(pack / "bo" / "thanks.wav", pack / "bo" / "thanks-take2.wav")   # stray, linked
    sha = archive(pack, tmp_path / "p.tar")
    assert check_pack(tmp_path / "p.tar") == ([], check_pack(pack)[1])
    packs = VoicePacks(tmp_path / "voice", STRINGS_DATA)
    packs.install(tmp_path / "p.tar", sha)
    speaker = Speaker(STRINGS, pack=packs.current)
    speaker.player = "/bin/true"   # no sound card here: the clips are joined, then "played"
    speaker.start()
    fds = len(os.listdir("/proc/self/fd"))
    for _ in range(20):
        assert speaker.say("scan_short", "bo") == "spoken"
        wait_for(lambda: speaker._queue.empty(), timeout=10, what="spoken")
    time.sleep(0.2)
    assert len(os.listdir("/proc/self/fd")) <= fds + 2, "no descriptor kept per prompt"
    (packs.current().folder / "bo" / "close_door.wav").write_bytes(b"RIFF\x00")  # broken clip
    assert speaker.say("close_door", "bo") == "spoken"
    time.sleep(0.5)
    assert speaker.is_alive(), "one bad clip does not silence the cabinet"
    count = len(speaker.spoken)
    assert speaker.say("scan_short", "bo") == "spoken"
    wait_for(lambda: len(speaker.spoken) == count + 1, timeout=10, what="spoken after it")
    for _ in range(8):
        speaker.say("scan_short", "bo")
    started = time.monotonic()
    speaker.close()
    speaker.join(10)
    assert time.monotonic() - started < 5 and not speaker.is_alive()

    monkeypatch.setattr(voice_pack, "check", lambda *a: (_ for _ in ()).throw(OSError(28, "full")))
    other = make_pack(tmp_path / "other", "other", base_hertz=600)
    with pytest.raises(PackRefused, match="cannot install: OSError"):
        packs.install(tmp_path / "o.tar", archive(other, tmp_path / "o.tar"))
    monkeypatch.undo()
    assert not list((tmp_path / "voice").glob("staging-*")) and packs.current().name == "review"

    import tarfile
    with tarfile.open(tmp_path / "p.tar.gz", "w:gz") as tar:
        tar.add(pack / "manifest.json", "manifest.json")
    with pytest.raises(PackRefused, match="a plain tar"):
        packs.install(tmp_path / "p.tar.gz")

    manifest = json.loads((pack / "manifest.json").read_text())
    tone(pack / "zh" / "thanks.wav", 880)
    manifest["clips"]["zh/thanks.wav"] = hashlib.sha256(
        (pack / "zh" / "thanks.wav").read_bytes()).hexdigest()
    (pack / "manifest.json").write_text(json.dumps(manifest))
    problems, _ = check_pack(pack)
    assert problems == ["zh/thanks.wav: a clip of 'zh', which the manifest's languages do not "
                        "declare"]
    amounts = {fen: [c.stem for c in packs.current().amount(fen, "bo")]
               for fen in (0, 5, 1000, 30505)}
    assert amounts == {0: ["unit_yuan", "number_0"], 5: ["unit_fen", "number_5"],
                       1000: ["unit_yuan", "number_10"],
                       30505: ["unit_yuan", "number_300", "number_5", "unit_fen", "number_5"]}
    zh = voice_pack.VoicePack(Path("/z"), {"languages": ["zh"], "clips": {
        f"zh/{c}.wav": "" for c in voice_pack.required_ids(STRINGS_DATA)}})
    assert [c.stem for c in zh.amount(30505, "zh")] == [
        "number_300", "number_0", "number_5", "unit_yuan", "number_5", "unit_fen"]
    assert zh.amount(100_000, "zh") is None
