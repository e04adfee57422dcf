"""The SD-card image builder: an official Raspberry Pi OS Lite image in, a cabinet's image out.

Rootless: no loop devices, no mounts. The partition table is read with `sfdisk --json`; the ext4
root is written with `debugfs -w` at the partition's offset; the FAT boot partition with `mcopy`
at its offset. Into the root go the daemon's wheel and, by default, every dependency's wheel for
Raspberry Pi OS's Pythons (tools/image/bundle.py: /opt/cabinet/wheels with bundle.json; first boot
makes the venv from them offline), Debian packages given with --debs (/opt/cabinet/debs), the
default config, the units (cabinetd, the kiosk, first boot) enabled by their
`*.wants/` links, the first-boot script, and the service users `cabinet` and `cabinet-kiosk` with
their groups, and the screen's Chinese and Tibetan fonts (/usr/local/share/fonts/cabinet). Onto
the boot partition goes `cabinet-provision.toml`, a template to fill in (or the given one).
Chromium, cage and espeak-ng are arm64 Debian packages that need the image's own dpkg to unpack,
so first boot installs them with apt when the network is up.

    python -m tools.image.build raspios-lite.img cabinet.img [--provision FILE]
        [--bundle cp311-aarch64 --bundle cp313-aarch64 | --no-bundle] [--wheels DIR] [--debs DIR]

debugfs exits 0 even when a command fails, and `write` does not overwrite: every command's output
is checked, and files are removed before they are written.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .bundle import DEFAULT_TARGETS

REPO = Path(__file__).resolve().parents[2]
SECTOR = 512
SERVICE_USERS = {  # name: (groups it joins, home)
    "cabinet": (["gpio", "dialout", "video"], "/var/lib/cabinet"),
    "cabinet-kiosk": (["video", "render", "input", "audio"], "/var/lib/cabinet-kiosk"),
}
UNITS = {"cabinetd.service": "multi-user.target", "cabinet-firstboot.service": "multi-user.target",
         # Raspberry Pi OS Lite boots to multi-user.target: cage needs no display manager.
         "cabinet-kiosk.service": "multi-user.target",
         # Software updates: the path unit starts the installer (docs/updates.md).
         "cabinet-update.path": "multi-user.target"}
UNIT_FILES = (*UNITS, "cabinet-update.service")   # installed, started by another unit
# The screen's fonts (Architecture: all, so the build host's own files serve the Pi), put where
# fontconfig looks and dpkg does not: a later `apt install` of the packages cannot conflict.
FONTS = {"fonts-noto-cjk": "NotoSansCJK-Regular.ttc",
         "fonts-noto-core": ("NotoSans-Regular.ttf", "NotoSerifTibetan-Regular.ttf",
                             "NotoSerifTibetan-Bold.ttf"),
         "fonts-tibetan-machine": "TibetanMachineUni.ttf"}
FONT_DIR = "/usr/local/share/fonts/cabinet"
PROVISION_TEMPLATE = """\
# Fill in and keep this file on the boot partition: the cabinet reads it at first boot, moves it
# off this partition (it holds a secret), enrols with the backend and joins the Wi-Fi.
cabinet_id = "cabinet-0001"
backend_url = "https://backend.example.org"
# From the operator: POST /v1/operator/enrolments {"cabinet_id": ...} (single use, 30 days).
enrolment_token = ""

# [wifi]
# ssid = "network name"
# password = "…"
"""


class ImageError(Exception):
    pass


@dataclass(frozen=True)
class Partitions:
    boot_offset: int
    root_offset: int


def run(args: list[str], **kw) -> subprocess.CompletedProcess:
    result = subprocess.run(args, capture_output=True, text=True, **kw)
    if result.returncode != 0:
        raise ImageError(f"{' '.join(args[:3])}…: {result.stderr.strip() or result.stdout.strip()}")
    return result


def partitions(image: Path) -> Partitions:
    table = json.loads(run(["sfdisk", "--json", str(image)]).stdout)["partitiontable"]
    parts = table["partitions"]
    if len(parts) < 2:
        raise ImageError(f"{image}: expected a boot and a root partition, found {len(parts)}")
    size = table.get("sectorsize", SECTOR)
    return Partitions(parts[0]["start"] * size, parts[1]["start"] * size)


class Ext4:
    """The root file system inside the image file, through debugfs."""

    def __init__(self, image: Path, offset: int):
        self.spec = f"{image}?offset={offset}"

    def cat(self, path: str) -> str:
        result = run(["debugfs", "-R", f"cat {path}", self.spec])
        return result.stdout

    def exists(self, path: str) -> bool:
        result = subprocess.run(["debugfs", "-R", f"stat {path}", self.spec], capture_output=True,
                                text=True)
        return "File not found" not in result.stderr and result.returncode == 0 \
            and "Inode:" in result.stdout

    def apply(self, commands: list[str]) -> None:
        with tempfile.NamedTemporaryFile("w", suffix=".debugfs") as script:
            script.write("\n".join(commands) + "\n")
            script.flush()
            result = run(["debugfs", "-w", "-f", script.name, self.spec])
        problems = [line for line in result.stderr.splitlines()
                    if line.strip() and not line.startswith("debugfs ")
                    and "File not found by ext2_lookup" not in line]  # from rm of a new file
        if problems:
            raise ImageError("debugfs: " + "; ".join(problems[:5]))


def _mkdirs(fs: Ext4, paths: list[str]) -> list[str]:
    out, seen = [], set()
    for path in paths:
        parts = Path(path).parts[1:]
        for i in range(1, len(parts) + 1):
            d = "/" + "/".join(parts[:i])
            if d not in seen and not fs.exists(d):
                out += [f"mkdir {d}", f"sif {d} mode 040755", f"sif {d} uid 0", f"sif {d} gid 0"]
            seen.add(d)
    return out


def _put(path: str, source: Path, mode: int) -> list[str]:
    return [f"rm {path}", f"write {source} {path}", f"sif {path} mode 0{0o100000 | mode:o}",
            f"sif {path} uid 0", f"sif {path} gid 0"]


def add_users(passwd: str, group: str, shadow: str) -> tuple[str, str, str, dict[str, int]]:
    """The service users and their groups added to the image's account files (idempotent)."""
    users = {line.split(":")[0]: line for line in passwd.splitlines() if line}
    groups = {line.split(":")[0]: line.split(":") for line in group.splitlines() if line}
    used = {int(line.split(":")[2]) for line in passwd.splitlines() if line} | \
        {int(g[2]) for g in groups.values()}
    ids: dict[str, int] = {}

    def free_id() -> int:
        candidate = 999
        while candidate in used:
            candidate -= 1
        used.add(candidate)
        return candidate
    for name, (member_of, home) in SERVICE_USERS.items():
        if name in users:
            ids[name] = int(users[name].split(":")[2])
        else:
            uid = free_id()
            ids[name] = uid
            users[name] = f"{name}:x:{uid}:{uid}::{home}:/usr/sbin/nologin"
            groups.setdefault(name, [name, "x", str(uid), ""])
            shadow += ("" if shadow.endswith("\n") or not shadow else "\n") + f"{name}:!:19000::::::\n"
        for g in member_of:
            if g not in groups:
                groups[g] = [g, "x", str(free_id()), ""]
            members = [m for m in groups[g][3].split(",") if m]
            if name not in members:
                groups[g][3] = ",".join(members + [name])
    return ("\n".join(users.values()) + "\n", "\n".join(":".join(g) for g in groups.values()) + "\n",
            shadow, ids)


def font_files() -> list[Path]:
    """The font files, from the build host's Debian packages."""
    out = []
    for package, names in FONTS.items():
        names = (names,) if isinstance(names, str) else names
        listed = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True).stdout
        for name in names:
            found = [Path(line) for line in listed.splitlines() if line.endswith("/" + name)]
            if not found:
                raise ImageError(f"font {name} not found: install Debian's {package} on the "
                                 f"build machine (tools/setup.sh test does)")
            out.append(found[0])
    return out


def build(source: Path, output: Path, *, provision: Path | None = None,
          wheels: Path | None = None, bundle: tuple[str, ...] = (),
          debs: Path | None = None) -> Partitions:
    if output.exists():
        output.unlink()
    # Sparse: an image is mostly empty space (a copy of a 2 GB image costs only what it holds).
    run(["cp", "--sparse=always", str(source), str(output)])
    parts = partitions(output)
    fs = Ext4(output, parts.root_offset)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        wheel_dir = tmp / "wheels"
        # Built from a clean copy: an in-tree build would leave build/ in the checkout, and files
        # deleted from the source but still in build/lib would ship in the wheel.
        clean = tmp / "source"
        shutil.copytree(REPO, clean, ignore=shutil.ignore_patterns(
            ".git", ".venv", "build", "*.egg-info", "__pycache__", "var", ".hypothesis",
            ".pytest_cache"))
        run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(wheel_dir),
             str(clean)], timeout=600)
        if wheels is not None:
            for w in wheels.glob("*.whl"):
                shutil.copy(w, wheel_dir)
        if bundle:
            from .bundle import BundleError, download, write_manifest
            try:
                manifest = download(next(wheel_dir.glob("cabinet_controller-*.whl")), wheel_dir,
                                    list(bundle))
            except BundleError as exc:
                raise ImageError(str(exc)) from None
            write_manifest(wheel_dir, manifest)
        passwd, group, shadow, _ = add_users(fs.cat("/etc/passwd"), fs.cat("/etc/group"),
                                               fs.cat("/etc/shadow"))
        for name, text in (("passwd", passwd), ("group", group), ("shadow", shadow)):
            (tmp / name).write_text(text)
        files = [("/etc/passwd", tmp / "passwd", 0o644), ("/etc/group", tmp / "group", 0o644),
                 ("/etc/shadow", tmp / "shadow", 0o640),
                 ("/etc/cabinet/cabinet.toml", REPO / "config" / "cabinet.toml", 0o644),
                 ("/etc/cabinet/planogram.toml", REPO / "config" / "planogram.toml", 0o644),
                 ("/usr/local/lib/cabinet/firstboot.py", REPO / "tools" / "image" / "firstboot.py",
                  0o755),
                 ("/usr/local/lib/cabinet/setup.sh", REPO / "tools" / "setup.sh", 0o755),
                 # cabinetd's update hooks run this copy, outside every venv (it is stdlib only).
                 ("/usr/local/lib/cabinet/supervisor.py", REPO / "cabinet" / "supervisor.py",
                  0o755)]
        files += [(f"/etc/systemd/system/{unit}", _unit_file(unit), 0o644) for unit in UNIT_FILES]
        files += [(f"/opt/cabinet/wheels/{w.name}", w, 0o644) for w in sorted(wheel_dir.iterdir())]
        if debs is not None:
            files += [(f"/opt/cabinet/debs/{d.name}", d, 0o644) for d in sorted(debs.glob("*.deb"))]
        files += [(f"{FONT_DIR}/{f.name}", f, 0o644) for f in font_files()]
        commands = _mkdirs(fs, sorted({str(Path(p).parent) for p, _, _ in files}
                                      | {f"/etc/systemd/system/{t}.wants" for t in UNITS.values()}
                                      | {"/usr/local/bin"}))
        for path, src, mode in files:
            commands += _put(path, src, mode)
        shadow_gid = next((line.split(":")[2] for line in group.splitlines()
                           if line.startswith("shadow:")), "0")
        commands.append(f"sif /etc/shadow gid {shadow_gid}")
        for unit, target in UNITS.items():
            link = f"/etc/systemd/system/{target}.wants/{unit}"
            commands += [f"rm {link}", f"symlink {link} /etc/systemd/system/{unit}"]
        # `cabinet-firstboot --status` for a technician at the console, before the venv exists.
        commands += ["rm /usr/local/bin/cabinet-firstboot",
                     "symlink /usr/local/bin/cabinet-firstboot /usr/local/lib/cabinet/firstboot.py"]
        fs.apply(commands)
        template = provision
        if template is None:
            template = tmp / "cabinet-provision.toml"
            template.write_text(PROVISION_TEMPLATE)
        run(["mcopy", "-o", "-i", f"{output}@@{parts.boot_offset}", str(template),
             "::/cabinet-provision.toml"])
    return parts


def _unit_file(unit: str) -> Path:
    return REPO / "systemd" / unit


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("source", type=Path, help="Raspberry Pi OS Lite image (.img, uncompressed)")
    p.add_argument("output", type=Path)
    p.add_argument("--provision", type=Path, help="a filled-in cabinet-provision.toml")
    p.add_argument("--bundle", action="append", metavar="TARGET",
                   help="Python and machine to carry every wheel for (repeat; default "
                        "cp311-aarch64 and cp313-aarch64: Raspberry Pi OS bookworm and trixie)")
    p.add_argument("--no-bundle", action="store_true",
                   help="only the daemon's wheel: first boot fetches the rest from the index")
    p.add_argument("--wheels", type=Path, help="more wheels to carry (a folder)")
    p.add_argument("--debs", type=Path, help="Debian packages first boot installs offline "
                   "(e.g. python3-lgpio and liblgpio1 from Raspberry Pi OS's archive)")
    args = p.parse_args(argv)
    bundle = () if args.no_bundle else tuple(args.bundle or DEFAULT_TARGETS)
    try:
        build(args.source, args.output, provision=args.provision, wheels=args.wheels,
              bundle=bundle, debs=args.debs)
    except (ImageError, OSError) as exc:
        print(f"build: {exc}", file=sys.stderr)
        return 1
    print(f"{args.output}: cabinet image written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
