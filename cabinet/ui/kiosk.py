"""What the kiosk page needs besides /api/state: a live stream of the state (server-sent events),
the screen's QR as SVG, the ads that are ready and their files, the strings, and speech.

The event stream sends the state whenever the controller has published a new snapshot (checked
every 100 ms by reference: the controller swaps in a new object on each publish, so this costs
nothing between changes), and a comment every 15 s so that a dead connection is noticed; the
browser's EventSource reconnects by itself after a daemon restart.
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
                 published: Callable[[], object] | None = None, ads: Any = None,
                 speaker: Any = None):
        # `published` returns the controller's current snapshot object (for change detection);
        # `state` the full state as /api/state answers it.
        self.state, self.ads, self.speaker = state, ads, speaker
        self.published = published or state
        self.closing = False

    def events(self, interval: float = 0.1, keepalive: float = 15.0) -> Iterator[bytes]:
        last, last_sent = None, time.monotonic()
        while not self.closing:
            current = self.published()
            if current is not last:
                last, last_sent = current, time.monotonic()
                yield f"data: {json.dumps(self.state(), ensure_ascii=False)}\n\n".encode()
            elif time.monotonic() - last_sent > keepalive:
                last_sent = time.monotonic()
                yield b": keep-alive\n\n"
            time.sleep(interval)

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
        if self.speaker is None:
            return {"ok": True, "speech": "off"}
        result = self.speaker.say(body["message"], body["lang"])
        if result == "unknown":
            raise ValueError(f"unknown message {body['message']!r}")
        return {"ok": True, "speech": result}
