"""Footprint of the simulated daemon: time to READY, resident memory, idle CPU.

Runs `cabinetd --simulate` as a process (as systemd would, with NOTIFY_SOCKET), waits for READY=1,
lets it idle, and reads /proc for its memory and CPU: today's code, then the code before issue 23
(tools/bench/baseline.py), with the machine's load. Side by side, in the same run, the resident
memory of a bare interpreter and of each library the daemon imports, so the figures can be read
against what the peers cost on their own. Goals (issues 2 and 15): idle RSS <= 80 MB with the camera
on, idle CPU <= 2 % of one core. Note: the simulated daemon also runs the twins in-process (a pymodbus
server and its event loop, the thermal model, a pty cable), which a real cabinet does not.

Measured here (2 cores, issue 15): 89.6 MB and 3.4 % before; 69.3 MB and 1.8-1.9 % after. What it
took: the QR reader no longer counts the first frame as movement (it ran the rescue stages on the
empty scene at every start, loading OpenCV: ~16 MB resident, never given back); it sleeps until the
camera's next frame instead of looking every 20 ms; the door switch and lock contact are
DigitalInputDevices (a gpiozero Button's hold thread wakes ten times a second for ever).

    .venv/bin/python tools/bench/footprint.py [--runs 3] [--idle-seconds 20]
        [--cpus 0 --cpu-quota 30]   # as a slow board: one core, 30 % of it (root, for the quota)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tools.bench import baseline  # noqa: E402
from tools.bench.baseline import against_option, daemon_program, machine_load  # noqa: E402
from tools.bench.common import CpuLimit, cpu_limit_options  # noqa: E402
from tools.daemon_process import CabinetProcess  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def import_rss(statement: str) -> float:
    code = (f"{statement}\nimport pathlib\n"
            "print([l for l in pathlib.Path('/proc/self/status').read_text().splitlines()"
            " if l.startswith('VmRSS:')][0].split()[1])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip()) / 1024


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--idle-seconds", type=float, default=20.0)
    cpu_limit_options(p)
    p.add_argument("--camera-fps", type=float, nargs="+", default=[None],
                   help="measure with these camera.frames_per_second (default: the config's)")
    against_option(p)
    args = p.parse_args()
    folders = baseline.side_by_side(args.against)
    print(machine_load())

    print("resident memory of the libraries on their own (fresh interpreter each):")
    peers = [("python3 (bare interpreter)", "pass"),
             ("gpiozero + MockFactory", "import gpiozero.pins.mock"),
             ("pyserial", "import serial"),
             ("pymodbus client", "import pymodbus.client"),
             ("pymodbus server (simulation only)", "import pymodbus.server, pymodbus.simulator"),
             ("numpy", "import numpy"),
             ("opencv (not loaded unless a real camera or a posted image)", "import cv2"),
             ("requests (the uploader, the command poller, the ads)", "import requests"),
             ("all of cabinetd's modules", "import cabinet.app, drivers.sim.world")]
    for name, statement in peers:
        print(f"  {name:<60} {import_rss(statement):6.1f} MB")

    for fps in args.camera_fps:
        for name, folder in folders.items():
            measure(args, fps, name, folder)
    print(f"({machine_load()} at the end)")
    return 0


def measure(args, fps: float | None, name: str, folder: Path | None) -> None:
    label = f" ({name})" + ("" if fps is None else f", camera at {fps:g} frames/s")
    limit = CpuLimit(args.cpus, args.cpu_quota)
    print(f"\ncabinetd --simulate{label}, {args.runs} runs, {args.idle_seconds:g} s idle each, "
          f"{limit.describe()}:")
    print(f"  {'run':>3}  {'to READY':>9}  {'RSS':>8}  {'idle CPU':>9}")
    results = []
    try:
        for run in range(1, args.runs + 1):
            with tempfile.TemporaryDirectory() as data:
                extra = []
                if fps is not None:
                    config = Path(data) / "camera.toml"
                    config.write_text(f"[camera]\nframes_per_second = {fps}\n")
                    extra = ["--config", str(config)]
                d = CabinetProcess(*extra, data_dir=data, wrap=limit.wrap(),
                                   **daemon_program(folder))
                try:
                    ready = d.wait_ready()
                    time.sleep(3)  # let the first readings and lazy imports happen
                    cpu0, t0 = cpu_seconds(d.proc.pid), time.monotonic()
                    time.sleep(args.idle_seconds)
                    cpu = (cpu_seconds(d.proc.pid) - cpu0) / (time.monotonic() - t0) * 100
                    rss = rss_mb(d.proc.pid)
                finally:
                    d.kill()
            results.append((ready, rss, cpu))
            print(f"  {run:>3}  {ready:8.2f}s  {rss:6.1f}MB  {cpu:8.2f}%")
    finally:
        limit.close()
    best = min(results)
    worst_rss = max(r[1] for r in results)
    worst_cpu = max(r[2] for r in results)
    print(f"summary{label}: READY in {best[0]:.2f} s (best), RSS up to {worst_rss:.1f} MB "
          f"(goal <= 80), idle CPU up to {worst_cpu:.2f} % of a core (goal <= 2)")


if __name__ == "__main__":
    raise SystemExit(main())
