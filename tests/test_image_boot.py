"""The SD image boots into a selling cabinet: a debootstrapped Debian made into an image by the
builder and booted under systemd-nspawn, first boot's faults recovered by themselves
(tools/image/boot_test.py says what is checked). Needs root, debootstrap and systemd-nspawn, and
takes minutes: it runs with `-m boot` (CI runs it; tools/test.sh alone does not)."""

from __future__ import annotations

import os
import shutil

import pytest

from tools.image import boot_test

pytestmark = pytest.mark.boot


@pytest.mark.skipif(os.geteuid() != 0, reason="booting an image needs root")
def test_the_image_boots_provisions_and_recovers(tmp_path):
    for tool in ("debootstrap", "systemd-nspawn", "losetup", "mcopy"):
        assert shutil.which(tool), f"{tool} missing: tools/setup.sh boot installs it"
    work = tmp_path / "boot"
    try:
        took = boot_test.run(work)
    finally:
        # A 2 GB image and a Debian tree: not left in pytest's temp folder.
        shutil.rmtree(work, ignore_errors=True)
    print("boot test:", took)
