#!/usr/bin/env bash
# Set up (first run only) and start the cabinet on simulated devices. Extra arguments go to cabinetd,
# e.g. tools/run-simulation.sh --http-port 0 --config config/simulation.toml
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh run
exec .venv/bin/cabinetd --simulate "$@"
