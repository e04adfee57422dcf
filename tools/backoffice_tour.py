"""Screenshots of every back-office page at a phone's size and a desktop's, in Chinese and
English, from a backend filled with demo history (tools/backoffice_demo.py):

    .venv/bin/python tools/backoffice_tour.py OUT_DIR    # OUT_DIR/{page}-{size}-{lang}.png

Runs the backend on loopback with a SQLite file in a temporary folder, and Debian's Chromium
under Playwright (no browser download).
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tools.backoffice_demo import fill  # noqa: E402
from tools.kiosk_tour import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

SIZES = {"phone": (390, 844), "desktop": (1440, 900)}
LANGUAGES = ("zh", "en")
PASSWORD = "tour password 1"
# page name -> (hash, a selector that is there once the page has drawn its data)
PAGES = {
    "fleet": ("#/fleet", "#fleet-table"),
    "cabinet": ("#/cabinet/demo-0001", "#command-table, #commands p"),
    "planogram": ("#/planogram/demo-0001", "#planogram-form, #reported"),
    "sales": ("#/sales", "#transaction-table"),
    "review": ("#/review", "#reviews section, #reviews p"),
    "stock": ("#/stock", "#pick-total, #stock p"),
    "alerts": ("#/alerts", "#alerts table, #alerts p"),
    "ads": ("#/ads", "#ad-library table, #ad-library p"),
    "people": ("#/people", "#audit-table, #audit p"),
}


def tour(out: Path, cabinets: int = 12, days: int = 60) -> list[Path]:
    from playwright.sync_api import sync_playwright

    from backend.app import create_app
    from backend.server import ThreadedServer
    from backend.storage import Storage

    out.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/backend.db"
        fill(url, cabinets, days, 40.0, out=io.StringIO())
        storage = Storage(url)
        storage.people.create_user("dolma", "admin", PASSWORD, "tour")
        server = ThreadedServer(create_app(storage)).start()
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                for size, (width, height) in SIZES.items():
                    for lang in LANGUAGES:
                        context = browser.new_context(viewport={"width": width, "height": height},
                                                      timezone_id="Asia/Shanghai")
                        page = context.new_page()
                        page.add_init_script(f"localStorage.setItem('office.lang', '{lang}')")
                        page.goto(server.url + "/office/")
                        page.wait_for_selector("#login")
                        written.append(_shot(page, out / f"login-{size}-{lang}.png"))
                        page.fill("#username", "dolma")
                        page.fill("#password", PASSWORD)
                        page.click("#login button[type=submit]")
                        page.wait_for_selector("#fleet-table")
                        for name, (route, ready) in PAGES.items():
                            page.goto(f"{server.url}/office/{route}")
                            page.wait_for_selector(ready)
                            page.wait_for_timeout(300)     # the charts' first frame
                            written.append(_shot(page, out / f"{name}-{size}-{lang}.png"))
                        context.close()
                browser.close()
        finally:
            server.close()
            storage.close()
    return written


def _shot(page, path: Path) -> Path:
    page.screenshot(path=str(path), full_page=True)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="the folder the screenshots are written to")
    parser.add_argument("--cabinets", type=int, default=12)
    parser.add_argument("--days", type=int, default=60)
    args = parser.parse_args(argv)
    for path in tour(args.out, args.cabinets, args.days):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
