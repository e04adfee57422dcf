"""The SD-card image: built rootless from a synthetic Raspberry Pi OS image (FAT boot + ext4 root)
and checked from the outside with debugfs and mtools; and the first-boot provisioning against the
real reference backend."""

from __future__ import annotations

import re
import stat
import subprocess

import pytest

from tools.image import firstboot
from tools.image.build import ImageError, build
from tools.image.synthetic import make

from .conftest import REPO, RunningBackend


def debugfs(image, offset, request: str) -> str:
    return subprocess.run(["debugfs", "-R", request, f"{image}?offset={offset}"],
                          capture_output=True, text=True, check=True).stdout


def inode(image, offset, path) -> dict:
    out = debugfs(image, offset, f"stat {path}")
    found = re.search(r"Type: (\w+)\s+Mode:\s+(\d+)", out)
    assert found, f"{path} is not in the image"
    owner = re.search(r"User:\s+(\d+)\s+Group:\s+(\d+)", out)
    link = re.search(r'Fast link dest: "([^"]+)"', out)
    return {"type": found.group(1), "mode": int(found.group(2), 8), "uid": int(owner.group(1)),
            "gid": int(owner.group(2)), "link": link.group(1) if link else None}


def test_the_image_has_the_daemon_units_users_config_and_first_boot(tmp_path):
    source = make(tmp_path / "raspios-lite.img", tmp_path / "work")
    before = source.read_bytes()
    out = tmp_path / "cabinet.img"
    parts = build(source, out)
    assert source.read_bytes() == before, "the official image is left as it was"
    img, off = out, parts.root_offset

    for path, repo_file, mode in [
            ("/etc/cabinet/cabinet.toml", "config/cabinet.toml", 0o644),
            ("/etc/cabinet/planogram.toml", "config/planogram.toml", 0o644),
            ("/etc/systemd/system/cabinetd.service", "systemd/cabinetd.service", 0o644),
            ("/etc/systemd/system/cabinet-kiosk.service", "systemd/cabinet-kiosk.service", 0o644),
            ("/etc/systemd/system/cabinet-firstboot.service", "systemd/cabinet-firstboot.service",
             0o644),
            ("/usr/local/lib/cabinet/firstboot.py", "tools/image/firstboot.py", 0o755),
            ("/etc/systemd/system/cabinet-update.path", "systemd/cabinet-update.path", 0o644),
            ("/etc/systemd/system/cabinet-update.service", "systemd/cabinet-update.service",
             0o644),
            ("/usr/local/lib/cabinet/supervisor.py", "cabinet/supervisor.py", 0o755)]:
        node = inode(img, off, path)
        assert (node["type"], node["mode"], node["uid"], node["gid"]) == ("regular", mode, 0, 0), path
        assert debugfs(img, off, f"cat {path}") == (REPO / repo_file).read_text(), path
    for unit in ("cabinetd.service", "cabinet-firstboot.service", "cabinet-kiosk.service",
                 "cabinet-update.path"):
        link = inode(img, off, f"/etc/systemd/system/multi-user.target.wants/{unit}")
        assert link["type"] == "symlink" and link["link"] == f"/etc/systemd/system/{unit}"
    from tools.image.build import FONT_DIR, font_files
    for font in font_files():  # Chinese and Tibetan for the screen
        node = inode(img, off, f"{FONT_DIR}/{font.name}")
        assert (node["type"], node["mode"]) == ("regular", 0o644)
        size = re.search(r"Size: (\d+)", debugfs(img, off, f"stat {FONT_DIR}/{font.name}"))
        assert int(size.group(1)) == font.stat().st_size
    wheels = debugfs(img, off, "ls /opt/cabinet/wheels")
    assert re.search(r"cabinet_controller-[\d.]+-py3-none-any\.whl", wheels)

    passwd = debugfs(img, off, "cat /etc/passwd")
    group = debugfs(img, off, "cat /etc/group")
    assert re.search(r"^cabinet:x:(\d+):\1::/var/lib/cabinet:/usr/sbin/nologin$", passwd, re.M)
    assert re.search(r"^cabinet-kiosk:x:\d+:", passwd, re.M)
    assert "pi:x:1000" in passwd, "the image's own users are kept"
    members = {line.split(":")[0]: line.split(":")[3].split(",") for line in group.splitlines()}
    for g in ("gpio", "dialout", "video"):
        assert "cabinet" in members[g] and "pi" in members[g], g
    for g in ("video", "render", "input", "audio"):
        assert "cabinet-kiosk" in members[g], g
    shadow = inode(img, off, "/etc/shadow")
    assert (shadow["mode"], shadow["gid"]) == (0o640, 42)
    assert "cabinet:!:" in debugfs(img, off, "cat /etc/shadow")

    boot = f"{img}@@{parts.boot_offset}"
    listing = subprocess.run(["mdir", "-i", boot, "::/"], capture_output=True, text=True).stdout
    assert "cabinet-provision.toml" in listing and "config" in listing
    template = subprocess.run(["mtype", "-i", boot, "::/cabinet-provision.toml"],
                              capture_output=True, text=True, check=True).stdout
    assert 'enrolment_token = ""' in template
    assert subprocess.run(["e2fsck", "-fn", f"{img}?offset={off}"],
                          capture_output=True).returncode == 0
    # Built again from its own output: nothing is added twice.
    again = build(out, tmp_path / "again.img")
    passwd2 = debugfs(tmp_path / "again.img", again.root_offset, "cat /etc/passwd")
    names = [line.split(":")[0] for line in passwd2.splitlines()]
    assert names.count("cabinet") == 1 and names.count("cabinet-kiosk") == 1


def test_an_image_without_two_partitions_is_refused_clearly(tmp_path):
    bad = tmp_path / "blank.img"
    bad.write_bytes(b"\0" * 1024 * 1024)
    with pytest.raises(ImageError):
        build(bad, tmp_path / "out.img")


def _root(tmp_path):
    root = tmp_path / "root"
    (root / "etc" / "cabinet").mkdir(parents=True)
    (root / "boot" / "firmware").mkdir(parents=True)
    (root / "etc" / "cabinet" / "cabinet.toml").write_text(
        (REPO / "config" / "cabinet.toml").read_text())
    return root


def test_first_boot_enrols_with_the_backend_and_takes_the_token_off_the_boot_partition(tmp_path):
    backend = RunningBackend(f"sqlite://{tmp_path}/backend.db")
    try:
        status, enrolment = backend.operator("POST", "enrolments", {"cabinet_id": "cabinet-0042"})
        assert status == 201
        root = _root(tmp_path)
        provision = root / "boot" / "firmware" / "cabinet-provision.toml"
        provision.write_text(f'cabinet_id = "cabinet-0042"\nbackend_url = "{backend.url}"\n'
                             f'enrolment_token = "{enrolment["enrolment_token"]}"\n'
                             '[wifi]\nssid = "hospital-staff"\npassword = "s3cret-pass"\n')
        args = ["--root", str(root), "--skip-install", "--no-restart"]
        assert firstboot.main(args) == 0
        assert not provision.exists(), "the token left the FAT partition"
        token_file = root / "etc" / "cabinet" / "device-token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert backend.storage.fleet.authenticate("cabinet-0042", token_file.read_text().strip())
        config = (root / "etc" / "cabinet" / "cabinet.toml").read_text()
        assert 'id = "cabinet-0042"' in config and f'backend_url = "{backend.url}"' in config
        from cabinet.config import parse
        parsed = parse(config, "provisioned")
        assert parsed.cabinet.id == "cabinet-0042" and parsed.sync.backend_url == backend.url
        wifi = root / "etc" / "NetworkManager" / "system-connections" / "cabinet-wifi.nmconnection"
        assert stat.S_IMODE(wifi.stat().st_mode) == 0o600 and "ssid=hospital-staff" in wifi.read_text()
        kept = root / "etc" / "cabinet" / "provision.toml"
        assert "enrolment_token" not in kept.read_text() and stat.S_IMODE(kept.stat().st_mode) == 0o600
        # The same token on another card: refused, with a message for the technician.
        root2 = _root(tmp_path / "second")
        (root2 / "boot" / "firmware" / "cabinet-provision.toml").write_text(
            f'cabinet_id = "cabinet-0042"\nbackend_url = "{backend.url}"\n'
            f'enrolment_token = "{enrolment["enrolment_token"]}"\n')
        assert firstboot.main(["--root", str(root2), "--skip-install", "--no-restart"]) == \
            firstboot.EX_CONFIG
    finally:
        backend.close()


def test_first_boot_waits_for_an_unreachable_backend_and_rejects_bad_files(tmp_path, capsys):
    root = _root(tmp_path)
    provision = root / "boot" / "firmware" / "cabinet-provision.toml"
    provision.write_text('cabinet_id = "cabinet-0042"\nbackend_url = "http://127.0.0.1:9"\n'
                         'enrolment_token = "abc"\n')
    args = ["--root", str(root), "--skip-install", "--no-restart"]
    assert firstboot.main(args) == firstboot.EX_RETRY
    assert not provision.exists() and (root / "etc" / "cabinet" / "provision.toml").exists()
    assert not (root / "etc" / "cabinet" / "device-token").exists()
    provision.write_text('cabinet_id = "no spaces allowed"\nbackend_url = "http://x"\n')
    assert firstboot.main(args) == firstboot.EX_CONFIG
    assert "cabinet_id must be" in capsys.readouterr().err
    provision.write_text('cabinet_id = "c1"\nbackend_url = "http://x"\n[wifi]\nssid = "a"\n'
                         'password = "short"\n')
    assert firstboot.main(args) == firstboot.EX_CONFIG
    assert "password must be 8-63" in capsys.readouterr().err


def test_a_run_cut_short_after_the_device_token_counts_as_enrolled(tmp_path):
    """Power cut after the device token was written, before the enrolment token was forgotten:
    the next run must not send the used token again (the backend refuses it for good)."""
    root = _root(tmp_path)
    etc = root / "etc" / "cabinet"
    (etc / "provision.toml").write_text('cabinet_id = "cabinet-0042"\n'
                                        'backend_url = "http://127.0.0.1:9"\n'
                                        'enrolment_token = "used-already"\n')
    firstboot.write_private(etc / "device-token", "the-device-token\n")
    assert firstboot.main(["--root", str(root), "--skip-install", "--no-restart"]) == 0
    assert "enrolment_token" not in (etc / "provision.toml").read_text()
    assert 'backend_url = "http://127.0.0.1:9"' in (etc / "cabinet.toml").read_text()
    assert (etc / ".provisioned").exists()


def test_wifi_values_are_escaped_for_networkmanager():
    text = firstboot.wifi_keyfile({"ssid": " ward 3\\", "password": "pass word \\x "})
    assert "ssid=\\sward 3\\\\\n" in text and "psk=pass word \\\\x\\s\n" in text



def test_a_broken_wheel_is_a_retry_and_leaves_no_venv_in_place(tmp_path):
    """pip failing is "try again later" (it ended first boot for good before), and only a
    complete venv is ever switched in; a half-built one from an older first boot is not taken
    for done."""
    opt = tmp_path / "opt" / "cabinet"
    (opt / "wheels").mkdir(parents=True)
    (opt / "wheels" / "cabinet_controller-0.1.0-py3-none-any.whl").write_bytes(b"not a zip")
    (opt / "venv" / "bin").mkdir(parents=True)   # what the old first boot left behind
    with pytest.raises(firstboot.Retry, match="pip install"):
        firstboot.install_venv(opt)
    assert not (opt / "venv").is_symlink() and not (opt / "venv" / "bin" / "cabinetd").exists()
    assert not any(p.joinpath(".complete").exists() for p in (opt / "venvs").iterdir())


def test_progress_is_recorded_step_by_step_and_printed(tmp_path, capsys):
    root = _root(tmp_path)
    (root / "boot" / "firmware" / "cabinet-provision.toml").write_text(
        'cabinet_id = "cabinet-0042"\nbackend_url = "http://127.0.0.1:9"\nenrolment_token = "t"\n')
    args = ["--root", str(root), "--skip-install", "--no-restart"]
    assert firstboot.main(args) == firstboot.EX_RETRY
    assert firstboot.main(args) == firstboot.EX_RETRY    # again: done steps stay done
    steps = firstboot.Progress(root / "var/lib/cabinet-firstboot/progress.json").steps
    assert steps["provision"]["state"] == "done" and steps["enrol"]["state"] == "retry"
    assert steps["enrol"]["attempts"] == 2 and "backend unreachable" in steps["enrol"]["detail"]
    capsys.readouterr()
    assert firstboot.main(["--root", str(root), "--status"]) == 3
    out = capsys.readouterr().out
    assert "enrol      retry" in out and "2 attempt(s)" in out and "in progress" in out
    assert not (root / "etc" / "cabinet" / ".provisioned").exists()
    # What the daemon shows of it (/api/state's `setup`, the screen's footer).
    from cabinet.ui.setup_status import SetupStatus
    shown = SetupStatus(root / "var/lib/cabinet-firstboot/progress.json").read()
    assert shown["complete"] is False
    assert [w["step"] for w in shown["waiting"]] == ["enrol"]
    assert "backend unreachable" in shown["waiting"][0]["detail"]
    assert SetupStatus(tmp_path / "absent.json").read() is None
