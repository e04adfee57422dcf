"""The reference backend's command line.

    python -m tools.backend serve --db sqlite:///var/lib/cabinet-backend.db --port 8000 \
        --operator-token-file /etc/cabinet-backend/operator-token [--signing-key FILE --key-id N]
        [--tls-cert FILE --tls-key FILE]
    python -m tools.backend add-cabinet --db URL CABINET_ID      (prints the device token once)
    python -m tools.backend proxy --upstream URL --port N --fault lost_ack=0.1 ...
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from .db import Database
from .faults import FAULTS, FaultProxy
from .server import BackendServer
from .service import Backend, Invalid


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
    serve = sub.add_parser("serve", help="run the backend")
    serve.add_argument("--db", required=True, help="sqlite:///PATH or postgresql://...")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--operator-token-file", required=True)
    serve.add_argument("--signing-key", help="Ed25519 key (mode 0600) for minting access codes")
    serve.add_argument("--key-id", type=int, default=0)
    serve.add_argument("--tls-cert")
    serve.add_argument("--tls-key")
    add = sub.add_parser("add-cabinet", help="register a cabinet and print its device token")
    add.add_argument("--db", required=True)
    add.add_argument("cabinet_id")
    proxy = sub.add_parser("proxy", help="a fault-injecting proxy in front of a backend")
    proxy.add_argument("--upstream", required=True)
    proxy.add_argument("--port", type=int, default=8001)
    proxy.add_argument("--fault", type=_fault, action="append", default=[])
    proxy.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    if args.verb == "add-cabinet":
        try:
            print(Backend(Database(args.db)).add_cabinet(args.cabinet_id))
        except (Invalid, ValueError) as exc:
            print(f"backend: {exc}", file=sys.stderr)
            return 2
        return 0
    if args.verb == "proxy":
        server = FaultProxy(args.upstream, dict(args.fault), seed=args.seed, port=args.port)
        print(f"proxy on {server.url} -> {args.upstream}", flush=True)
    else:
        from cabinet.access.codes import read_private_key
        from cabinet.config import read_secret

        key = read_private_key(args.signing_key) if args.signing_key else None
        server = BackendServer(Backend(Database(args.db), signing_key=key, key_id=args.key_id),
                               operator_token=read_secret(args.operator_token_file,
                                                          "operator token"),
                               host=args.host, port=args.port, certfile=args.tls_cert,
                               keyfile=args.tls_key)
        print(f"backend on {server.url}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    server.start()
    stop.wait()
    server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
