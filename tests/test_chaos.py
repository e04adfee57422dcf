"""The chaos harness (tools/chaos.py) as a test: at least 200 kills, no sale lost or duplicated.

CHAOS_KILLS overrides the count (e.g. CHAOS_KILLS=20 for a quick local run)."""

from __future__ import annotations

import os

import pytest

from tools.chaos import Harness

pytestmark = pytest.mark.slow


def test_random_kills_lose_no_sale_and_duplicate_none(tmp_path):
    kills = int(os.environ.get("CHAOS_KILLS", "200"))
    harness = Harness(tmp_path / "data", seed=20261123, log=lambda *a: None)
    try:
        harness.run(kills)
    finally:
        if harness.daemon is not None:
            harness.daemon.kill()
    assert sum(harness.kills.values()) == kills
    assert len(harness.kills) == 10, "every kill point, by both methods"
    assert harness.check() == []
