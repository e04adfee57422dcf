"""Command lines: `cabinetd` (the daemon) and `cabinet` (technician verbs).

cabinetd [--config PATH] [--simulate] [--data-dir DIR] [--http-port N] [--check-config]
cabinet status [--url URL]           what the running daemon reports, as a table
cabinet check-config [--config PATH] validate a config file without starting anything
cabinet planogram load FILE          validate a planogram and load it into the running daemon
cabinet setpoint CELSIUS             the temperature to hold
cabinet lockout clear --technician N sell perishables again after a food-safety lockout

Exit status: 0 on success, 2 for a bad command line or config, 1 for a failure at run time.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

from . import __version__
from .config import DEFAULT_PATH, Config, ConfigError, load
from .store import StoreError

EXIT_CONFIG = 2


def _daemon_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cabinetd", description="Smart vending cabinet controller.")
    p.add_argument("--config", type=Path,
                   help=f"TOML config file (default {DEFAULT_PATH}; with --simulate the "
                        "embedded defaults)")
    p.add_argument("--simulate", action="store_true",
                   help="run on simulated devices (no GPIO, serial or camera needed)")
    p.add_argument("--data-dir", type=Path, help="folder for the database (overrides "
                   "cabinet.data_dir; with --simulate the default is ./var/simulation)")
    p.add_argument("--http-port", type=int, help="local HTTP port (overrides http.port; "
                   "0 picks a free one and logs it)")
    p.add_argument("--check-config", action="store_true",
                   help="validate the config and exit (0 when valid)")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"),
                   help="overrides cabinet.log_level")
    p.add_argument("--version", action="version", version=f"cabinetd {__version__}")
    return p


EXAMPLE_PLANOGRAM = Path(__file__).resolve().parents[1] / "config" / "planogram.toml"


def load_config(path: Path | None, simulate: bool) -> Config:
    config = Config() if path is None and simulate else load(path or DEFAULT_PATH)
    if simulate and not Path(config.checkout.planogram_file).exists() and EXAMPLE_PLANOGRAM.exists():
        # A simulation on a machine with no /etc/cabinet sells the example planogram.
        config = dataclasses.replace(config, checkout=dataclasses.replace(
            config.checkout, planogram_file=str(EXAMPLE_PLANOGRAM)))
    return config


def _setup_logging(level: str) -> None:
    # Under systemd, journald stamps the time itself; elsewhere we do.
    stamp = "" if os.environ.get("JOURNAL_STREAM") else "%(asctime)s "
    logging.basicConfig(level=level.upper(), stream=sys.stderr,
                        format=stamp + "%(levelname)s %(name)s: %(message)s")


def daemon_main(argv: list[str] | None = None) -> int:
    args = _daemon_parser().parse_args(argv)
    try:
        config = load_config(args.config, args.simulate)
    except ConfigError as exc:
        print(f"cabinetd: config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.check_config:
        print(f"{config.source}: OK")
        return 0
    if args.http_port is not None and not 0 <= args.http_port <= 65535:
        print(f"cabinetd: --http-port {args.http_port}: must be 0-65535", file=sys.stderr)
        return EXIT_CONFIG
    _setup_logging(args.log_level or config.cabinet.log_level)
    # A simulation never writes into the real cabinet's data folder, even on a real cabinet.
    data_dir = args.data_dir or (Path("var/simulation") if args.simulate
                                 else Path(config.cabinet.data_dir))
    from .app import run  # imported late: --check-config needs no drivers
    try:
        return run(config, simulate=args.simulate, data_dir=data_dir.resolve(),
                   http_port=config.http.port if args.http_port is None else args.http_port)
    except ConfigError as exc:
        logging.getLogger("cabinetd").critical("config error: %s", exc)
        return EXIT_CONFIG
    except StoreError as exc:
        logging.getLogger("cabinetd").critical("store: %s", exc)
        return 1


# --- technician verbs ---------------------------------------------------------------------------

def _get_state(url: str) -> dict:
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/api/state", timeout=5) as reply:
            return json.load(reply)
    except (urllib.error.URLError, OSError) as exc:
        raise SystemExit(f"cabinet: cannot reach the daemon at {url}: {exc}") from None


def _status(args) -> int:
    state = _get_state(args.url)
    if args.json:
        print(json.dumps(state, indent=2, ensure_ascii=False))
        return 0
    temp = state.get("temperature")
    rows = [("cabinet", f"{state['cabinet_id']} (software {state['software_version']})"),
            ("uptime", f"{state['uptime_seconds']:.0f} s"),
            ("door / lock", f"{state['door']} / {state['lock']}"),
            ("temperature", f"{temp['celsius']:.2f} °C ({temp['sensor']})" if temp else "no reading"),
            ("relays", ", ".join(f"{k} {'on' if v else 'off'}" for k, v in state["relays"].items())),
            ("climate", f"setpoint {state['climate']['setpoint_celsius']:g} °C, "
                        f"{state['climate']['mode']}"
                        + (", PERISHABLES LOCKED OUT" if state["climate"]["food_safety"]["locked_out"]
                           else "")),
            ("outbox", f"{state['outbox']['pending']} pending of {state['outbox']['total']}")]
    for shelf in state["shelves"]:
        grams = "—" if shelf["grams"] is None else f"{shelf['grams']:.1f} g"
        health = shelf["health"] + (f": {shelf['fault']}" if shelf["fault"] else "")
        rows.append((f"shelf {shelf['shelf']}",
                     f"{grams} {'stable' if shelf['stable'] else 'unsettled'}, {health}"))
    for device, fault in state["faults"].items():
        rows.append((f"FAULT {device}", fault["detail"]))
    for alarm in state["alarms"]:
        rows.append((f"ALARM {alarm['kind']}", f"{alarm['detail']} (since {alarm['raised_at']})"))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0


def _post(url: str, path: str, body: dict, method: str = "POST") -> dict:
    """Send JSON to the daemon; exit with its error message when it refuses."""
    request = urllib.request.Request(url.rstrip("/") + path, data=json.dumps(body).encode(),
                                     method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return json.load(reply)
    except urllib.error.HTTPError as err:
        raise SystemExit(f"cabinet: the daemon refused: {json.load(err)['error']}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise SystemExit(f"cabinet: cannot reach the daemon at {url}: {exc}") from None


def _setpoint(args) -> int:
    _post(args.url, "/api/climate/setpoint", {"celsius": args.celsius})
    print(f"setpoint {args.celsius:g} °C")
    return 0


def _lockout_clear(args) -> int:
    reply = _post(args.url, "/api/food-safety/clear", {"technician": args.technician})
    print("food-safety lockout cleared" if reply["cleared"] else "there was no lockout")
    return 0


def _planogram_load(args) -> int:
    from .planogram import PlanogramError, load as load_planogram

    try:
        planogram = load_planogram(args.file)
    except PlanogramError as exc:
        print(f"cabinet: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    _post(args.url, "/api/planogram", json.loads(planogram.to_json()), method="PUT")
    print(f"planogram {planogram.version!r} loaded: {len(planogram.products)} products on "
          f"{len(planogram.shelves)} shelves")
    return 0


def _check_config(args) -> int:
    try:
        config = load(args.config)
    except ConfigError as exc:
        print(f"cabinet: config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    print(f"{config.source}: OK")
    return 0


def technician_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="cabinet", description="Technician tools for the cabinet.")
    p.add_argument("--version", action="version", version=f"cabinet {__version__}")
    verbs = p.add_subparsers(dest="verb", required=True)
    status = verbs.add_parser("status", help="state of the running daemon")
    status.add_argument("--url", default="http://127.0.0.1:8080", help="the daemon's HTTP address")
    status.add_argument("--json", action="store_true", help="print the raw state")
    status.set_defaults(func=_status)
    plan = verbs.add_parser("planogram", help="replace the running cabinet's planogram")
    plan_verbs = plan.add_subparsers(dest="planogram_verb", required=True)
    plan_load = plan_verbs.add_parser("load", help="validate a planogram file and load it")
    plan_load.add_argument("file", type=Path)
    plan_load.add_argument("--url", default="http://127.0.0.1:8080", help="the daemon's address")
    plan_load.set_defaults(func=_planogram_load)
    setpoint = verbs.add_parser("setpoint", help="set the temperature to hold")
    setpoint.add_argument("celsius", type=float)
    setpoint.add_argument("--url", default="http://127.0.0.1:8080")
    setpoint.set_defaults(func=_setpoint)
    lockout = verbs.add_parser("lockout", help="the food-safety lockout of perishables")
    lockout_verbs = lockout.add_subparsers(dest="lockout_verb", required=True)
    clear = lockout_verbs.add_parser("clear", help="after checking the food: sell perishables again")
    clear.add_argument("--technician", required=True, help="who checked the food (recorded)")
    clear.add_argument("--url", default="http://127.0.0.1:8080")
    clear.set_defaults(func=_lockout_clear)
    check = verbs.add_parser("check-config", help="validate a config file")
    check.add_argument("--config", type=Path, default=DEFAULT_PATH)
    check.set_defaults(func=_check_config)
    args = p.parse_args(argv)
    return args.func(args)
