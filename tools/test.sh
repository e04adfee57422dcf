#!/usr/bin/env bash
# Set up (first run only) and run the whole test suite on two workers a core (pytest-xdist: most
# tests wait on a daemon, a browser or a server rather than compute). Extra
# arguments go to pytest: `tools/test.sh -k shelves`, `tools/test.sh -n 0` (one process),
# `tools/test.sh -m boot` (the SD image's boot test: root, minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh test
exec .venv/bin/python -m pytest -n "$(( $(nproc) * 2 ))" --maxschedchunk 1 "$@"
