"""Boot a cabinet's SD image under systemd and check that it becomes a selling cabinet.

A small Debian root file system (debootstrap, the machine's own architecture: native and fast)
stands in for Raspberry Pi OS Lite. It is made into a two-partition image, the image builder
(tools/image/build.py) turns that into a cabinet's image with a provisioning file pointing at the
reference backend on loopback, and the root partition is booted with `systemd-nspawn -b`: the real
units, the real first boot, cabinetd under its real sandboxing, no GPIO chip. From outside, the
test makes first boot's life hard and checks that it recovers by itself:

  boot 1  a venv left half-built by an older first boot; one wheel broken (pip fails once, then
          the wheel is mended); the backend down at first (started once enrolment has failed);
          the package mirror unreachable and PyPI unreachable (the venv must be built offline);
          a console, so the optional screen packages are tried (and fail) after enrolment.
          Expected: cabinetd READY under its unit with the gpio fault, locked; enrolled; the
          screen step still retrying; cabinetd never failed and never hit its start limit.
  boot 2  no console: first boot finishes (no screen to drive) and changes nothing else.
  boot 3  nothing left to do: first boot skipped, nothing changed, cabinetd READY again.
  boot 4  software updates under systemd: the backend's update_software with a release of this
          checkout (9.0.1) ends healthy; one that crashes at start (9.0.2) is rolled back by
          cabinetd's own hooks after three failed starts, and 9.0.1 sells again.

Needs root, debootstrap, systemd-nspawn (systemd-container), a loop device, mtools and e2fsprogs.
In CI it runs for amd64 (tests/test_image_boot.py). On arm64 under qemu-user, by hand (slow, and
trixie's systemd does not run under qemu-user here: use bookworm):

    sudo apt install debootstrap systemd-container qemu-user-static binfmt-support
    sudo .venv/bin/python -m tools.image.boot_test --arch arm64 --work /var/tmp/boot-arm64
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
from tools.image.build import build  # noqa: E402
from tools.image.synthetic import make  # noqa: E402

MIRROR = os.environ.get("DEBIAN_MIRROR", "http://deb.debian.org/debian")
PACKAGES = "systemd,systemd-sysv,python3,python3-venv,dbus,ca-certificates"
DAEMON = "http://127.0.0.1:8080"


class BootFailure(AssertionError):
    pass


def log(message: str) -> None:
    print(f"[boot-test {time.strftime('%H:%M:%S')}] {message}", flush=True)


def host_arch() -> str:
    return subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                          check=True).stdout.strip()


def rootfs(cache: Path, arch: str, suite: str = "bookworm") -> Path:
    """A minimal Debian with systemd and python3, made once per cache folder."""
    dest = cache / f"rootfs-{suite}-{arch}"
    if (dest / ".complete").exists():
        return dest
    shutil.rmtree(dest, ignore_errors=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    args = ["debootstrap", "--variant=minbase", f"--include={PACKAGES}", f"--arch={arch}"]
    if arch == host_arch():
        subprocess.run([*args, suite, str(dest), MIRROR], check=True, capture_output=True)
    else:  # the second stage runs the target's binaries under qemu-user (binfmt_misc)
        subprocess.run([*args, "--foreign", suite, str(dest), MIRROR], check=True,
                       capture_output=True)
        subprocess.run(["chroot", str(dest), "/debootstrap/debootstrap", "--second-stage"],
                       check=True, capture_output=True)
    (dest / "var" / "log" / "journal").mkdir(parents=True, exist_ok=True)  # keep the journal
    for deb in (dest / "var" / "cache" / "apt" / "archives").glob("*.deb"):
        deb.unlink()
    (dest / ".complete").touch()
    return dest


def python_target(root: Path) -> str:
    """The bundle target (e.g. cp311-x86_64) of the root file system's python3."""
    version = sorted(p.name for p in (root / "usr" / "bin").glob("python3.[0-9]*")
                     if p.name.replace("python3.", "").isdigit())[-1].replace("python", "")
    machine = {"amd64": "x86_64", "arm64": "aarch64"}[root.name.rsplit("-", 1)[1]]
    return f"cp{version.replace('.', '')}-{machine}"


def root_partition(image: Path) -> tuple[int, int]:
    table = json.loads(subprocess.run(["sfdisk", "--json", str(image)], capture_output=True,
                                      text=True, check=True).stdout)["partitiontable"]
    part = table["partitions"][1]
    return part["start"] * 512, part["size"] * 512


class Machine:
    """The image's root partition mounted on the host (so the test sees its files as the
    container changes them), booted with systemd-nspawn; the FAT partition, which this kernel
    cannot mount, is copied out and bound at /boot/firmware."""

    def __init__(self, image: Path, work: Path, boot_offset: int):
        self.image, self.work = image, work
        self.root, self.boot = work / "mnt", work / "boot-partition"
        offset, size = root_partition(image)
        self.loop = subprocess.run(["losetup", "--find", "--show", "--offset", str(offset),
                                    "--sizelimit", str(size), str(image)], capture_output=True,
                                   text=True, check=True).stdout.strip()
        self.root.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", self.loop, str(self.root)], check=True)
        if not self.boot.exists():
            self.boot.mkdir()
            subprocess.run(["mcopy", "-s", "-i", f"{image}@@{boot_offset}", "::/*",
                            str(self.boot)], check=True, capture_output=True)
        self.proc: subprocess.Popen | None = None
        self.boots = 0

    def path(self, inside: str) -> Path:
        return self.root / inside.lstrip("/")

    @contextmanager
    def booted(self, *, console: bool) -> Iterator["Machine"]:
        self.boots += 1
        binds = [f"--bind={self.boot}:/boot/firmware"]
        if console:  # a console for first boot's screen step (a Pi always has one)
            binds.append("--bind=/dev/null:/dev/tty1")
        out = open(self.work / f"console-{self.boots}.log", "w")
        self.proc = subprocess.Popen(
            ["systemd-nspawn", "--register=no", "--keep-unit", "--console=pipe", "-q",
             f"--machine=cabinet-boot-{os.getpid()}", "-D", str(self.root), *binds, "-b"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            yield self
        finally:
            self.proc.send_signal(signal.SIGTERM)  # nspawn asks the container's systemd to halt
            try:
                self.proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            out.close()

    def journal(self, unit: str | None = None, *, boot: int | None = None) -> str:
        args = ["journalctl", "-D", str(self.path("/var/log/journal")), "--no-pager", "-o",
                "short-monotonic"]
        if boot is not None:
            args += ["-b", str(boot - self.boots) if boot != self.boots else "0"]
        if unit:
            args += ["-u", unit]
        return subprocess.run(args, capture_output=True, text=True).stdout

    def close(self) -> None:
        subprocess.run(["umount", str(self.root)], check=False)
        subprocess.run(["losetup", "-d", self.loop], check=False)


def wait(what: str, predicate: Callable[[], object], timeout: float, machine: Machine) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if machine.proc is not None and machine.proc.poll() is not None:
            raise BootFailure(f"the container stopped while waiting for {what}")
        if time.monotonic() > deadline:
            raise BootFailure(f"timed out after {timeout:.0f} s waiting for {what}\n"
                              + machine.journal()[-6000:])
        time.sleep(0.5)


def progress(machine: Machine) -> dict:
    try:
        return json.loads(machine.path("/var/lib/cabinet-firstboot/progress.json")
                          .read_text())["steps"]
    except (OSError, ValueError, KeyError):
        return {}


def step_is(machine: Machine, name: str, *states: str) -> bool:
    return progress(machine).get(name, {}).get("state") in states


def daemon_state() -> dict | None:
    try:
        with urllib.request.urlopen(DAEMON + "/api/state", timeout=2) as reply:
            return json.load(reply)
    except (OSError, ValueError):
        return None


def fingerprint(machine: Machine) -> dict:
    """What a boot must not change once provisioned: config, secrets, the venv in place."""
    out = {}
    for inside in ("/etc/cabinet/cabinet.toml", "/etc/cabinet/device-token",
                   "/etc/cabinet/provision.toml", "/etc/passwd", "/etc/group"):
        out[inside] = hashlib.sha256(machine.path(inside).read_bytes()).hexdigest()
    out["venv"] = os.readlink(machine.path("/opt/cabinet/venv"))
    out["venvs"] = sorted(p.name for p in machine.path("/opt/cabinet/venvs").iterdir())
    return out


def sabotage(machine: Machine, work: Path) -> Path:
    """What a real first boot meets, set up before boot 1. Returns the broken wheel's path."""
    legacy = machine.path("/opt/cabinet/venv")  # an older first boot's venv, cut short
    (legacy / "bin").mkdir(parents=True)
    (legacy / "pyvenv.cfg").write_text("home = /usr/bin\ninclude-system-site-packages = true\n")
    wheel = sorted(machine.path("/opt/cabinet/wheels").glob("qrcode-*.whl"))[0]
    shutil.copy2(wheel, work / "mended.whl")
    wheel.write_bytes(b"not a zip file: a card written badly")
    # No package mirror and no PyPI: the optional packages fail, and the venv must not need PyPI.
    machine.path("/etc/apt/sources.list").write_text(
        "deb http://127.0.0.1:9/debian bookworm main\n")
    for extra in machine.path("/etc/apt/sources.list.d").glob("*"):
        extra.unlink()
    machine.path("/etc/pip.conf").write_text("[global]\nindex-url = http://127.0.0.1:9/simple\n"
                                             "timeout = 2\n")
    return wheel


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(work: Path, arch: str | None = None) -> dict[str, float]:
    """The whole test; raises BootFailure with the journal when a check fails. Returns how long
    each part took, in seconds."""
    from backend.app import create_app
    from backend.server import ThreadedServer
    from backend.storage import Storage
    from backend.storage.engine import migrate

    arch = arch or host_arch()
    work.mkdir(parents=True, exist_ok=True)
    for leftover in ("boot-partition", "os"):
        shutil.rmtree(work / leftover, ignore_errors=True)
    if daemon_state() is not None:
        raise BootFailure(f"something already answers on {DAEMON}: stop it first")
    took, started = {}, time.monotonic()

    def lap(name: str) -> None:
        nonlocal started
        took[name] = round(time.monotonic() - started, 1)
        log(f"{name}: {took[name]} s")
        started = time.monotonic()

    root = rootfs(work / "cache", arch)
    lap("root file system (debootstrap)")
    (work / "backend.db").unlink(missing_ok=True)
    migrate(f"sqlite://{work}/backend.db")
    storage = Storage(f"sqlite://{work}/backend.db")
    enrolment = storage.fleet.new_enrolment("cabinet-boot", "boot test")
    port = free_port()
    provision = work / "cabinet-provision.toml"
    provision.write_text(f'cabinet_id = "cabinet-boot"\nbackend_url = "http://127.0.0.1:{port}"\n'
                         f'enrolment_token = "{enrolment["enrolment_token"]}"\n')
    used_mb = int(subprocess.run(["du", "-sm", str(root)], capture_output=True, text=True,
                                 check=True).stdout.split()[0])
    source = make(work / "os.img", work / "os", root=root, root_mb=used_mb + 2000)
    image = work / "cabinet.img"
    parts = build(source, image, provision=provision, bundle=(python_target(root),))
    for leftover in (source, work / "os" / "root.ext4", work / "os" / "boot.vfat"):
        leftover.unlink(missing_ok=True)
    lap("image (builder, with the wheels bundle)")
    machine = Machine(image, work, parts.boot_offset)
    server = None
    try:
        broken = sabotage(machine, work)
        with machine.booted(console=True):
            wait("the software step to fail on the broken wheel",
                 lambda: step_is(machine, "software", "retry"), 300, machine)
            shutil.copy2(work / "mended.whl", broken)
            log("pip failed once, as planned; wheel mended")
            wait("enrolment to fail: the backend is down",
                 lambda: step_is(machine, "enrol", "retry"), 300, machine)
            server = ThreadedServer(create_app(storage), port=port).start()
            log("enrolment failed while the backend was down; backend started")
            wait("the venv built and switched in", lambda: step_is(machine, "software", "done"),
                 600, machine)
            wait("enrolment", lambda: step_is(machine, "enrol", "done"), 120, machine)
            wait("the screen packages to be tried after enrolment (and fail: no mirror)",
                 lambda: step_is(machine, "screen", "retry"), 120, machine)
            state = wait("cabinetd READY, enrolled and syncing", lambda: (
                (s := daemon_state()) and s["sync"]["configured"] and "gpio" in s["faults"]
                and s["sync"]["last_success_at"] and s), 180, machine)
            wait("the gpio alarm at the backend", lambda: any(
                a["body"].get("kind") == "device_fault:gpio"
                for a in storage.fleet.records("alarm", "cabinet-boot", 0, 1000)), 60, machine)
        lap("boot 1 (first boot with its faults, to READY and enrolled)")
        check(state["lock"] == "locked" and state["door"] == "unknown",
              f"locked, door unknown without GPIO: {state['lock']}, {state['door']}")
        check(state["screen"]["name"] == "out_of_service", f"screen {state['screen']}")
        check(state["setup"] and not state["setup"]["complete"]
              and [w["step"] for w in state["setup"]["waiting"]] == ["screen"],
              f"the daemon does not show what first boot still waits for: {state['setup']}")
        check_boot_one(machine)
        first = fingerprint(machine)

        with machine.booted(console=False):
            wait("first boot to finish (no console: no screen packages)",
                 lambda: machine.path("/etc/cabinet/.provisioned").exists(), 180, machine)
            wait("cabinetd READY", lambda: (s := daemon_state()) and s["sync"]["configured"],
                 120, machine)
        lap("boot 2 (first boot finishes)")
        check(fingerprint(machine) == first, "boot 2 changed what was provisioned")
        check("software: done (venv" in machine.journal("cabinet-firstboot", boot=2)
              and "in place" in progress(machine)["software"]["detail"],
              "boot 2 rebuilt the venv")

        with machine.booted(console=False):
            wait("cabinetd READY", lambda: (s := daemon_state()) and s["sync"]["configured"],
                 120, machine)
        lap("boot 3 (nothing to do)")
        check(fingerprint(machine) == first, "boot 3 changed what was provisioned")
        third = machine.journal(boot=3)
        check("ConditionPathExists=!/etc/cabinet/.provisioned" in third,
              "boot 3: first boot was not skipped")
        check(not machine.path("/boot/firmware/cabinet-provision.toml").exists()
              and not (machine.boot / "cabinet-provision.toml").exists(),
              "the provisioning file (a secret) is still on the boot partition")

        updates(machine, storage, work)
        lap("boot 4 (an update, and a broken one rolled back, under systemd)")
    finally:
        machine.close()
        if server is not None:
            server.close()
        storage.close()
    return took


def host_address() -> str:
    """An address of this machine that is not loopback (the cabinet downloads only from other
    hosts); the container shares the host's network."""
    out = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True,
                         text=True).stdout
    found = [a.split("/")[0] for a in out.split() if a.count(".") == 3 and "/" in a
             and not a.startswith("127.")]
    if not found:
        raise BootFailure("no non-loopback IPv4 address to serve the releases from")
    return found[0]


def updates(machine: Machine, storage, work: Path) -> None:
    """Boot 4: the backend's update_software under the real systemd (the path unit, the root
    installer, cabinetd's ExecStartPre/ExecStopPost hooks with systemd's own SERVICE_RESULT,
    EXIT_CODE and EXIT_STATUS): a good release becomes healthy, then one that crashes at start
    is rolled back by itself."""
    import functools
    import http.server
    import threading

    from tools import release

    www = work / "releases"
    shutil.rmtree(www, ignore_errors=True)
    www.mkdir()
    keys = work / f"release-key-{os.getpid()}"
    public = release.keygen(keys)
    key = keys / "release-signing-key"
    crash = work / "crash-tree"
    shutil.rmtree(crash, ignore_errors=True)
    shutil.copytree(REPO, crash, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "__pycache__", "var", ".pytest_cache"))
    app = crash / "cabinet" / "app.py"
    app.write_text(app.read_text().replace(
        "    notifier = Notifier()\n",
        "    notifier = Notifier()\n    raise RuntimeError('a broken release')\n", 1))
    good, bad = www / "cabinet-9.0.1.release", www / "cabinet-9.0.2.release"
    older_unit = www / "cabinet-9.0.3.release"
    release.build(key, good, [], "9.0.1")
    release.build(key, bad, [], "9.0.2", crash)
    release.build(key, older_unit, [], "9.0.3", crash)
    shutil.rmtree(crash)
    config = machine.path("/etc/cabinet/cabinet.toml")
    config.write_text(config.read_text().replace('public_key = ""', f'public_key = "{public}"'))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer((host_address(), 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://{server.server_address[0]}:{server.server_address[1]}"

    def send(bundle: Path) -> None:
        storage.commands.issue("cabinet-boot", "update_software", {
            "url": f"{url}/{bundle.name}",
            "sha256": hashlib.sha256(bundle.read_bytes()).hexdigest()}, 3600, "boot test")

    def update_state() -> dict:
        try:
            return json.loads(machine.path("/opt/cabinet/update.json").read_text())
        except (OSError, ValueError):
            return {}
    try:
        with machine.booted(console=False):
            before = wait("cabinetd READY", lambda: (s := daemon_state()) and s["sync"][
                "configured"] and s, 120, machine)["software_version"]
            send(good)
            wait("9.0.1 healthy", lambda: update_state().get("state") == "healthy"
                 and (s := daemon_state()) and s["software_version"] == "9.0.1", 400, machine)
            log(f"updated from {before} to 9.0.1, healthy")
            send(bad)
            wait("9.0.2 rolled back", lambda: update_state().get("state") == "rolled_back",
                 400, machine)
            state = wait("9.0.1 READY again, with the update_failed alarm", lambda: (
                s := daemon_state()) and s["software_version"] == "9.0.1" and any(
                a["kind"] == "update_failed" for a in s["alarms"]) and s, 120, machine)
            wait("rolled_back at the backend", lambda: any(
                r["body"].get("state") == "rolled_back"
                for r in storage.fleet.records("update", "cabinet-boot", 0, 1000)), 120, machine)
    finally:
        server.shutdown()
    reason = update_state()["reason"]
    check("failed 3 starts" in reason and "exit status 1" in reason,
          f"not rolled back for its failed starts: {reason}")
    check(os.readlink(machine.path("/opt/cabinet/venv")).startswith("venvs/9.0.1-"),
          "the link does not name 9.0.1")
    journal = machine.journal("cabinetd", boot=4)
    check("Start request repeated too quickly" not in journal,
          f"cabinetd hit its start limit:\n{journal[-3000:]}")
    check("cabinet supervisor: stopped: rolled back" in journal,
          f"the rollback is not in cabinetd's journal:\n{journal[-3000:]}")
    states = [r["body"]["state"] for r in storage.fleet.records("update", "cabinet-boot", 0, 1000)]
    check(states.count("healthy") == 1 and states.count("rolled_back") == 1,
          f"the steps reported: {states}")
    log(f"9.0.2 rolled back by itself ({reason}); alarms {[a['kind'] for a in state['alarms']]}")

    # A card flashed before `supervisor.py starting` existed: its unit runs `reconcile` before
    # each start, which must count the starts all the same (told by its cgroup).
    unit = machine.path("/etc/systemd/system/cabinetd.service")
    unit.write_text(unit.read_text().replace("supervisor.py starting", "supervisor.py reconcile"))
    server = http.server.ThreadingHTTPServer((host_address(), 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://{server.server_address[0]}:{server.server_address[1]}"
    try:
        with machine.booted(console=False):
            wait("cabinetd READY", lambda: (s := daemon_state()) and s["software_version"]
                 == "9.0.1", 120, machine)
            send(older_unit)
            try:
                wait("9.0.3 rolled back", lambda: update_state().get("state") == "rolled_back"
                     and update_state().get("version") == "9.0.3", 150, machine)
            except BootFailure as exc:
                raise BootFailure(f"{exc}\n--- cabinet-update:\n"
                                  + machine.journal("cabinet-update.path")[-3000:]
                                  + machine.journal("cabinet-update.service")[-3000:]
                                  + f"\n--- update.json: {update_state()}") from None
            wait("9.0.1 READY again", lambda: (s := daemon_state())
                 and s["software_version"] == "9.0.1", 120, machine)
    finally:
        server.shutdown()
    check("failed 3 starts" in update_state()["reason"],
          f"9.0.3 not rolled back for its starts: {update_state()['reason']}")
    log("an older unit (ExecStartPre reconcile): 9.0.3 rolled back by itself too")


def check(ok: bool, message: str) -> None:
    if not ok:
        raise BootFailure(message)


def check_boot_one(machine: Machine) -> None:
    """From the journal and the files, after boot 1."""
    cabinetd = machine.journal("cabinetd", boot=1)
    for bad in ("Start request repeated too quickly", "Failed to locate executable",
                "status=203/EXEC", "Traceback", "Failed with result"):
        check(bad not in cabinetd, f"cabinetd's journal has {bad!r}:\n{cabinetd[-3000:]}")
    check("was skipped because of an unmet condition check (ConditionPathExists=/opt/cabinet/"
          "venv/bin/cabinetd)" in cabinetd, "cabinetd was not held back until its venv existed")
    check("device_fault:gpio" in cabinetd, "no gpio alarm in cabinetd's log")
    # The gpio fault must be the missing chip (or, on amd64, the missing library), never the
    # sandbox: lgpio writes pipes in the working directory, which must be writable.
    check(".lgd-nfy" not in cabinetd, "lgpio could not make its pipes (working directory)")
    kiosk = machine.journal("cabinet-kiosk", boot=1)
    check("skipped because of an unmet condition" in kiosk and "Scheduled restart" not in kiosk,
          f"the kiosk did not wait for its packages:\n{kiosk[-2000:]}")
    firstboot = machine.journal("cabinet-firstboot", boot=1)
    check(firstboot.count("software: retry") >= 1 and "enrol: retry" in firstboot,
          "first boot's retries are not in its journal")
    steps = progress(machine)
    check("offline" in steps["software"]["detail"], f"venv not built offline: {steps['software']}")
    venv = machine.path("/opt/cabinet/venv")
    check(venv.is_symlink() and (venv / ".complete").exists()
          and (venv / "bin" / "cabinetd").exists(), "the venv is not complete and in place")
    token = machine.path("/etc/cabinet/device-token")
    check(token.stat().st_mode & 0o777 == 0o600, "device token not 0600")
    cabinet_uid = next(int(line.split(":")[2]) for line in
                       machine.path("/etc/passwd").read_text().splitlines()
                       if line.startswith("cabinet:"))
    check(token.stat().st_uid == cabinet_uid, "device token not owned by the cabinet user")
    kept = machine.path("/etc/cabinet/provision.toml")
    check(kept.stat().st_mode & 0o777 == 0o600 and "enrolment_token" not in kept.read_text(),
          "the kept provisioning file still holds the enrolment token, or is readable")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default=None, help="debootstrap architecture (default: this machine's)")
    p.add_argument("--work", type=Path, default=Path("/var/tmp/cabinet-boot-test"),
                   help="work folder (the root file system is cached in WORK/cache)")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        print("boot test: needs root (debootstrap, loop mounts, systemd-nspawn)", file=sys.stderr)
        return 2
    # A SIGTERM (CI's timeout, a technician's Ctrl-C) still stops the container and unmounts.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        took = run(args.work, args.arch)
    except BootFailure as exc:
        print(f"boot test FAILED: {exc}", file=sys.stderr)
        return 1
    print("boot test passed: " + ", ".join(f"{k} {v} s" for k, v in took.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
