"""Phone-scan-to-open: the screen's nonce opens once, rotates, and old ones are dead."""

from __future__ import annotations

import pytest

from cabinet.access.phone_scan import NonceRefused, PhoneScan
from cabinet.access.qr_decode import decode
from cabinet.access.qr_render import qr_image
from cabinet.checkout import Refused

from .test_checkout import rig  # noqa: F401
from .test_controller import FakeClock


def test_nonce_lifecycle():
    clock = FakeClock()
    phone = PhoneScan("cab-7", "https://pay.example/open/", clock=clock, rotate_seconds=60,
                      grace_seconds=10)
    first = phone.current()
    assert phone.url == f"https://pay.example/open/cab-7?n={first}" and len(first) >= 22
    assert phone.check(first) == "current"
    clock.advance(61)
    second = phone.current()
    assert second != first and phone.check(first) == "previous"  # scanned as it rotated
    clock.advance(11)
    with pytest.raises(NonceRefused, match="old or already used"):
        phone.check(first)
    phone.burn(phone.check(second))
    with pytest.raises(NonceRefused):
        phone.check(second)  # used once: dead
    with pytest.raises(NonceRefused) as bad:
        phone.check("")
    assert bad.value.reason == "malformed"


def test_screen_qr_decodes_to_the_url():
    phone = PhoneScan("cab-7", "https://pay.example/open", clock=FakeClock())
    assert decode(qr_image(phone.url, box=6)) == [phone.url]


def test_remote_unlock_through_the_controller(rig):  # noqa: F811
    url = rig.c.snapshot["screen_qr"]["url"]
    nonce = url.split("?n=")[1]
    session_id = rig.c.call_now(lambda: rig.c.remote_unlock(nonce, "acct-9"))
    assert not rig.out.lock.locked and rig.c.snapshot["screen_qr"] is None
    assert rig.c.snapshot["session"]["method"] == "phone"
    rig.clock.advance(16)
    rig.step()
    with pytest.raises(Refused) as refused:
        rig.c.remote_unlock(nonce, "acct-9")
    assert refused.value.reason == "stale_nonce"
    assert rig.c.snapshot["screen_qr"]["url"] != url
    assert session_id
