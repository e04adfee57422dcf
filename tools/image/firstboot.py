#!/usr/bin/python3
"""First boot of a cabinet's SD card: provisioning from the boot partition (standard library only,
it runs on the Pi's own python3 before the daemon's venv exists).

The technician (or Raspberry Pi Imager's customisation) puts `cabinet-provision.toml` on the FAT
boot partition, /boot/firmware, next to cloud-init's user-data and network-config:

    cabinet_id = "cabinet-0042"
    backend_url = "https://backend.example.org"
    enrolment_token = "…"            # from the operator: POST /v1/operator/enrolments
    [wifi]                           # optional: the cabinet's Wi-Fi (NetworkManager)
    ssid = "hospital-staff"
    password = "…"

This script, run by cabinet-firstboot.service:
1. moves the file off the boot partition at once (anyone who pulls the card can read FAT) to
   /etc/cabinet/provision.toml, mode 0600;
2. writes the Wi-Fi connection (/etc/NetworkManager/system-connections, mode 0600) and the
   cabinet id into /etc/cabinet/cabinet.toml;
3. creates the daemon's venv from the wheels on the image (/opt/cabinet/wheels) if needed, and
   installs the kiosk's programs (chromium, cage, espeak-ng) with apt;
4. trades the enrolment token for the device token (POST {backend_url}/v1/enrol), writes
   /etc/cabinet/device-token (0600, owned by the cabinet user), sets sync.backend_url, forgets the
   enrolment token, and restarts cabinetd. Until then the cabinet sells stand-alone and queues.

Exit 75 when the backend cannot be reached (the unit retries), 1 when the provisioning is wrong
(the message says what), 0 when done.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import re
import subprocess
import sys
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

EX_RETRY = 75


class ProvisionError(Exception):
    pass


def read_provision(path: Path) -> dict:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ProvisionError(f"{path}: not a readable TOML file: {exc}") from None
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", str(data.get("cabinet_id", ""))):
        raise ProvisionError(f"{path}: cabinet_id must be 1-64 letters, digits, '_', '.', '-'")
    if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", str(data.get("backend_url", ""))):
        raise ProvisionError(f"{path}: backend_url must be an http(s) URL")
    wifi = data.get("wifi")
    if wifi is not None and (not isinstance(wifi, dict) or not wifi.get("ssid")):
        raise ProvisionError(f"{path}: [wifi] needs at least ssid")
    unknown = set(data) - {"cabinet_id", "backend_url", "enrolment_token", "wifi"}
    if unknown:
        raise ProvisionError(f"{path}: unknown keys {sorted(unknown)}")
    return data


def write_private(path: Path, text: str, owner: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    new = path.with_suffix(path.suffix + ".new")
    fd = os.open(new, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    if owner is not None:
        try:
            user = pwd.getpwnam(owner)
            os.chown(new, user.pw_uid, user.pw_gid)
        except KeyError:
            pass  # a test root without that user
    os.replace(new, path)


def set_key(config_text: str, section: str, key: str, value: str) -> str:
    """Set `key = "value"` in [section] of the cabinet's TOML, keeping every comment."""
    lines, current, done = config_text.splitlines(), None, False
    for i, line in enumerate(lines):
        header = re.match(r"\s*\[([^\]]+)\]", line)
        if header:
            current = header.group(1).strip()
        elif current == section and re.match(rf"\s*{re.escape(key)}\s*=", line):
            lines[i] = f"{key} = {json.dumps(value)}"
            done = True
    if not done:
        raise ProvisionError(f"cabinet.toml has no {section}.{key} to set")
    return "\n".join(lines) + "\n"


def wifi_keyfile(wifi: dict) -> str:
    out = ["[connection]", "id=cabinet-wifi", "type=wifi", "autoconnect=true", "",
           "[wifi]", "mode=infrastructure", f"ssid={wifi['ssid']}", ""]
    if wifi.get("password"):
        out += ["[wifi-security]", "key-mgmt=wpa-psk", f"psk={wifi['password']}", ""]
    out += ["[ipv4]", "method=auto", "", "[ipv6]", "method=auto", ""]
    return "\n".join(out)


def enrol(backend_url: str, cabinet_id: str, token: str, timeout: float = 15) -> str:
    body = json.dumps({"cabinet_id": cabinet_id, "enrolment_token": token}).encode()
    request = urllib.request.Request(backend_url.rstrip("/") + "/v1/enrol", data=body,
                                     method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as reply:
        return json.load(reply)["device_token"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, default=Path("/"), help="(tests) the system's root")
    p.add_argument("--boot", type=Path, default=None, help="the boot partition's mount point")
    p.add_argument("--skip-install", action="store_true", help="(tests) no venv")
    p.add_argument("--no-restart", action="store_true", help="(tests) do not restart cabinetd")
    args = p.parse_args(argv)
    root = args.root
    boot = args.boot or root / "boot" / "firmware"
    etc = root / "etc" / "cabinet"
    on_boot, kept = boot / "cabinet-provision.toml", etc / "provision.toml"
    try:
        if on_boot.exists():
            data = read_provision(on_boot)
            write_private(kept, on_boot.read_text(encoding="utf-8"))
            on_boot.unlink()  # the token must not stay on the FAT partition
            print(f"firstboot: provisioning moved to {kept}")
        elif kept.exists():
            data = read_provision(kept)
        else:
            print("firstboot: nothing to provision")
            return 0
        config_path = etc / "cabinet.toml"
        config = set_key(config_path.read_text(encoding="utf-8"), "cabinet", "id",
                         data["cabinet_id"])
        config_path.write_text(config, encoding="utf-8")
        if data.get("wifi"):
            write_private(root / "etc" / "NetworkManager" / "system-connections"
                          / "cabinet-wifi.nmconnection", wifi_keyfile(data["wifi"]))
        if not args.skip_install:
            if not (root / "opt" / "cabinet" / "venv").exists():
                install_venv(root / "opt" / "cabinet")
            if install_screen_packages() is False:
                return EX_RETRY
        if not data.get("enrolment_token"):
            print("firstboot: no enrolment token: the cabinet runs stand-alone until one is given")
            return 0
        try:
            device_token = enrol(data["backend_url"], data["cabinet_id"], data["enrolment_token"])
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:300].decode("utf-8", "replace")
            if exc.code in (401, 403, 404, 422):
                raise ProvisionError(f"the backend refused the enrolment: {detail} (ask the "
                                     "operator for a new token)") from None
            print(f"firstboot: backend answered {exc.code}; trying again later", file=sys.stderr)
            return EX_RETRY
        except (urllib.error.URLError, OSError) as exc:
            print(f"firstboot: backend unreachable ({exc}); trying again later", file=sys.stderr)
            return EX_RETRY
        write_private(etc / "device-token", device_token + "\n", owner="cabinet")
        config_path.write_text(set_key(config_path.read_text(encoding="utf-8"), "sync",
                                       "backend_url", data["backend_url"]), encoding="utf-8")
        write_private(kept, "\n".join(line for line in kept.read_text().splitlines()
                                      if not line.strip().startswith("enrolment_token")) + "\n")
        (etc / ".provisioned").write_text(data["cabinet_id"] + "\n")
        print(f"firstboot: {data['cabinet_id']} enrolled with {data['backend_url']}")
        if not args.no_restart:
            subprocess.run(["systemctl", "try-restart", "cabinetd.service"], check=False)
        return 0
    except ProvisionError as exc:
        print(f"firstboot: {exc}", file=sys.stderr)
        return 1


SCREEN_PACKAGES = ("chromium", "cage", "espeak-ng")


def install_screen_packages() -> bool | None:
    """The kiosk's programs (the fonts are on the image already); False when apt cannot reach
    its mirror yet (retried), None when there was nothing to do."""
    missing = [p for p in SCREEN_PACKAGES if subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", p], capture_output=True, text=True
    ).stdout != "install ok installed"]
    if not missing:
        return None
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"],
                    ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing]):
        if subprocess.run(command, env=env).returncode != 0:
            print(f"firstboot: {' '.join(command[:2])} failed; trying again later", file=sys.stderr)
            return False
    return True


def install_venv(opt: Path) -> None:
    """The daemon's venv from the wheels on the image (the index too, for what is not there)."""
    venv = opt / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
                   check=True)
    # With face checkout: the image is for Raspberry Pi OS 64-bit, where dlib-bin has wheels.
    subprocess.run([str(venv / "bin" / "pip"), "install", "--find-links", str(opt / "wheels"),
                    "cabinet-controller[face]"], check=True)


if __name__ == "__main__":
    sys.exit(main())
