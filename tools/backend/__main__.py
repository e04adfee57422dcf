"""The fault proxy's command line (the backend itself is `cabinet-backend`, in backend/).

    python -m tools.backend proxy --upstream URL --port N --fault lost_ack=0.1 ...
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from .faults import FAULTS, FaultProxy


def _fault(text: str) -> tuple[str, float]:
    name, _, p = text.partition("=")
    if name not in FAULTS:
        raise argparse.ArgumentTypeError(f"unknown fault {name!r}; known: {', '.join(FAULTS)}")
    try:
        return name, float(p)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text}: use NAME=PROBABILITY") from None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.backend", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="verb", required=True)
    proxy = sub.add_parser("proxy", help="a fault-injecting proxy in front of a backend")
    proxy.add_argument("--upstream", required=True)
    proxy.add_argument("--port", type=int, default=8001)
    proxy.add_argument("--fault", type=_fault, action="append", default=[])
    proxy.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    server = FaultProxy(args.upstream, dict(args.fault), seed=args.seed, port=args.port)
    print(f"proxy on {server.url} -> {args.upstream}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    server.start()
    stop.wait()
    server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
