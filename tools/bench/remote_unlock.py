"""Remote unlock latency: issued at the backend's operator API -> the cabinet's lock relay on.

A real cabinetd --simulate syncs with the backend (`cabinet-backend serve`, its own process) on loopback. For
each run the phone's nonce is read from the screen's QR (GET /api/state), the operator API issues
remote_unlock, and the clock stops when /api/state shows the lock unlocked (polled every 2 ms).
The figure includes the long-poll's wake-up, the HTTP reply, the controller's nonce check, the
journal commit with synchronous=FULL and the relay. Side by side: the same command delivered by
plain polling (a GET every 1 s, as a cabinet without long-poll would), computed from the same run's
arrival times.

    .venv/bin/python tools/bench/remote_unlock.py [--runs 50]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tools.bench.common import open_and_close, percentile, wait, wait_idle  # noqa: E402
from tools.bench.backends import NewBackend  # noqa: E402
from tools.daemon_process import CabinetProcess  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=50)
    args = p.parse_args()
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        backend = NewBackend(f"sqlite://{folder}/backend.db")
        token = folder / "device-token"
        token.write_text(backend.register(["cabinet-0001"])["cabinet-0001"])
        os.chmod(token, 0o600)
        config = folder / "cabinet.toml"
        config.write_text(f"[sync]\nbackend_url = '{backend.url}'\n"
                          f"device_token_file = '{token}'\n")
        d = CabinetProcess("--config", str(config), data_dir=folder / "data")
        operator = requests.Session()
        operator.headers["Authorization"] = f"Bearer {backend.operator_token}"
        try:
            d.wait_ready()
            wait(lambda: d.url)
            for i in range(args.runs):
                state = wait_idle(d)
                nonce = state["screen_qr"]["url"].split("?n=")[1]
                time.sleep(0.2)  # the long-poll is waiting again at the backend
                started = time.monotonic()
                reply = operator.post(f"{backend.url}/v1/operator/cabinets/cabinet-0001/commands",
                                      json={"type": "remote_unlock", "lifetime_seconds": 30,
                                            "args": {"nonce": nonce, "subject": f"acct-{i}"}})
                reply.raise_for_status()
                wait(lambda: d.state()["lock"] == "unlocked", interval=0.002, timeout=10)
                times.append(time.monotonic() - started)
                open_and_close(d)
        finally:
            d.kill()
            backend.close()
    rng = random.Random(1)
    # Plain polling every second: the command waits for the next poll, uniform in [0, 1) s.
    polled = [t + rng.uniform(0, 1.0) for t in times]
    print(f"remote unlock, issued at the backend -> lock relay on, {len(times)} runs on loopback")
    print(f"{'delivery':<34}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}")
    for label, values in (("long-poll (cabinet.sync)", times),
                          ("plain polling every 1 s (model)", polled)):
        print(f"{label:<34}{percentile(values, 50) * 1000:>10.1f}"
              f"{percentile(values, 99) * 1000:>10.1f}{max(values) * 1000:>10.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
