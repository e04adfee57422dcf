"""A tour of every kiosk screen: a real cabinetd --simulate, driven through /sim/* into each screen,
shown by Debian's Chromium under Playwright (no browser download). Used by tests/test_kiosk.py and
by the screenshot command:

    .venv/bin/python tools/kiosk_tour.py OUT_DIR      # OUT_DIR/{screen}-{lang}[-elderly].png

Needs the packages tools/setup.sh test installs: chromium and the CJK and Tibetan fonts.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tools.bench.common import wait  # noqa: E402
from tools.daemon_process import CabinetProcess  # noqa: E402

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
LANGUAGES = ("zh", "bo", "en")
# Short timings so that the held-open countdown and the weighing screen can be caught.
TOUR_CONFIG = """
[checkout]
door_open_warning_seconds = 5.0
door_open_alarm_seconds = 30.0
receipt_seconds = 30.0
[simulation]
settle_seconds = 6.0
[face]
attempt_seconds = 60.0
"""
FACES = Path(__file__).resolve().parents[1] / "tests" / "data" / "faces"


def face_step(daemon: CabinetProcess) -> bool:
    """Enrol a member from the test photographs and hold one of their photographs to the
    camera, so the idle screen asks for a head turn. False where face checkout is not installed."""
    from cabinet.access.face_model import FaceModel, unavailable_reason

    if unavailable_reason() is not None or not FACES.exists():
        return False
    model = FaceModel()
    vectors = [model.embedding_from_photo(p) for p in sorted((FACES / "train" / "obama").iterdir())]
    status, _ = daemon.post("/api/faces/enrol", {"members": [{
        "member_id": "m-tour", "consent": True,
        "embeddings": [[float(x) for x in v] for v in vectors]}]})
    assert status == 200
    daemon.post("/sim/camera", {"path": str(FACES / "test" / "obama1.jpg")})
    return True


def seed_ad(data_dir: Path) -> str:
    """An ad already fetched and checked, as the backend's set_ads would leave it: the playlist
    saved in the database and the file in DATA/ads under its sha256. Returns the sha256."""
    import hashlib

    from cabinet.store import Store
    from drivers.sim.camera import scene_png

    picture = scene_png()
    sha = hashlib.sha256(picture).hexdigest()
    (data_dir / "ads").mkdir(parents=True, exist_ok=True)
    (data_dir / "ads" / sha).write_bytes(picture)
    store = Store(data_dir / "cabinet.db", cabinet_id="cabinet-0001", software_version="tour")
    store.set_value("ads.playlist", [{"url": "https://ads.invalid/a.png", "sha256": sha,
                                      "seconds": 8}])
    store.close()
    return sha


@contextmanager
def kiosk(folder: Path, viewport=(1080, 1200)) -> Iterator[tuple[CabinetProcess, object]]:
    """A simulated cabinet (with one ad) and a Chromium page showing its kiosk."""
    from playwright.sync_api import sync_playwright

    config = folder / "tour.toml"
    config.write_text(TOUR_CONFIG)
    seed_ad(folder / "data")
    daemon = CabinetProcess("--config", str(config), data_dir=folder / "data")
    try:
        daemon.wait_ready()
        wait(lambda: daemon.url)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
            page.goto(daemon.url + "/")
            yield daemon, page
            browser.close()
    finally:
        daemon.terminate()


def screen_shown(page, name: str, timeout: float = 20.0) -> None:
    page.wait_for_selector(f'main[data-screen="{name}"]', timeout=timeout * 1000)


def tour(daemon: CabinetProcess, page) -> Iterator[str]:
    """Drive the cabinet through every screen; yields each screen's name while it is shown."""
    def idle():
        s = daemon.state()
        return s["session"] is None and all(sh["stable"] for sh in s["shelves"]) and s
    wait(idle, timeout=30)
    screen_shown(page, "idle")
    page.wait_for_selector("#qr")
    yield "idle"
    if face_step(daemon):
        page.wait_for_selector('main [data-msg="turn_head"]', timeout=20000)
        yield "turn_head"
        from drivers.sim.camera import scene_png
        daemon.post("/sim/camera", raw=scene_png(), content_type="image/png")  # the face goes away
        page.wait_for_selector('main [data-msg="scan"]', timeout=20000)
    wait(idle, timeout=30)  # a shelf that missed a reading under load is unsettled for a moment
    status, reply = daemon.post("/sim/authorise", {"subject": "acct-tour"})
    assert status == 200, f"the tour's shopper was refused: {reply}"
    screen_shown(page, "authorised")
    yield "authorised"
    daemon.post("/sim/door", {"state": "open"})
    screen_shown(page, "shopping")
    yield "shopping"
    daemon.post("/sim/shelf", {"shelf": 1, "take": {"water-550ml": 2}})
    daemon.post("/sim/shelf", {"shelf": 3, "take": {"steamed-bun": 1}})
    page.wait_for_selector('[data-msg="alarm_in"]', timeout=20000)
    yield "close_door"
    daemon.post("/sim/door", {"state": "closed"})
    screen_shown(page, "settling")
    yield "settling"
    screen_shown(page, "receipt")
    yield "receipt"
    wait(lambda: daemon.state()["receipt"] is not None)
    daemon.post("/sim/door", {"state": "open"})  # nobody authorised: the door alarm
    screen_shown(page, "out_of_service")
    yield "out_of_service"
    daemon.post("/sim/door", {"state": "closed"})


def show(page, lang: str, elderly: bool) -> None:
    """Switch the page's language and elderly mode as a shopper would, by tapping."""
    page.click(f'header button[data-lang="{lang}"]')
    if (page.get_attribute("main", "data-elderly") == "true") != elderly:
        page.click("#elderly")
    page.wait_for_selector(f'main[data-lang="{lang}"][data-elderly="{str(elderly).lower()}"]')


def main() -> int:
    p = argparse.ArgumentParser(description="Screenshots of every kiosk screen in every language.")
    p.add_argument("out", type=Path)
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    count = 0
    with tempfile.TemporaryDirectory() as tmp, kiosk(Path(tmp)) as (daemon, page):
        for name in tour(daemon, page):
            for elderly in (False, True):
                for lang in LANGUAGES:
                    show(page, lang, elderly)
                    path = args.out / f"{name}-{lang}{'-elderly' if elderly else ''}.png"
                    page.screenshot(path=str(path))
                    count += 1
            show(page, "zh", False)
    print(f"{count} screenshots in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
