"""The kiosk screen: which screen the state calls for (pure), and the real page in Debian's
Chromium (Playwright) on a real simulated cabinet: every screen in every language, Tibetan drawn
with a Tibetan font, the idle QR decodes to the live nonce, the receipt matches the sale, elderly
mode is larger; and the spoken prompts are real audio from espeak-ng."""

from __future__ import annotations

import json
import wave

import numpy as np
import pytest
import zxingcpp

from cabinet.ui.kiosk import Kiosk
from cabinet.ui.screens import screen_for
from cabinet.ui.voice import Speaker
from tools.kiosk_tour import LANGUAGES, kiosk, show, tour

from .conftest import REPO

STRINGS = json.loads((REPO / "cabinet" / "ui" / "static" / "strings.json").read_text())
TIBETAN_FONTS = {"Noto Serif Tibetan", "Tibetan Machine Uni", "DDC Uchen"}
PRODUCTS = [{"sku": "a", "available": True, "stock": 2}]


def state(**kw):
    base = {"session": None, "receipt": None, "door": "closed", "faults": {}, "alarms": [],
            "products": PRODUCTS}
    return {**base, **kw}


def test_screen_rules():
    assert screen_for(state())["name"] == "idle"
    session = {"state": "open", "prompt": "close_door"}
    assert screen_for(state(session=session, door="open"), alarm_in_seconds=12.4) == {
        "name": "shopping", "prompt": "close_door", "alarm_in_seconds": 12}
    assert screen_for(state(session={"state": "authorised"}))["name"] == "authorised"
    assert screen_for(state(session={"state": "settling"}))["name"] == "settling"
    assert screen_for(state(receipt={"lines": []}))["name"] == "receipt"
    assert screen_for(state(receipt={"lines": []}, door="open"))["reason"] == "door_open"
    assert screen_for(state(faults={"shelf:2": {}}))["reason"] == "device_fault"
    assert screen_for(state(faults={"scanner": {}}))["name"] == "idle", "the camera still reads"
    assert screen_for(state(), shopper_refused="food_safety")["reason"] == "food_safety"
    assert screen_for(state(products=[{"sku": "a", "available": False, "stock": 0}]))[
        "reason"] == "no_products"
    assert screen_for(state(), recovering=True)["reason"] == "recovering"
    assert screen_for(state(face={"checking": True})) == {"name": "idle", "prompt": "turn_head"}


def test_the_page_carries_any_text_in_its_state_without_breaking():
    """The state goes into the page as served: a product named like markup stays data."""

    evil = "<!--<script></script><b>&amp;"
    page = Kiosk(lambda: {"products": [{"sku": "x", "name_en": evil}], "screen_qr": None}).page()
    boot = page.decode().split('<script id="boot" type="application/json">', 1)[1]
    data, rest = boot.split("</script>", 1)
    assert "<" not in data and json.loads(data)["state"]["products"][0]["name_en"] == evil
    assert '"use strict"' in rest, "the page's own script is still a script"


def test_every_message_is_in_every_language():
    for key, texts in STRINGS.items():
        if not key.startswith("_"):
            assert set(texts) == set(LANGUAGES), key
            assert all(texts[lang].strip() for lang in LANGUAGES), key


def test_spoken_prompts_are_audio_in_mandarin_and_english(tmp_path):
    speaker = Speaker(REPO / "cabinet" / "ui" / "static" / "strings.json", wav_dir=tmp_path)
    if not speaker.enabled:
        pytest.fail("espeak-ng is missing: tools/setup.sh test installs it")
    speaker.start()
    assert speaker.say("scan_short", "zh") == "spoken"
    assert speaker.say("close_door", "en") == "spoken"
    assert speaker.say("close_door", "bo") == "no_voice"  # no offline Tibetan voice exists
    assert speaker.say("not a message", "zh") == "unknown"
    speaker.close()
    speaker.join(30)
    files = sorted(tmp_path.glob("*.wav"))
    assert [f.name for f in files] == ["000-scan_short-zh.wav", "001-close_door-en.wav"]
    for f in files:
        with wave.open(str(f)) as w:
            assert w.getnframes() / w.getframerate() > 0.4  # real speech, not silence


def _fonts(page, selector: str) -> dict[str, int]:
    """The fonts Chromium really drew `selector` with. The screen redraws itself (the held-open
    countdown every second), which can replace the node between the two questions: ask again."""
    from playwright.sync_api import Error

    cdp = page.context.new_cdp_session(page)
    cdp.send("DOM.enable")
    cdp.send("CSS.enable")
    try:
        for attempt in range(5):
            root = cdp.send("DOM.getDocument")["root"]["nodeId"]
            node = cdp.send("DOM.querySelector", {"nodeId": root, "selector": selector})["nodeId"]
            assert node, f"nothing matches {selector}"
            try:
                fonts = cdp.send("CSS.getPlatformFontsForNode", {"nodeId": node})["fonts"]
                return {f["familyName"]: f["glyphCount"] for f in fonts}
            except Error as exc:
                if "Could not find node" not in str(exc) or attempt == 4:
                    raise
    finally:
        cdp.detach()


MAIN_MESSAGE = {"idle": "scan", "turn_head": "turn_head", "authorised": "open_door", "shopping": "take_items",
                "close_door": "close_door", "settling": "weighing", "receipt": "thanks",
                "out_of_service": "out_of_service"}


def test_every_screen_in_every_language_in_chromium(tmp_path):
    seen = []
    with kiosk(tmp_path) as (daemon, page):
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        for name in tour(daemon, page):
            seen.append(name)
            for lang in LANGUAGES:
                show(page, lang, elderly=False)
                message = MAIN_MESSAGE[name]
                element = page.locator(f'main [data-msg="{message}"]')
                assert element.inner_text().strip() == STRINGS[message][lang], (name, lang)
                if lang == "bo":
                    fonts = _fonts(page, f'main [data-msg="{message}"]')
                    assert set(fonts) & TIBETAN_FONTS, f"{name}: Tibetan drawn with {fonts}"
                    assert all(n == 0 or f in TIBETAN_FONTS | {"Noto Sans", "DejaVu Sans"}
                               for f, n in fonts.items()), fonts
                if lang == "zh":
                    assert "Noto Sans CJK SC" in _fonts(page, f'main [data-msg="{message}"]')
            if name == "idle":
                _check_qr(daemon, page)
                _check_ad(page)
                _check_elderly(page)
            if name == "turn_head":
                _check_face_view(page)
            if name == "close_door":
                countdown = page.locator('[data-msg="alarm_in"]').inner_text()
                seconds = int("".join(ch for ch in countdown if ch.isdigit()))
                assert 0 < seconds <= 30
            if name == "receipt":
                _check_receipt(daemon, page)
            show(page, "zh", elderly=False)
        assert errors == []
    assert seen == list(MAIN_MESSAGE)


def _check_qr(daemon, page):
    png = page.locator("#qr").screenshot()
    import cv2

    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_GRAYSCALE)
    (found,) = zxingcpp.read_barcodes(image)
    url = daemon.state()["screen_qr"]["url"]
    assert found.text == url and "?n=" in url


def _check_face_view(page):
    """The camera's view with the outline, and no "scan with your phone" under the head turn."""
    page.wait_for_function("(() => { const i = document.querySelector('#facecheck img');"
                           " return i && i.complete && i.naturalWidth > 0; })()")
    assert page.locator("#facecheck .oval").is_visible()
    assert page.locator('main [data-msg="scan_hint"]').count() == 0
    assert page.locator("#qr").count() == 0


def test_a_plain_screenshot_shows_the_idle_screen_and_its_code(tmp_path):
    """`chromium --headless --screenshot` with no waiting flags: the first paint is the real
    screen (the state is in the page as served), so the QR decodes from the picture."""
    import subprocess

    import cv2

    from tools.daemon_process import CabinetProcess
    from tools.kiosk_tour import CHROMIUM, CHROMIUM_ARGS

    daemon = CabinetProcess(data_dir=tmp_path / "data")
    try:
        daemon.wait_ready()
        shot = tmp_path / "idle.png"
        subprocess.run([CHROMIUM, "--headless", *CHROMIUM_ARGS, f"--user-data-dir={tmp_path}/p",
                        "--window-size=1080,1920", f"--screenshot={shot}", daemon.url + "/"],
                       capture_output=True, timeout=120, check=True)
        image = cv2.imread(str(shot), cv2.IMREAD_GRAYSCALE)
        assert image.shape == (1920, 1080)
        found = [r.text for r in zxingcpp.read_barcodes(image)]
        live = daemon.state()["screen_qr"]["url"]   # its nonce may have turned over since
        assert len(found) == 1 and found[0].split("?n=")[0] == live.split("?n=")[0]
        assert "?n=" in found[0]
        # The code is large on the portrait screen (it was a small box in the top quarter).
        (code,) = zxingcpp.read_barcodes(image)
        xs = [p.x for p in (code.position.top_left, code.position.top_right)]
        assert max(xs) - min(xs) > 300
    finally:
        daemon.terminate()


def _check_ad(page):
    (ad,) = page.evaluate("fetch('/api/ads').then(r => r.json())")["ads"]
    page.wait_for_function("document.getElementById('ad') && !document.getElementById('ad').hidden"
                           " && document.getElementById('ad').naturalWidth > 0")
    assert page.get_attribute("#ad", "src") == f"/ads/{ad['sha256']}"


def _check_elderly(page):
    normal = page.evaluate("parseFloat(getComputedStyle(document.body).fontSize)")
    show(page, "en", elderly=True)
    large = page.evaluate("parseFloat(getComputedStyle(document.body).fontSize)")
    assert large >= 1.5 * normal
    assert page.locator('main [data-msg="scan_hint"]').count() == 0, "one instruction only"
    assert page.locator("ul.products").is_hidden()
    show(page, "en", elderly=False)


def _check_receipt(daemon, page):
    receipt = daemon.state()["receipt"]
    rows = page.locator("table.receipt tr[data-sku]")
    shown = [(rows.nth(i).get_attribute("data-sku"), int(rows.nth(i).get_attribute("data-count")),
              int(rows.nth(i).get_attribute("data-fen"))) for i in range(rows.count())]
    assert shown == [(l["sku"], l["count"], l["amount_fen"]) for l in receipt["lines"]]
    assert {(s, c) for s, c, _ in shown} == {("water-550ml", 2), ("steamed-bun", 1)}
    total = page.locator("#total")
    assert int(total.get_attribute("data-fen")) == receipt["total_fen"] == sum(f for *_, f in shown)
    assert total.inner_text() == f"¥{receipt['total_fen'] / 100:.2f}"


def test_the_event_stream_sends_what_the_shopper_watches_at_once_and_the_rest_in_bursts():
    """Woken by each publish, the stream sends a change of the screen, session, receipt, lock or
    door at once; other changes (shelf readings: a session publishes at each) wait for the gap.
    The gap here is an hour, so only the urgent change can bring the second message."""
    import threading

    snapshot = {"door": "open", "grams": 0}
    changed = threading.Condition()

    def published(last, timeout):
        with changed:
            changed.wait_for(lambda: snapshot is not last, timeout)
            return snapshot

    def publish(**values):
        nonlocal snapshot
        with changed:
            snapshot = {**snapshot, **values}
            changed.notify_all()

    kiosk = Kiosk(lambda: dict(snapshot), published=published)
    stream = kiosk.events(min_gap=3600)
    assert json.loads(next(stream)[6:]) == {"door": "open", "grams": 0}
    received = []
    reader = threading.Thread(target=lambda: received.append(next(stream)), daemon=True)
    reader.start()
    for grams in (1, 2, 3):   # readings: held back for the gap
        publish(grams=grams)
    publish(door="closed")
    reader.join(timeout=10)
    kiosk.closing = True
    assert [json.loads(m[6:]) for m in received] == [{"door": "closed", "grams": 3}]
