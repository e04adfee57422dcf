"""The chaos harness (tools/chaos.py) as a test: about 200 kills, no sale lost or duplicated.

They are run as four cabinets of about 50 (each its own data folder and seed), so that on several
workers they run side by side rather than as one five-minute test: three one-door cabinets (the
embedded config) and one two-door, two-zone cabinet (config/two-door.toml), whose sessions open one
door or both and are also killed with one door shut and the other open. Every cabinet meets every
kill point by both methods (the harness deals them in rounds). CHAOS_KILLS overrides the total
(e.g. CHAOS_KILLS=20 for a quick local run)."""

from __future__ import annotations

import os

import pytest

from tools.chaos import Harness

from .conftest import REPO

pytestmark = pytest.mark.slow
CABINETS = [None, None, None, REPO / "config" / "two-door.toml"]


@pytest.mark.parametrize("part", range(len(CABINETS)))
def test_random_kills_lose_no_sale_and_duplicate_none(tmp_path, part):
    config = CABINETS[part]
    harness = Harness(tmp_path / "data", seed=20261123 + part, log=lambda *a: None,
                      config=config)
    # Whole rounds: 10 kills a round on one door (5 points x 2 ways), 12 on two doors.
    round_size = 12 if config else 10
    share = int(os.environ.get("CHAOS_KILLS", "200")) // len(CABINETS)
    kills = max(1, share // round_size) * round_size
    try:
        harness.run(kills)
    finally:
        if harness.daemon is not None:
            harness.daemon.kill()
    assert sum(harness.kills.values()) == kills
    assert len(harness.kills) == round_size, "every kill point, by both methods"
    if config:
        assert len(harness.doors) == 2
    assert harness.check() == []
