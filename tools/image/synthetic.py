"""A synthetic stand-in for a Raspberry Pi OS Lite image, for the image builder's tests: a DOS
partition table with a FAT boot partition (config.txt, cmdline.txt) and an ext4 root holding the
files the builder edits (/etc/passwd, group, shadow with Raspberry Pi OS's groups, the systemd
folders), or a real root file system given as a folder (the boot test's debootstrapped Debian).
Made without root: mkfs.vfat -C, mkfs.ext4 -d, sfdisk and dd into one file."""

from __future__ import annotations

import subprocess
from pathlib import Path

BOOT_MB, ROOT_MB = 32, 160
START = 8192  # sectors, as Raspberry Pi OS aligns its first partition

PASSWD = "root:x:0:0:root:/root:/bin/bash\npi:x:1000:1000:,,,:/home/pi:/bin/bash\n"
GROUP = ("root:x:0:\nshadow:x:42:\ndialout:x:20:pi\naudio:x:29:pi\nvideo:x:44:pi\n"
         "input:x:105:pi\nrender:x:106:pi\ngpio:x:997:pi\npi:x:1000:\n")
SHADOW = "root:*:19000:0:99999:7:::\npi:!:19000:0:99999:7:::\n"


def make(path: Path, work: Path, *, root: Path | None = None, root_mb: int = ROOT_MB) -> Path:
    work.mkdir(parents=True, exist_ok=True)
    if root is None:
        root = work / "rootfs"
        for d in ("etc/systemd/system/multi-user.target.wants", "usr/local/lib", "opt",
                  "boot/firmware", "var/lib", "usr/bin"):
            (root / d).mkdir(parents=True, exist_ok=True)
        (root / "etc" / "passwd").write_text(PASSWD)
        (root / "etc" / "group").write_text(GROUP)
        (root / "etc" / "shadow").write_text(SHADOW)
        (root / "etc" / "shadow").chmod(0o640)
        (root / "etc" / "os-release").write_text('PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\n')
    root_img, boot_img = work / "root.ext4", work / "boot.vfat"
    for f in (root_img, boot_img):
        f.unlink(missing_ok=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-E", "root_owner=0:0", "-d", str(root),
                    str(root_img), f"{root_mb}M"], check=True, capture_output=True)
    subprocess.run(["mkfs.vfat", "-C", "-n", "bootfs", str(boot_img), str(BOOT_MB * 1024)],
                   check=True, capture_output=True)
    for name, text in (("config.txt", "[all]\nenable_uart=1\n"),
                       ("cmdline.txt", "console=serial0,115200 root=PARTUUID=x rootwait\n")):
        (work / name).write_text(text)
        subprocess.run(["mcopy", "-i", str(boot_img), str(work / name), f"::/{name}"],
                       check=True, capture_output=True)
    boot_sectors, root_sectors = BOOT_MB * 2048, root_mb * 2048
    total = START + boot_sectors + root_sectors + 2048
    with open(path, "wb") as f:
        f.truncate(total * 512)
    table = (f"label: dos\n{START},{boot_sectors},c\n"
             f"{START + boot_sectors},{root_sectors},83\n")
    subprocess.run(["sfdisk", "--quiet", str(path)], input=table, text=True, check=True,
                   capture_output=True)
    for img, seek in ((boot_img, START), (root_img, START + boot_sectors)):
        subprocess.run(["dd", f"if={img}", f"of={path}", "bs=512", f"seek={seek}",
                        "conv=notrunc,sparse", "status=none"], check=True)
    return path
