"""The back office in Debian's Chromium (Playwright), at a phone's size and a desktop's, against
the real backend with a real simulated cabinet syncing to it: log in, see the cabinet live, see
its sale reach the sales page and its charts (read back from the ECharts instances), set its
temperature and see the command done, download the CSV export; restock from the cabinet page,
resolve a sale the shelves could not explain on the review page and see the stock follow; a
viewer gets no action buttons and the API refuses the action anyway."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
from datetime import datetime, timedelta, timezone

import pytest
import requests

from tools.kiosk_tour import CHROMIUM, CHROMIUM_ARGS

from .conftest import REPO, wait_for
from .test_daemon_sync import start_synced

PASSWORD = "correct horse battery"
SIZES = {"phone": (390, 844), "desktop": (1440, 900)}


@pytest.fixture
def fleet(tmp_path):
    backend, daemon = start_synced(tmp_path, [])
    backend.storage.people.create_user("tsering", "viewer", PASSWORD, "test")
    yield backend, daemon
    daemon.terminate()
    backend.close()


@contextlib.contextmanager
def browser(size):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = chromium.new_context(viewport={"width": size[0], "height": size[1]},
                                       timezone_id="Asia/Shanghai", locale="en-GB",
                                       accept_downloads=True)
        page = context.new_page()
        page.set_default_timeout(20000)
        problems = []
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on("console", lambda m: problems.append(f"{m.type}: {m.text}")
                if m.type in ("error", "warning") else None)
        page.problems = problems
        try:
            yield page
        finally:
            chromium.close()


def expect(locator):
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def log_in(page, url, username):
    page.goto(url + "/")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("#login button[type=submit]")
    page.wait_for_selector("#fleet-table")


def chart(page, element_id: str) -> dict:
    """The option the chart draws, read from its ECharts instance."""
    return page.evaluate("id => { const o = echarts.getInstanceByDom(document.getElementById(id))"
                         ".getOption(); return {series: o.series.map(s => s.data), "
                         "x: o.xAxis.map(a => a.data), y: o.yAxis.map(a => a.data)}; }",
                         element_id)


def shown_done(page, row: str, backend, daemon, seconds: float = 60):
    """Wait for the page to show a command done (the cabinet applied it and its result came
    back); if it does not, fail with where the command got to."""
    from playwright.sync_api import TimeoutError as PageTimeout

    try:
        page.locator(f'{row}[data-status="done"], {row} [data-status="done"]').first.wait_for(
            timeout=seconds * 1000)
    except PageTimeout:
        fates = [(c["type"], c["status"], c["detail"], c["delivered_at"], c["finished_at"])
                 for c in backend.storage.commands.recent("cabinet-0001", 5)]
        shown = page.locator(row).all_inner_texts()
        raise AssertionError(f"not shown done: {fates}; page: {shown}; cabinet sync: "
                             f"{daemon.state()['sync']}; log: {daemon.log_lines[-15:]}") from None


def no_sideways_scroll(page, width):
    assert page.evaluate("document.documentElement.scrollWidth") <= width


def phone_unlock(backend, daemon, subject):
    """A shopper's phone scans the idle screen and the backend unlocks for it."""
    state = wait_for(lambda: (s := daemon.state())["session"] is None
                     and all(sh["stable"] for sh in s["shelves"]) and s, timeout=60,
                     what="idle, shelves stable")
    nonce = state["screen_qr"]["url"].split("?n=")[1]
    status, _ = backend.operator("POST", "cabinets/cabinet-0001/commands", {
        "type": "remote_unlock", "args": {"nonce": nonce, "subject": subject}})
    assert status == 201
    wait_for(lambda: daemon.state()["lock"] == "unlocked", timeout=60, what="the lock to open")


def sell_water(backend, daemon, subject="acct-phone-1"):
    """A shopper opens with a phone and takes a bottle; returns the receipt."""
    phone_unlock(backend, daemon, subject)
    daemon.post("/sim/door", {"state": "open"})
    daemon.post("/sim/shelf", {"shelf": 1, "take": {"water-550ml": 1}})
    daemon.post("/sim/door", {"state": "closed"})
    return wait_for(lambda: daemon.state()["receipt"], timeout=60)


@pytest.mark.parametrize("size", SIZES)
def test_an_operator_runs_a_live_cabinet_from_the_back_office(fleet, size):
    backend, daemon = fleet
    width, height = SIZES[size]
    with browser(SIZES[size]) as page:
        log_in(page, backend.url, "admin")
        row = page.locator('#fleet-table tr[data-id="cabinet-0001"]')
        row.locator('[data-status="online"]').wait_for()
        assert "°C" in row.inner_text()
        no_sideways_scroll(page, width)

        # A sale at the cabinet appears on the sales page and in its charts within seconds.
        page.click('header a[href="#/sales"]')
        page.wait_for_selector("#transactions")
        assert sum(chart(page, "chart-by-day")["series"][0]) == 0
        assert sell_water(backend, daemon)["total_fen"] == 200
        page.wait_for_selector('#transaction-table li[data-sku="water-550ml"]')
        expect(page.locator("#period-revenue")).to_have_text("¥2.00", timeout=60000)
        assert sum(chart(page, "chart-by-day")["series"][0]) == 2.0
        assert chart(page, "chart-by-day")["series"][1][-1] == 1       # today's units
        top = chart(page, "chart-top")
        assert top["y"][0] == ["water-550ml"] and top["series"][0] == [2.0]
        assert sum(chart(page, "chart-by-hour")["series"][0]) == 2.0
        assert chart(page, "chart-by-cabinet")["x"][0] == ["cabinet-0001"]
        heat = chart(page, "chart-heat")["series"][0]
        assert sum(cell[2] for cell in heat) == 2.0
        no_sideways_scroll(page, width)

        # The CSV export is the sale's rows as the database holds them.
        with page.expect_download() as download:
            page.click("#export")
        rows = list(csv.DictReader(io.StringIO(open(download.value.path()).read())))
        (sale,) = backend.storage.fleet.records("sale", "cabinet-0001", 0, 10)
        assert [(r["record_id"], r["sku"], r["count"], r["total_fen"]) for r in rows] == [
            (sale["record_id"], line["sku"], str(line["count"]), str(sale["body"]["total_fen"]))
            for line in sale["body"]["lines"]]

        # A setpoint set on the cabinet's page is applied by the daemon and shown as done.
        page.click('header a[href="#/fleet"]')
        page.click('#fleet-table a[href="#/cabinet/cabinet-0001"]')
        page.fill("#setpoint-input", "3.5")
        page.click("#set-setpoint button[type=submit]")
        shown_done(page, '#command-table tr[data-type="set_setpoint"]', backend, daemon)
        assert daemon.state()["climate"]["setpoint_celsius"] == 3.5
        # The temperature chart draws the cabinet's samples as the backend holds them.
        samples = [(r["body"]["sampled_at"], r["body"]["celsius"]) for r in
                   backend.storage.fleet.records("telemetry", "cabinet-0001", 0, 1000)]
        drawn = [tuple(point) for point in chart(page, "temperature-chart")["series"][0]]
        assert drawn and samples[:len(drawn)] == drawn
        # Seven days: the hourly rollups, the mean of this hour's samples.
        page.click('button[data-range="7d"]')
        wait_for(lambda: len(chart(page, "temperature-chart")["series"]) > 3, timeout=10,
                 what="the 7-day chart")
        (hour,) = backend.operator("GET", "cabinets/cabinet-0001/rollups")[1]["climate"][-1:]
        drawn = chart(page, "temperature-chart")["series"][0]
        assert drawn[-1][1] == pytest.approx(hour["celsius_mean"], abs=0.01)
        no_sideways_scroll(page, width)
        assert page.problems == []


def test_a_viewer_sees_no_actions_and_the_api_refuses_them(fleet):
    backend, daemon = fleet
    with browser(SIZES["phone"]) as page:
        log_in(page, backend.url, "tsering")
        page.goto(backend.url + "/office/#/cabinet/cabinet-0001")
        page.wait_for_selector("#commands")
        assert page.locator("#actions").count() == 0
        assert page.locator("button.action[data-command], #set-setpoint").count() == 0
        # The page's own token, used as a script would: refused by the API.
        token = page.evaluate("localStorage.getItem('office.token')")
        reply = requests.post(f"{backend.url}/v1/operator/cabinets/cabinet-0001/commands",
                              json={"type": "set_setpoint", "args": {"celsius": 2}},
                              headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert reply.status_code == 403 and "viewer" in reply.json()["error"]
        me = requests.get(f"{backend.url}/v1/auth/me", timeout=10,
                          headers={"Authorization": f"Bearer {token}"}).json()
        assert me["role"] == "viewer" and me["commands"] == [] and me["permissions"] == ["read"]
        # Logging out ends the token, not just the page.
        page.click("#logout")
        page.wait_for_selector("#login")
        assert requests.get(f"{backend.url}/v1/auth/me", timeout=10, headers={
            "Authorization": f"Bearer {token}"}).status_code == 401
        assert page.problems == []


def test_the_pages_carry_a_strict_content_security_policy(fleet):
    backend, _ = fleet
    for path in ("/office/", "/office/js/main.js", "/office/vendor/echarts-6.1.0/echarts.min.js"):
        reply = requests.get(backend.url + path, timeout=10, headers={"Accept-Encoding": "gzip"})
        assert reply.status_code == 200, path
        policy = reply.headers["content-security-policy"]
        assert "script-src 'self';" in policy and "frame-ancestors 'none'" in policy
    assert reply.headers["content-encoding"] == "gzip"
    assert "immutable" in reply.headers["cache-control"]
    root = requests.get(backend.url + "/", timeout=10, allow_redirects=False)
    assert root.status_code == 307 and root.headers["location"] == "/office/"
    missing = requests.get(backend.url + "/office/nothing.js", timeout=10)
    assert missing.status_code == 404 and "error" in missing.json()


def wait_idle(daemon):
    return wait_for(lambda: (s := daemon.state())["session"] is None
                    and all(sh["stable"] for sh in s["shelves"]) and s, timeout=20,
                    what="idle, shelves stable")


@pytest.mark.parametrize("size", SIZES)
def test_a_flagged_sale_is_resolved_on_the_review_page_and_stock_follows(fleet, size):
    backend, daemon = fleet
    with browser(SIZES[size]) as page:
        log_in(page, backend.url, "admin")
        # A restock from the cabinet page: the inventory record is the backend's first count.
        page.goto(backend.url + "/office/#/cabinet/cabinet-0001")
        page.click('button[data-command="restock_mode"]')
        wait_for(lambda: daemon.state()["lock"] == "unlocked", timeout=60, what="restock unlock")
        daemon.post("/sim/door", {"state": "open"})
        daemon.post("/sim/door", {"state": "closed"})
        wait_idle(daemon)
        shown_done(page, '#command-table tr[data-type="restock_mode"]', backend, daemon)
        sell_water(backend, daemon)          # the water's price reaches the backend

        # A sale the shelves cannot explain: 300 g gone from shelf 1.
        phone_unlock(backend, daemon, "acct-phone-2")
        daemon.post("/sim/door", {"state": "open"})
        daemon.post("/sim/shelf", {"shelf": 1, "grams": -300})
        daemon.post("/sim/door", {"state": "closed"})
        flagged = wait_for(lambda: [r for r in backend.storage.fleet.records(
            "sale", "cabinet-0001", 0, 10) if r["body"]["flags"]], timeout=20,
            what="the flagged sale at the backend")[0]
        assert flagged["body"]["lines"] == []
        counted = {p["sku"]: p["count"] for p in backend.storage.stock.products(["cabinet-0001"])}
        assert counted["water-550ml"] == 11        # the restock's 12, one sold

        page.click('header a[href="#/review"]')
        card = page.locator(f'section.review[data-record="{flagged["record_id"]}"]')
        card.wait_for()
        assert "unexplained" in card.inner_text()
        card.locator("select[name=action]").select_option("lines")
        card.locator("button", has_text="Add a line").click()
        card.locator("input[name=sku]").fill("water-550ml")
        card.locator("input[name=sku]").dispatch_event("change")
        assert card.locator("input[name=price]").input_value() == "200"   # the known price
        card.locator("input[name=note]").fill("checked the camera: one bottle")
        card.locator("button[type=submit]").click()
        card.wait_for(state="detached")
        assert page.locator("#open-count").inner_text() == "0"

        # The stock page follows: one more water gone; the sale's figures too.
        page.click('header a[href="#/stock"]')
        cell = page.locator('#stock [data-cabinet="cabinet-0001"] tr[data-sku="water-550ml"] '
                            '[data-count]')
        cell.wait_for()
        assert cell.get_attribute("data-count") == "10"
        now = datetime.now(timezone.utc)
        (adjustment,) = backend.storage.reviews.adjustments_between(
            None, now - timedelta(hours=1), now + timedelta(hours=1))
        assert adjustment["made_by"] == "admin" and adjustment["revenue_delta_fen"] == 200
        assert adjustment["note"] == "checked the camera: one bottle"
        assert page.problems == []


def test_prices_changed_on_the_planogram_page_are_applied_and_charged(fleet):
    backend, daemon = fleet
    with browser(SIZES["desktop"]) as page:
        log_in(page, backend.url, "admin")
        page.goto(backend.url + "/office/#/cabinet/cabinet-0001")
        page.click("#planogram-link")
        assert page.locator("#planogram-version").inner_text() == "example-1"  # reported at start
        row = page.locator('#product-table tr[data-sku="water-550ml"]')
        assert row.locator("input[name=price_fen]").input_value() == "200"
        # A mistake is refused with the cabinet's own words before anything is sent.
        row.locator("input[name=unit_grams]").fill("-3")
        page.click("#planogram-form button[type=submit]")
        page.wait_for_selector("#problem:not([hidden])")
        assert "unit_grams" in page.locator("#problem").inner_text()
        row.locator("input[name=unit_grams]").fill("572")
        row.locator("input[name=price_fen]").fill("250")
        page.click("#planogram-form button[type=submit]")
        shown_done(page, "#planogram-commands li", backend, daemon)
        # (Matchers, not wait_for_function: the page's policy forbids evaluating strings.)
        expect(page.locator("#planogram-version")).to_have_text("example-2", timeout=20000)
        prices = {p["sku"]: p["price_fen"] for p in backend.storage.stock.products(
            ["cabinet-0001"])}
        assert prices["water-550ml"] == 250 and prices["tea-500ml"] == 350
        # The next bottle is charged at the new price.
        assert sell_water(backend, daemon, "acct-phone-3")["total_fen"] == 250
        # (Chromium logs the refused request itself; nothing else went wrong.)
        assert [p for p in page.problems if "status of 422" not in p] == []


def test_the_tour_writes_every_page_at_both_sizes_in_both_languages(tmp_path):
    from tools.backoffice_tour import LANGUAGES, PAGES, tour

    written = tour(tmp_path, cabinets=2, days=3)
    expected = {f"{page}-{size}-{lang}.png" for page in ["login", *PAGES]
                for size in SIZES for lang in LANGUAGES}
    assert {p.name for p in written} == expected
    assert all(p.stat().st_size > 10_000 for p in written)   # drawn pages, not blank ones


def test_an_access_code_made_on_the_cabinet_page_opens_it_and_a_face_is_enrolled(tmp_path):
    """The cabinet page's access card: a signed code shown as a QR (decoded from the picture
    the browser drew) that the cabinet's scanner accepts; a member's photographs, with consent,
    enrolled on the cabinet."""
    import zxingcpp
    from PIL import Image

    from cabinet.access.codes import ensure_key_pair, read_private_key

    from .test_face import FACES, needs_model

    if needs_model.args[0]:
        pytest.skip(needs_model.kwargs["reason"])
    path, _ = ensure_key_pair(tmp_path / "data" / "sim")   # the key the simulation trusts
    backend, daemon = start_synced(tmp_path, [], backend_kw={"service_kw": {
        "signing_key": read_private_key(path), "key_id": 0, "alert_settings": None}})
    backend.storage.people.create_user("dolma", "operator", PASSWORD, "test")
    try:
        with browser(SIZES["phone"]) as page:
            log_in(page, backend.url, "dolma")
            page.goto(backend.url + "/office/#/cabinet/cabinet-0001")
            form = page.locator("#access-code-form")
            form.locator("input[name=subject]").fill("acct-qr-1")
            form.locator("input[name=minutes]").fill("5")
            form.locator("button[type=submit]").click()
            image = page.locator("#access-code img.qr")
            image.wait_for()
            picture = Image.open(io.BytesIO(image.screenshot()))
            (found,) = zxingcpp.read_barcodes(picture)
            assert found.text == image.get_attribute("data-code")
            wait_idle(daemon)
            daemon.post("/sim/scan", {"text": found.text})
            wait_for(lambda: daemon.state()["lock"] == "unlocked", timeout=60,
                     what="the code to open the cabinet")
            daemon.post("/sim/door", {"state": "open"})
            daemon.post("/sim/door", {"state": "closed"})

            enrol = page.locator("#enrol-face")
            enrol.locator("input[name=member]").fill("m-obama")
            enrol.locator("input[name=photos]").set_input_files(
                sorted(str(p) for p in (FACES / "train" / "obama").iterdir()))
            enrol.locator("button[type=submit]").click()      # no consent: the browser stops it
            assert page.locator('#command-table tr[data-type="enroll_faces"]').count() == 0
            enrol.locator("input[name=consent]").check()
            enrol.locator("button[type=submit]").click()
            page.locator('#command-table tr[data-type="enroll_faces"] [data-status="done"]'
                         ).wait_for(timeout=30000)
            wait_for(lambda: daemon.state()["face"]["members"] == 1, timeout=10)
            entries = backend.operator("GET", "audit?cabinet_id=cabinet-0001")[1]["entries"]
            assert any(e["actor"] == "dolma" and e["action"] == "command:enroll_faces"
                       for e in entries)
            assert page.problems == []
    finally:
        daemon.terminate()
        backend.close()


def test_an_ad_uploaded_on_the_ads_page_reaches_the_cabinet_as_a_playlist(fleet, tmp_path):
    from cabinet.ads import AdsCache

    backend, daemon = fleet
    picture = next((REPO / "tests" / "data" / "faces" / "train" / "obama").iterdir())
    with browser(SIZES["desktop"]) as page:
        log_in(page, backend.url, "admin")
        page.click('header a[href="#/ads"]')
        page.locator('#upload-ad input[name=ad]').set_input_files(str(picture))
        page.click("#upload-ad button[type=submit]")
        row = page.locator("#ad-table tr[data-sha]")
        row.wait_for()
        sha = row.get_attribute("data-sha")
        assert sha == hashlib.sha256(picture.read_bytes()).hexdigest()
        # The row can be drawn before its thumbnail has loaded: wait for the load to end (a
        # broken image ends it too, with no width), then look.
        page.wait_for_function("document.querySelector('img.thumb')?.complete")
        assert page.evaluate("document.querySelector('img.thumb').naturalWidth") > 0
        row.locator("input[name=in-playlist]").check()
        row.locator("input[name=seconds]").fill("12")
        page.locator('#ad-cabinets input[value="cabinet-0001"]').check()
        page.click("#send-ads")
        page.wait_for_selector("#ads-sent:not(:empty)")
        assert page.problems == []
    (command,) = [c for c in backend.storage.commands.recent("cabinet-0001", 10)
                  if c["type"] == "set_ads"]
    wait_for(lambda: backend.storage.commands.get(command["command_id"])["status"] == "done",
             timeout=60, what="the cabinet to take the playlist")
    # The cabinet's own fetcher takes the file from the backend (here on loopback, which a
    # cabinet refuses for itself; the address is all that differs).
    (ad,) = command["args"]["playlist"]
    assert ad["seconds"] == 12 and ad["url"] == f"{backend.url}/v1/ads/{sha}"
    cache = AdsCache(tmp_path / "ads", [ad], refuse_loopback=False)
    cache.sync_once()
    assert (tmp_path / "ads" / sha).read_bytes() == picture.read_bytes()


def test_ad_uploads_are_checked(fleet):
    backend, _ = fleet
    url = backend.url + "/v1/operator/ads?name=x.png"
    auth = {"Authorization": f"Bearer {backend.operator_token}"}
    reply = requests.post(url, data=b"<svg/>", timeout=10,
                          headers={**auth, "Content-Type": "image/svg+xml"})
    assert reply.status_code == 422 and "image/png" in reply.json()["error"]
    reply = requests.post(url, data=b"", timeout=10, headers={**auth, "Content-Type": "image/png"})
    assert reply.status_code == 422 and "empty" in reply.json()["error"]
    viewer = {"Authorization": f"Bearer {backend.token_for('viewer')}"}
    reply = requests.post(url, data=b"\x89PNG", timeout=10,
                          headers={**viewer, "Content-Type": "image/png"})
    assert reply.status_code == 403
    assert requests.get(backend.url + "/v1/ads/" + "0" * 64, timeout=10).status_code == 404
    assert requests.get(backend.url + "/v1/ads/nothex", timeout=10).status_code == 422


def test_a_release_sent_from_the_cabinet_page_and_its_steps_shown(fleet):
    """The operator stages a release on one cabinet from its page; the cabinet's steps come
    back and are listed (here the release is on the cabinet's own loopback, which it never
    downloads from: it says so)."""
    backend, daemon = fleet
    with browser(SIZES["desktop"]) as page:
        log_in(page, backend.url, "admin")
        page.click('#fleet-table a[href="#/cabinet/cabinet-0001"]')
        expect(page.locator("#software")).to_contain_text("none")
        page.on("dialog", lambda dialog: dialog.accept())
        page.fill("#release-url", "http://127.0.0.1:9/cabinet-9.9.9.release")
        page.fill("#release-sha256", "ab" * 32)
        page.click("#update-software button[type=submit]")
        shown_done(page, '#command-table tr[data-type="update_software"]', backend, daemon)
        refused = page.locator('#update-steps li[data-state="refused"]').first
        refused.wait_for(timeout=60000)
        assert "refused" in refused.inner_text()
        (record,) = [r["body"] for r in backend.storage.fleet.records("update", "cabinet-0001",
                                                                      0, 100)
                     if r["body"]["state"] == "refused"]
        assert record["reason"].startswith("download failed") and "is this device" in \
            record["reason"]
        assert record["reason"][:40] in refused.inner_text()
        assert page.problems == []
    # A viewer sees the steps but cannot send a release.
    with browser(SIZES["phone"]) as page:
        log_in(page, backend.url, "tsering")
        page.goto(backend.url + "/#/cabinet/cabinet-0001")
        page.locator('#update-steps li[data-state="refused"]').first.wait_for()
        assert page.locator("#update-software").count() == 0
