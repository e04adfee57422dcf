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

apt_packages=(python3 python3-venv curl)
venv_flags=()
if [ "$(uname -m)" = aarch64 ]; then
    # The Pi's GPIO library: Debian's package covers every Python version of the OS; the venv sees it.
    apt_packages+=(python3-lgpio)
    venv_flags+=(--system-site-packages)
fi
# The kiosk screen: Debian's Chromium, the fonts that draw Chinese and Tibetan (without them
# Tibetan is boxes), espeak-ng for elderly mode's spoken prompts, aplay (alsa-utils) for the
# voice pack's recorded ones.
screen_packages=(chromium fonts-noto-core fonts-noto-cjk fonts-tibetan-machine espeak-ng alsa-utils)
if [ "$want" = test ]; then
    # systemd-analyze verifies the unit files; the reference backend is tested on PostgreSQL too
    # (the tests start a private server from Debian's binaries); the kiosk is tested in Chromium.
    # libzbar0: the zbar peer in the QR benchmark. The image builder's tools: sfdisk (fdisk),
    # debugfs and mkfs.ext4 (e2fsprogs), mtools, mkfs.vfat (dosfstools).
    # The boot test: debootstrap a Debian, boot the image with systemd-nspawn (systemd-container).
    # sox makes the voice-pack tests' clips and checks what the speaker played. iproute2 (`ip`)
    # finds this machine's non-loopback address, from which the update tests serve releases.
    apt_packages+=(systemd postgresql libzbar0 fdisk e2fsprogs mtools dosfstools
                   debootstrap systemd-container sox iproute2 "${screen_packages[@]}")
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
# Face checkout is optional for the code, not for a cabinet: installed unless FACE=0 (or on a
# 32-bit OS, where dlib has no wheel: the cabinet then runs with QR codes only).
extra="[face]"
if [ "${FACE:-1}" = 0 ] || ! [[ "$(uname -m)" =~ ^(x86_64|aarch64)$ ]]; then
    extra=""
fi
[ "$want" = test ] && extra="[test,face]"
[ "$want" = kiosk ] && want=run
hash=$(cat pyproject.toml tools/setup.sh | sha256sum | cut -c1-16)
stamp=".venv/.installed-$want$extra-$hash"
# The test install holds everything the cabinet needs: running the simulation after the tests
# installs nothing more.
if [ ! -f "$stamp" ] && [ "$want" = run ] && [ -f ".venv/.installed-test[test,face]-$hash" ]; then
    stamp=".venv/.installed-test[test,face]-$hash"
fi
if [ ! -f "$stamp" ] && [ -n "${SETUP_NO_INSTALL:-}" ]; then
    # tests/test_readme.py runs the README in a copy that shares the checkout's venv.
    echo "setup: .venv is not installed for this checkout (run tools/setup.sh $want first)" >&2
    exit 1
fi
if [ ! -f "$stamp" ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e ".$extra"
    if [ "$want" = test ]; then
        # The peer in tools/bench/face.py: face_recognition declares `dlib` (a source build);
        # dlib-bin provides the same module, so install it without its declared dependencies.
        .venv/bin/python -m pip install -q --no-deps "face_recognition>=1.3.0"
    fi
    touch "$stamp"
fi
