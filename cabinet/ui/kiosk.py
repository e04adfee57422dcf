"""What the kiosk page needs besides /api/state: the page itself with the current state in it, a
live stream of the state (server-sent events), the screen's QR as SVG, the camera's view while a
face is checked, the ads that are ready and their files, the strings, and speech.

The page is served with the state, the strings, the ready ads and the QR already in it, so its
first paint is the real screen (a kiosk that boots, a slow Pi, a plain screenshot), not a blank
page waiting for the stream.

The event stream wakes when the controller publishes a new snapshot (it once looked every 100 ms,
which a receipt waited for). A change of what the shopper watches (the screen, the session, the
receipt, the lock, the door) is sent at once; other changes (a session publishes at every shelf
reading) at most one message per `min_gap`, as the latest of their burst. A comment every 15 s
notices a dead connection; the browser's EventSource reconnects by itself after a daemon restart.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from ..access.qr_render import qr_svg

STATIC = Path(__file__).parent / "static"
AD_TYPES = {b"\x89PNG": "image/png", b"\xff\xd8\xff": "image/jpeg", b"GIF8": "image/gif",
            b"RIFF": "image/webp"}


class Kiosk:
    def __init__(self, state: Callable[[], dict[str, Any]], *,
                 published: Callable[[object, float], object] | None = None, ads: Any = None,
                 speaker: Any = None, camera: Any = None):
        # `published(last, timeout)` returns the controller's snapshot object once it is another
        # than `last` (Controller.wait_published); `state` the full state as /api/state answers
        # it; `camera` has latest() (drivers.camera).
        self.state, self.ads, self.speaker, self.camera = state, ads, speaker, camera
        self.published = published or self._looked_at
        self.closing = False

    def _looked_at(self, last: object, timeout: float) -> object:
        """Without a controller to wake it: the state, looked at every 100 ms."""
        time.sleep(min(timeout, 0.1))
        return self.state()

    # What the shopper watches: a change here is sent at once, whatever the gap.
    URGENT = ("screen", "session", "receipt", "lock", "door")

    def events(self, min_gap: float = 0.1, keepalive: float = 15.0) -> Iterator[bytes]:
        last, last_sent, last_urgent = None, time.monotonic(), None
        while not self.closing:
            current = self.published(last, 1.0)  # a second at most, to notice closing
            if current is not last:
                # Shelf readings and the like (a session publishes at each): the latest of each
                # gap is sent, not each of them; but a change the shopper watches ends the wait.
                deadline = last_sent + min_gap
                while (self._urgent(current) == last_urgent
                       and (left := deadline - time.monotonic()) > 0):
                    current = self.published(current, left)
                last, last_sent, last_urgent = current, time.monotonic(), self._urgent(current)
                yield f"data: {json.dumps(self.state(), ensure_ascii=False)}\n\n".encode()
            elif time.monotonic() - last_sent > keepalive:
                last_sent = time.monotonic()
                yield b": keep-alive\n\n"

    def _urgent(self, snapshot: object) -> tuple:
        return tuple(snapshot.get(key) for key in self.URGENT) if isinstance(snapshot, dict) else ()

    def page(self) -> bytes:
        state = self.state()
        qr = state.get("screen_qr")
        boot = {"state": state, "strings": json.loads((STATIC / "strings.json").read_text("utf-8")),
                "ads": self.ads_ready(), "qr_svg": None if qr is None else qr_svg(qr["url"])}
        # No "<" may reach the <script> element: "</script>" would end it and "<!--<script>" (in
        # a product name, say) would swallow the page's own script. JSON's \u escapes say the
        # same characters without markup.
        data = (json.dumps(boot, ensure_ascii=False).replace("<", "\\u003c")
                .replace(">", "\\u003e").replace("&", "\\u0026"))
        html = (STATIC / "index.html").read_text("utf-8")
        return html.replace('<script id="boot" type="application/json">{}</script>',
                            f'<script id="boot" type="application/json">{data}</script>', 1).encode()

    def camera_frames(self, fps: float = 10.0, width: int = 480,
                      longest: float = 60.0) -> Iterator[bytes]:
        """The camera's view as motion JPEG parts, for the face check's preview on the screen.
        Ends by itself after `longest` seconds (the page asks again if it still needs it)."""
        if self.camera is None:
            return
        import cv2

        last, until = None, time.monotonic() + longest
        while not self.closing and time.monotonic() < until:
            latest = self.camera.latest()
            if latest is not None and latest[0] != last:
                last, frame = latest[0], latest[2]
                h, w = frame.shape[:2]
                if w > width:
                    frame = cv2.resize(frame, (width, round(h * width / w)),
                                       interpolation=cv2.INTER_AREA)
                ok, jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 70])
                if ok:
                    yield (b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                           + str(len(jpeg)).encode() + b"\r\n\r\n" + jpeg.tobytes() + b"\r\n")
            time.sleep(1 / fps)

    def screen_qr_svg(self) -> bytes | None:
        qr = self.state().get("screen_qr")
        return None if qr is None else qr_svg(qr["url"]).encode()

    def ads_ready(self) -> list[dict[str, Any]]:
        if self.ads is None:
            return []
        return [{"sha256": a["sha256"], "seconds": a["seconds"]} for a in self.ads.ready()]

    def ad_file(self, sha: str) -> tuple[bytes, str] | None:
        if self.ads is None or not re.fullmatch(r"[0-9a-f]{64}", sha):
            return None
        for ad in self.ads.ready():
            if ad["sha256"] == sha:
                data = Path(ad["file"]).read_bytes()
                kind = next((t for magic, t in AD_TYPES.items() if data.startswith(magic)),
                            "application/octet-stream")
                return data, kind
        return None

    def speak(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or not isinstance(body.get("message"), str) \
                or body.get("lang") not in ("zh", "bo", "en"):
            raise ValueError("give {'message': a strings.json id, 'lang': 'zh', 'bo' or 'en'}")
        total = body.get("total_fen")
        if total is not None and (not isinstance(total, int) or isinstance(total, bool)
                                  or not 0 <= total <= 10_000_000):
            raise ValueError("'total_fen' must be a whole number of fen, 0 to 10000000")
        if self.speaker is None:
            return {"ok": True, "speech": "off", "source": None}
        result, source = self.speaker.speak(body["message"], body["lang"], total)
        if result == "unknown":
            raise ValueError(f"unknown message {body['message']!r}")
        # Which voice said it (recording / espeak), for the screen's speech status.
        return {"ok": True, "speech": result, "source": source}
