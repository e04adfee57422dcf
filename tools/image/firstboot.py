#!/usr/bin/python3
"""First boot of a cabinet's SD card: provisioning from the boot partition, as a sequence of
idempotent steps (standard library only: it runs on the Pi's own python3 before the daemon's venv
exists).

The technician (or Raspberry Pi Imager's customisation) puts `cabinet-provision.toml` on the FAT
boot partition, /boot/firmware, next to cloud-init's user-data and network-config:

    cabinet_id = "cabinet-0042"
    backend_url = "https://backend.example.org"
    enrolment_token = "…"            # from the operator: POST /v1/operator/enrolments
    [wifi]                           # optional: the cabinet's Wi-Fi (NetworkManager)
    ssid = "hospital-staff"
    password = "…"

The steps, each skipped when its result is already there, each retried when it fails:
  provision  the file moved off the boot partition at once (anyone who pulls the card can read
             FAT) to /etc/cabinet/provision.toml, mode 0600
  config     the cabinet id into /etc/cabinet/cabinet.toml, the Wi-Fi connection (0600)
  software   the daemon's venv from the wheels on the image, built under its final name in
             /opt/cabinet/venvs/ and switched in (the /opt/cabinet/venv link) only when complete;
             offline (--no-index) when the image's bundle is complete for this Python
  enrol      the enrolment token traded for the device token (POST {backend_url}/v1/enrol),
             /etc/cabinet/device-token (0600, owner cabinet), sync.backend_url set, the token
             forgotten (a device token already there counts: a run cut short after it was written)
  daemon     cabinetd started (it sells stand-alone and queues until enrolment), or restarted
             once enrolment has changed its config
  gpio       the GPIO library (Debian's python3-lgpio where PyPI has no wheel for this Python)
  screen     the kiosk's programs (chromium, cage, espeak-ng, alsa-utils) with apt; skipped on
             a machine with no console (/dev/tty1): no screen to drive
Optional steps come after enrolment: a cabinet that reaches its backend but not the package mirror
still enrols. Progress is in /var/lib/cabinet-firstboot/progress.json (`--status` prints it, as
does `cabinet firstboot status`); /etc/cabinet/.provisioned marks the end.

Exit 0 when every step is done, 75 when one must be tried again (the unit retries), 78 only when
the provisioning file itself is wrong or its token was refused (the message says what; the other
steps still run). Anything unforeseen is "try again later" too: never "give up for good".
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import sysconfig
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

EX_RETRY = 75
EX_CONFIG = 78  # the provisioning file is wrong (the unit does not retry it; a crash, 1, is retried)
STEPS = ("provision", "config", "software", "enrol", "daemon", "gpio", "screen")
STATE = Path("var/lib/cabinet-firstboot")
SCREEN_PACKAGES = ("chromium", "cage", "espeak-ng", "alsa-utils")  # aplay: recorded voice


class ProvisionError(Exception):
    """The provisioning file is wrong: retrying cannot help."""


class Retry(Exception):
    """This step failed for now (no network, no mirror, a pip failure): try again later."""


# --- the provisioning file ------------------------------------------------------------------------

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
    if wifi is not None:
        if not isinstance(wifi, dict) or not isinstance(wifi.get("ssid"), str) \
                or not 1 <= len(wifi["ssid"].encode()) <= 32:
            raise ProvisionError(f"{path}: [wifi] needs ssid, 1-32 bytes")
        password = wifi.get("password", "")
        if not isinstance(password, str) or (password and not 8 <= len(password) <= 63):
            raise ProvisionError(f"{path}: [wifi] password must be 8-63 characters (WPA)")
        if any(c in wifi["ssid"] + password for c in "\r\n\0") or set(wifi) - {"ssid", "password"}:
            raise ProvisionError(f"{path}: [wifi] takes ssid and password, on one line each")
    unknown = set(data) - {"cabinet_id", "backend_url", "enrolment_token", "wifi"}
    if unknown:
        raise ProvisionError(f"{path}: unknown keys {sorted(unknown)}")
    return data


def write_private(path: Path, text: str, owner: str | None = None, mode: int = 0o600) -> None:
    """Written whole or not at all (a power cut leaves the old file), synced before the rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    new = path.with_suffix(path.suffix + ".new")
    fd = os.open(new, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    os.fchmod(fd, mode)
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


def update_config(path: Path, section: str, key: str, value: str) -> None:
    """cabinet.toml's `section.key` set, atomically, and only when it changes (first boot runs
    again every 15 s while it waits for a network: no rewrite each time)."""
    text = path.read_text(encoding="utf-8")
    changed = set_key(text, section, key, value)
    if changed != text:
        write_private(path, changed, mode=0o644)


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


def _keyfile_value(text: str) -> str:
    """GKeyFile escaping: a backslash, and spaces at either end, would change the value."""
    text = text.replace("\\", "\\\\")
    if text.startswith(" "):
        text = "\\s" + text[1:]
    if text.endswith(" ") and len(text) > 1:
        text = text[:-1] + "\\s"
    return text


def wifi_keyfile(wifi: dict) -> str:
    out = ["[connection]", "id=cabinet-wifi", "type=wifi", "autoconnect=true", "",
           "[wifi]", "mode=infrastructure", f"ssid={_keyfile_value(wifi['ssid'])}", ""]
    if wifi.get("password"):
        out += ["[wifi-security]", "key-mgmt=wpa-psk", f"psk={_keyfile_value(wifi['password'])}",
                ""]
    out += ["[ipv4]", "method=auto", "", "[ipv6]", "method=auto", ""]
    return "\n".join(out)


def enrol(backend_url: str, cabinet_id: str, token: str, timeout: float = 15) -> str:
    body = json.dumps({"cabinet_id": cabinet_id, "enrolment_token": token}).encode()
    request = urllib.request.Request(backend_url.rstrip("/") + "/v1/enrol", data=body,
                                     method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as reply:
        return json.load(reply)["device_token"]


# --- progress -------------------------------------------------------------------------------------

class Progress:
    """The steps' states in a small JSON file a technician (and the screen) can read."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.steps = json.loads(path.read_text())["steps"]
        except (OSError, ValueError, KeyError, TypeError):
            self.steps = {}
        for name in STEPS:
            self.steps.setdefault(name, {"state": "pending", "attempts": 0})

    def mark(self, name: str, state: str, detail: str = "") -> None:
        step = self.steps[name]
        if state == "running":
            step["attempts"] = step.get("attempts", 0) + 1
        step.update(state=state, detail=detail, at=time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                   time.gmtime()))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".new")
        tmp.write_text(json.dumps({"steps": self.steps}, indent=1) + "\n")
        os.replace(tmp, self.path)
        if state != "running":
            print(f"firstboot: {name}: {state}" + (f" ({detail})" if detail else ""), flush=True)


def status(progress_path: Path) -> int:
    """`--status`: one line per step, for a technician at the console."""
    if not progress_path.exists():
        print("first boot has not run yet (or this is not a cabinet image)")
        return 1
    progress = Progress(progress_path)
    for name in STEPS:
        s = progress.steps[name]
        tries = f", {s['attempts']} attempt(s)" if s.get("attempts", 0) > 1 else ""
        print(f"{name:<10} {s['state']:<8} {s.get('at', '')}{tries}  {s.get('detail', '')}".rstrip())
    done = all(progress.steps[n]["state"] in ("done", "skipped") for n in STEPS)
    print("first boot complete" if done else
          "first boot in progress: `journalctl -u cabinet-firstboot` shows each attempt")
    return 0 if done else 3


# --- the steps ------------------------------------------------------------------------------------

class FirstBoot:
    def __init__(self, root: Path, boot: Path, *, install: bool, restart: bool):
        self.root, self.boot, self.install, self.restart = root, boot, install, restart
        self.etc = root / "etc" / "cabinet"
        self.opt = root / "opt" / "cabinet"
        self.data: dict = {}

    def provision(self) -> str:
        on_boot, kept = self.boot / "cabinet-provision.toml", self.etc / "provision.toml"
        if on_boot.exists():
            self.data = read_provision(on_boot)
            write_private(kept, on_boot.read_text(encoding="utf-8"))
            on_boot.unlink()  # the token must not stay on the FAT partition
            return f"moved to {kept}"
        if not kept.exists():
            raise ProvisionError(f"no {on_boot} and no {kept}: nothing to provision")
        self.data = read_provision(kept)
        return "already moved"

    def config(self) -> str:
        update_config(self.etc / "cabinet.toml", "cabinet", "id", self.data["cabinet_id"])
        if not self.data.get("wifi"):
            return f"cabinet {self.data['cabinet_id']}"
        keyfile = (self.root / "etc" / "NetworkManager" / "system-connections"
                   / "cabinet-wifi.nmconnection")
        text = wifi_keyfile(self.data["wifi"])
        if not keyfile.exists() or keyfile.read_text(encoding="utf-8") != text:
            write_private(keyfile, text)
        if self.restart and shutil.which("nmcli"):
            # NetworkManager started before this file existed: have it read the file now.
            run(["nmcli", "connection", "reload"], "nmcli connection reload")
            subprocess.run(["nmcli", "connection", "up", "cabinet-wifi"], capture_output=True)
        return f"cabinet {self.data['cabinet_id']}, Wi-Fi {self.data['wifi']['ssid']!r}"

    def software(self) -> str:
        if not self.install:
            return "skipped (--skip-install)"
        return install_venv(self.opt)

    def daemon(self) -> str:
        if not self.restart:
            return "not started (--no-restart)"
        if not (self.opt / "venv" / "bin" / "cabinetd").exists():
            raise Retry("waiting for the software step")
        # The unit has a condition on the venv, so it was skipped at boot: start it now (it
        # sells stand-alone and queues until enrolment), or restart it once enrolment changed
        # its config. reset-failed: a start limit reached before must not refuse this start.
        marker = self.root / STATE / "restart-cabinetd"
        run(["systemctl", "reset-failed", "cabinetd.service"], "systemctl reset-failed")
        verb = "restart" if marker.exists() else "start"
        run(["systemctl", verb, "--no-block", "cabinetd.service"], f"systemctl {verb} cabinetd")
        marker.unlink(missing_ok=True)
        return f"cabinetd {verb}ed"

    def enrol(self) -> str:
        token_file = self.etc / "device-token"
        if token_file.exists():  # enrolled (perhaps by a run cut short before it could tidy up)
            self._enrolled()
            return "enrolled"
        if not self.data.get("enrolment_token"):
            return "no enrolment token: the cabinet runs stand-alone until one is given"
        try:
            device_token = enrol(self.data["backend_url"], self.data["cabinet_id"],
                                 self.data["enrolment_token"])
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:300].decode("utf-8", "replace")
            if exc.code in (401, 403, 404, 422):
                raise ProvisionError(f"the backend refused the enrolment: {detail} (ask the "
                                     "operator for a new token)") from None
            raise Retry(f"the backend answered {exc.code}") from None
        except (urllib.error.URLError, OSError, ValueError, KeyError) as exc:
            raise Retry(f"backend unreachable ({exc})") from None
        write_private(token_file, device_token + "\n", owner="cabinet")
        self._enrolled()
        return f"{self.data['cabinet_id']} enrolled with {self.data['backend_url']}"

    def _enrolled(self) -> None:
        """What follows the device token, each part safe to repeat: the backend in the config,
        the enrolment token forgotten, cabinetd to be restarted (by the daemon step)."""
        config = self.etc / "cabinet.toml"
        before = config.read_text(encoding="utf-8")
        update_config(config, "sync", "backend_url", self.data["backend_url"])
        if config.read_text(encoding="utf-8") != before:
            marker = self.root / STATE / "restart-cabinetd"
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
        kept = self.etc / "provision.toml"
        lines = kept.read_text(encoding="utf-8").splitlines()
        if any(line.strip().startswith("enrolment_token") for line in lines):
            write_private(kept, "\n".join(line for line in lines
                                          if not line.strip().startswith("enrolment_token")) + "\n")
        self.data.pop("enrolment_token", None)

    def gpio(self) -> str:
        if not self.install:
            return "skipped (--skip-install)"
        if os.uname().machine != "aarch64":
            return "skipped: not a Raspberry Pi (no GPIO header)"
        python = self.opt / "venv" / "bin" / "python"
        if not python.exists():
            raise Retry("waiting for the software step")
        # The venv's own view: its wheel (3.11) or the system's package (it sees site-packages).
        if subprocess.run([str(python), "-c", "import lgpio"], capture_output=True).returncode == 0:
            return "lgpio present"
        debs = sorted((self.opt / "debs").glob("*.deb"))
        if debs:  # bundled with the image (`--debs`): offline
            run(["dpkg", "-i", *map(str, debs)], "installing the bundled lgpio packages")
        else:
            apt_install(["python3-lgpio"])
        if self.restart:
            run(["systemctl", "try-restart", "--no-block", "cabinetd.service"], "restarting")
        return "lgpio installed"

    def screen(self) -> str:
        if not self.install:
            return "skipped (--skip-install)"
        if not (self.root / "dev" / "tty1").exists():
            return "skipped: no console (/dev/tty1), no screen to drive"
        missing = [p for p in SCREEN_PACKAGES if subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", p], capture_output=True, text=True
        ).stdout != "install ok installed"]
        if not missing:
            return "installed before"
        apt_install(missing)
        if self.restart:
            run(["systemctl", "start", "--no-block", "cabinet-kiosk.service"], "starting the kiosk")
        return "installed " + ", ".join(missing)


def run(command: list[str], what: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise Retry(f"{what} failed: {' / '.join(tail) or f'exit {result.returncode}'}")


def apt_install(packages: list[str]) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    wait = ["-o", "DPkg::Lock::Timeout=300"]   # apt-daily may hold the lock at boot
    # An install cut short by a power cut leaves dpkg half-configured: finish it first.
    subprocess.run(["dpkg", "--configure", "-a"], env=env, capture_output=True)
    for command in (["apt-get", *wait, "update", "-qq"],
                    ["apt-get", *wait, "install", "-y", "-qq", "--no-install-recommends",
                     *packages]):
        result = subprocess.run(command, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            tail = result.stderr.strip().splitlines()[-1:] or [f"exit {result.returncode}"]
            raise Retry(f"{' '.join(command[:2])}: {tail[0]}")


def bundle_is_complete(wheels: Path) -> bool:
    """The image builder lists, in bundle.json, the Pythons its wheels were checked complete for
    (resolved offline at build time)."""
    # sysconfig, not uname: a 32-bit OS on a 64-bit kernel says aarch64 in uname.
    machine = sysconfig.get_platform().split("-", 1)[-1]
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}-{machine}"
    try:
        return tag in json.loads((wheels / "bundle.json").read_text())["complete_for"]
    except (OSError, ValueError, KeyError, TypeError):
        return False


def install_venv(opt: Path) -> str:
    """The daemon's venv, built under its final name (a venv cannot be moved: its scripts name
    their interpreter by path) and switched in by replacing the `venv` link in one rename. A
    build cut short (power, pip) has no `.complete` and is built again from scratch."""
    wheels, link = opt / "wheels", opt / "venv"
    if (opt / "update.json").exists() and link.is_symlink():
        # A software update has been installed since (cabinet/installer.py): the image's own
        # release must not be switched back to, nor the update's venvs removed.
        return f"venv {Path(os.readlink(link)).name} (software updates manage it now)"
    ours = sorted(wheels.glob("cabinet_controller-*.whl"))
    if not ours:
        raise Retry(f"no cabinet_controller wheel in {wheels}")
    digest = hashlib.sha256(b"".join(p.name.encode() + b"\0" for p in sorted(wheels.iterdir())))
    name = f"{ours[-1].name.split('-')[1]}-{digest.hexdigest()[:12]}"
    target = opt / "venvs" / name
    if (target / ".complete").exists() and link.is_symlink() \
            and link.resolve() == target.resolve():
        return f"venv {name} in place"
    how = "switched in"   # built by a run cut short before the switch
    if not (target / ".complete").exists():
        shutil.rmtree(target, ignore_errors=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        # --system-site-packages: Debian's python3-lgpio, where PyPI has no wheel.
        run([sys.executable, "-m", "venv", "--system-site-packages", str(target)], "python3 -m venv")
        offline = bundle_is_complete(wheels)
        # The daemon by its file (never a `cabinet-controller` from the index: anyone can publish
        # one there), with face checkout (the image is for a 64-bit OS, where dlib-bin has wheels).
        pip = [str(target / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check",
               "--find-links", str(wheels), f"{ours[-1]}[face]"]
        try:
            run(pip + (["--no-index"] if offline else []),
                "pip install " + ("(offline, from the image's wheels)" if offline
                                  else "(the image's wheels, then the index)"))
        except Retry as offline_failure:
            if not offline:
                raise
            try:  # a wheel on the card is damaged: the index may have it
                run(pip + ["--retries", "1"],
                    "pip install (the index, for what the image's wheels lacked)")
                offline = False
            except Retry:
                raise offline_failure from None
        how = "built offline" if offline else "built (with the index)"
        run([str(target / "bin" / "cabinetd"), "--version"], "the new cabinetd")
        os.sync()  # every file pip wrote is on the card before the venv is called complete
        (target / ".complete").write_text(name + "\n")
    if link.exists() and not link.is_symlink():
        shutil.rmtree(link)  # a venv an older first boot left half-built in place
    tmp = opt / "venv.new"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(Path("venvs") / name)
    os.replace(tmp, link)
    os.sync()
    for old in (opt / "venvs").iterdir():  # what a cut-short build or an older image left
        if old.name != name:
            shutil.rmtree(old, ignore_errors=True)
    return f"venv {name} {how}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, default=Path("/"), help="(tests) the system's root")
    p.add_argument("--boot", type=Path, default=None, help="the boot partition's mount point")
    p.add_argument("--skip-install", action="store_true", help="(tests) no venv or packages")
    p.add_argument("--no-restart", action="store_true", help="(tests) leave cabinetd alone")
    p.add_argument("--status", action="store_true", help="print the steps' progress and exit")
    args = p.parse_args(argv)
    root = args.root
    progress_path = root / STATE / "progress.json"   # cabinet/ui/setup_status.py reads it
    if args.status:
        return status(progress_path)
    job = FirstBoot(root, args.boot or root / "boot" / "firmware", install=not args.skip_install,
                    restart=not args.no_restart)
    try:
        return run_steps(job, Progress(progress_path))
    except Exception as exc:  # the progress file or the disk failing: try again later
        print(f"firstboot: {type(exc).__name__}: {exc}; trying again later", file=sys.stderr)
        return EX_RETRY


def run_steps(job: FirstBoot, progress: Progress) -> int:
    """Every step in order; a failed one does not stop the others that can still run (enrolment
    does not wait for the package mirror, the screen does not wait for a refused token)."""
    failed, wrong = [], []
    for name in STEPS:
        progress.mark(name, "running")
        try:
            if name in ("config", "enrol") and not job.data:
                raise Retry("waiting for a readable provisioning file")
            detail = getattr(job, name)()
        except ProvisionError as exc:
            progress.mark(name, "failed", str(exc))
            print(f"firstboot: {exc}", file=sys.stderr)
            wrong.append(name)
            continue
        except Exception as exc:  # a Retry, or anything unforeseen: never "give up for good"
            progress.mark(name, "retry", str(exc) if isinstance(exc, Retry)
                          else f"{type(exc).__name__}: {exc}")
            failed.append(name)
            continue
        progress.mark(name, "skipped" if detail.startswith("skipped") else "done", detail)
    if wrong:
        print("firstboot: fix the provisioning file (or get a new enrolment token), then reboot",
              file=sys.stderr)
        return EX_CONFIG
    if failed:
        print(f"firstboot: to try again: {', '.join(failed)}", file=sys.stderr)
        return EX_RETRY
    write_private(job.etc / ".provisioned", job.data["cabinet_id"] + "\n", mode=0o644)
    print("firstboot: complete")
    return 0


if __name__ == "__main__":
    sys.exit(main())
