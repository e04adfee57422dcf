#!/usr/bin/env bash
# Set up everything the cabinet needs on a fresh Debian / Raspberry Pi OS machine:
# system packages (when run as root or with sudo), then a virtual environment in .venv with the
# project installed. Safe to run again; it only installs what is missing.
#   tools/setup.sh          the daemon
#   tools/setup.sh test     the daemon and what the tests need
#   tools/setup.sh kiosk    the daemon and the screen (Chromium under cage, fonts, speech)
set -euo pipefail
cd "$(dirname "$0")/.."
want=${1:-run}

apt_packages=(python3 python3-venv)
venv_flags=()
if [ "$(uname -m)" = aarch64 ]; then
    # The Pi's GPIO library: Debian's package covers every Python version of the OS; the venv sees it.
    apt_packages+=(python3-lgpio)
    venv_flags+=(--system-site-packages)
fi
# The kiosk screen: Debian's Chromium, the fonts that draw Chinese and Tibetan (without them
# Tibetan is boxes), espeak-ng for elderly mode's spoken prompts.
screen_packages=(chromium fonts-noto-core fonts-noto-cjk fonts-tibetan-machine espeak-ng)
if [ "$want" = test ]; then
    # systemd-analyze verifies the unit files; the reference backend is tested on PostgreSQL too
    # (the tests start a private server from Debian's binaries); the kiosk is tested in Chromium.
    # libzbar0: the zbar peer in the QR benchmark. The image builder's tools: sfdisk (fdisk),
    # debugfs and mkfs.ext4 (e2fsprogs), mtools, mkfs.vfat (dosfstools).
    apt_packages+=(systemd postgresql libzbar0 fdisk e2fsprogs mtools dosfstools
                   "${screen_packages[@]}")
elif [ "$want" = kiosk ]; then
    # On the cabinet: cage is the Wayland kiosk compositor systemd/cabinet-kiosk.service runs.
    apt_packages+=(cage "${screen_packages[@]}")
fi
missing=()
for pkg in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ] && command -v apt-get >/dev/null; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "setup: installing Debian packages: ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv "${venv_flags[@]}" .venv
fi
extra=""
[ "$want" = test ] && extra="[test]"
[ "$want" = kiosk ] && want=run
stamp=".venv/.installed-$want-$(cat pyproject.toml | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e ".$extra"
    touch "$stamp"
fi
