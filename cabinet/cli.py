"""Command lines: `cabinetd` (the daemon) and `cabinet` (technician verbs).

cabinetd [--config PATH] [--simulate] [--data-dir DIR] [--http-port N] [--check-config]
cabinet status [--url URL]           what the running daemon reports, as a table
cabinet check-config [--config PATH] validate a config file without starting anything
cabinet planogram load FILE          validate a planogram and load it into the running daemon
cabinet setpoint CELSIUS [--zone N]  the temperature to hold (of zone N, with several)
cabinet voice install|check PACK     recorded prompts: install a voice pack, or say what it lacks
cabinet update BUNDLE                a signed software release: verified and spooled
cabinet lockout clear --technician N sell perishables again after a food-safety lockout
cabinet alarm clear KIND --technician N  forced_open, face_attempts or settle_error, after looking
cabinet session end --technician N   end a session stuck settling (or never opened)
cabinet token keygen|mint|verify     access codes for technicians and tests
cabinet queue [--data-dir DIR]       records waiting for the backend, last sync, dead letters
cabinet selftest [--url URL]         every device checked, PASS/FAIL with a hint (exit 1 on a FAIL)
cabinet calibrate --shelf N --grams G  tare a shelf, then weigh a reference weight; factors saved
cabinet logs [-f] [-n N] [--since W]  the daemon's log from the journal (--kiosk: the screen's)
cabinet faces list|enroll|delete     members enrolled for face checkout (enroll: from photographs)
cabinet firstboot status             the SD image's first boot, step by step

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
import urllib.parse
import urllib.request
from pathlib import Path

from . import __version__
from .config import DEFAULT_PATH, Config, ConfigError, load
from .store import StoreError

EXIT_CONFIG = 2
DEFAULT_URL = "http://127.0.0.1:8080"


class _Parser(argparse.ArgumentParser):
    """No abbreviated options: `cabinetd --simulat` is a typo, not --simulate. (Subcommands are
    made with the parser's own class, so this holds for every verb.)"""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)


def daemon_url(text: str) -> str:
    """--url: http://HOST:PORT, or HOST:PORT and HOST (http is meant: the daemon is on loopback)."""
    url = text if "://" in text else "http://" + text
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme not in ("http", "https") or not parts.hostname or port == -1 \
            or parts.hostname.isdigit() or parts.path.strip("/") or parts.query or parts.fragment:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected the daemon's address as http://HOST:PORT or HOST:PORT, "
            f"e.g. 127.0.0.1:8080")
    return url.rstrip("/")


def _daemon_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="cabinetd", description="Smart vending cabinet controller.")
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
    if simulate:
        # A simulation runs on a development machine's clock, with no timesyncd to ask.
        config = dataclasses.replace(config, access=dataclasses.replace(
            config.access, clock_trust="always"))
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
    if args.http_port is not None and not 0 <= args.http_port <= 65535:
        print(f"cabinetd: --http-port {args.http_port}: must be 0-65535", file=sys.stderr)
        return EXIT_CONFIG
    if args.check_config:
        return _report_check(config, not args.simulate, "cabinetd")
    _setup_logging(args.log_level or config.cabinet.log_level)
    # A simulation never writes into the real cabinet's data folder, even on a real cabinet.
    data_dir = args.data_dir or (Path("var/simulation") if args.simulate
                                 else Path(config.cabinet.data_dir))
    from .app import StartError, run  # imported late: --check-config needs no drivers
    from .hardware import devices
    try:
        return run(config, devices=devices(args.simulate), data_dir=data_dir.resolve(),
                   http_port=config.http.port if args.http_port is None else args.http_port)
    except ConfigError as exc:
        logging.getLogger("cabinetd").critical("config error: %s", exc)
        return EXIT_CONFIG
    except StartError as exc:
        logging.getLogger("cabinetd").critical("%s", exc)
        return exc.status
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
            ("climate", f"setpoint {state['climate']['setpoint_celsius']:g} °C ("
                        + (f"set {state['climate']['setpoint_set_at']}"
                           if state["climate"].get("setpoint_set_at") else "config file")
                        + f"), "
                        f"{state['climate']['mode']}"
                        + (", PERISHABLES LOCKED OUT" if state["climate"]["food_safety"]["locked_out"]
                           else "")),
            ("outbox", f"{state['outbox']['pending']} pending (last sequence "
                       f"{state['outbox']['last_seq']})"),
            ("last sync", (state["sync"]["last_success_at"] or "never") if state["sync"]["configured"]
                          else "no backend configured")]
    if len(state.get("doors", ())) > 1:
        for door in state["doors"]:
            rows.append((f"door {door['door']}", f"{door['name']}: {door['state']} / "
                         f"{door['lock']}, shelves {', '.join(map(str, door['shelves']))}"))
    if len(state.get("zones", ())) > 1:
        for zone in state["zones"]:
            t, k = zone["temperature"], zone["climate"]
            relays = ", ".join(f"{name} {'on' if on else 'off'}"
                               for name, on in zone["relays"].items() if on is not None)
            rows.append((f"zone {zone['zone']}", f"{zone['name']}: "
                         + (f"{t['celsius']:.2f} °C" if t else "no reading")
                         + f", setpoint {k['setpoint_celsius']:g} °C, {k['mode']}; {relays}"
                         + (", PERISHABLES LOCKED OUT" if k["food_safety"]["locked_out"]
                            else "")))
    for shelf in state["shelves"]:
        grams = "—" if shelf["grams"] is None else f"{shelf['grams']:.1f} g"
        health = shelf["health"] + (f": {shelf['fault']}" if shelf["fault"] else "")
        rows.append((f"shelf {shelf['shelf']}",
                     f"{grams} {'stable' if shelf['stable'] else 'unsettled'}, {health}"))
    setup = state.get("setup")
    if setup and not setup["complete"]:
        rows.append(("first boot", "; ".join(f"{w['step']} {w['state']}" for w in setup["waiting"])
                     + " (cabinet firstboot status)"))
    for device, fault in state["faults"].items():
        rows.append((f"FAULT {device}", fault["detail"]))
    for alarm in state["alarms"]:
        rows.append((f"ALARM {alarm['kind']}", f"{alarm['detail']} (since {alarm['raised_at']})"))
    _print_table(rows)
    return 0


def _print_table(rows: list[tuple[str, str]]) -> None:
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


def _post(url: str, path: str, body: dict, method: str = "POST") -> dict:
    """Send JSON to the daemon; exit with its error message when it refuses."""
    return _send(url, path, json.dumps(body).encode(), "application/json", method, 10)


def _send(url: str, path: str, data: bytes, content_type: str, method: str,
          timeout: float) -> dict:
    request = urllib.request.Request(url.rstrip("/") + path, data=data, method=method,
                                     headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return json.load(reply)
    except urllib.error.HTTPError as err:
        raise SystemExit(f"cabinet: the daemon refused: {json.load(err)['error']}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise SystemExit(f"cabinet: cannot reach the daemon at {url}: {exc}") from None


def _zone(args) -> dict:
    return {} if args.zone is None else {"zone": args.zone}


def _setpoint(args) -> int:
    _post(args.url, "/api/climate/setpoint", {"celsius": args.celsius, **_zone(args)})
    print(f"setpoint {args.celsius:g} °C" + (f" in zone {args.zone}" if args.zone else ""))
    return 0


def _lockout_clear(args) -> int:
    reply = _post(args.url, "/api/food-safety/clear", {"technician": args.technician,
                                                        **_zone(args)})
    print("food-safety lockout cleared" if reply["cleared"] else "there was no lockout")
    return 0


def _session_end(args) -> int:
    reply = _post(args.url, "/api/session/end", {"technician": args.technician})
    print(f"session {reply['session_id']} ended (it was {reply['was']})")
    return 0


def _acknowledged_kind(text: str) -> str:
    kinds = ("forced_open", "face_attempts", "settle_error")
    base, _, door = text.partition(":")
    if base not in kinds or (door and not (door.startswith("door") and door[4:].isdigit())):
        raise argparse.ArgumentTypeError(f"{text!r}: one of {', '.join(kinds)} (forced_open "
                                         "may name its door: forced_open:door2)")
    return text


def _upload(url: str, route: str, path: Path, content_type: str) -> dict:
    """Send a file to the daemon as a request's body (it cannot see the technician's files)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SystemExit(f"cabinet: {path}: {exc.strerror or exc}") from None
    return _send(url, route, data, content_type, "POST", 300)


def _voice_install(args) -> int:
    reply = _upload(args.url, "/api/voice/install", args.pack, "application/x-tar")
    print(f"voice pack {reply['name']!r} installed: {', '.join(reply['languages'])}, "
          f"{reply['clips']} clips (sha256 {reply['sha256'][:12]}…)")
    return 0


def _update(args) -> int:
    reply = _upload(args.url, "/api/update", args.bundle, "application/x-tar")
    print(f"release {reply['version']} verified ({reply['wheels']} wheels, sha256 "
          f"{reply['sha256'][:12]}…) and spooled for the installer")
    return 0


def _voice_check(args) -> int:
    from .voice_pack import check_pack
    problems, manifest = check_pack(args.pack)
    if problems:
        print(f"{args.pack}: {len(problems)} problem(s)")
        for problem in problems:
            print(f"  {problem}")
        return 1
    print(f"{args.pack}: complete ({', '.join(manifest['languages'])}, "
          f"{len(manifest['clips'])} clips)")
    return 0


def _alarm_clear(args) -> int:
    reply = _post(args.url, "/api/alarms/clear", {"kind": args.kind,
                                                 "technician": args.technician})
    print(f"alarm {args.kind} cleared" if reply["cleared"] else f"no {args.kind} alarm was active")
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


def _token(args) -> int:
    import time

    from .access import codes

    if args.token_verb == "keygen":
        path, key = codes.ensure_key_pair(args.out, args.key_id)
        print(f"# signing key (keep it on the backend, mode 0600): {path}")
        print(f'[[key]]\nid = {args.key_id}\npublic_key = "{codes.public_key_text(key)}"\n'
              'roles = ["shopper", "technician"]')
        return 0
    if args.token_verb == "mint":
        try:
            private = codes.read_private_key(args.key)
            print(codes.mint(private, key_id=args.key_id, audience=args.audience,
                             subject=args.subject, role=args.role, issued_at=int(time.time()),
                             lifetime_seconds=args.ttl))
        except (OSError, ValueError) as exc:
            print(f"cabinet: {exc}", file=sys.stderr)
            return EXIT_CONFIG
        return 0
    # verify
    from .access.control import load_keys_file

    try:
        if args.key:
            private = codes.read_private_key(args.key)
            keys = {args.key_id: codes.PublicKey(args.key_id, private.public_key())}
        else:
            keys = load_keys_file(args.keys)
    except (OSError, ValueError) as exc:
        print(f"cabinet: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        code = codes.verify(args.token, keys, codes.Policy(args.cabinet), now=time.time(),
                            clock_trusted=True, last_trusted=None)
    except codes.CodeRefused as refusal:
        print(f"REFUSED ({refusal.reason}): {refusal}")
        return 1
    print(f"VALID: {code.role} {code.subject!r} for {code.audience!r}, key {code.key_id}, "
          f"code {code.code_id}, expires in {code.expires_at - int(time.time())} s")
    return 0


def _selftest(args) -> int:
    """Run the daemon's checks, showing each as it finishes; exit 1 when any failed."""
    request = urllib.request.Request(args.url.rstrip("/") + "/api/selftest", data=b"{}",
                                     method="POST", headers={"Content-Type": "application/json"})
    try:
        reply = urllib.request.urlopen(request, timeout=60)
    except (urllib.error.URLError, OSError) as exc:
        print(f"cabinet: cannot reach the daemon at {args.url}: {exc}", file=sys.stderr)
        return 1
    results = []
    with reply:
        total = len(json.loads(reply.readline())["checks"])
        for raw in reply:
            result = json.loads(raw)
            results.append(result)
            mark = "PASS" if result["ok"] else "FAIL"
            print(f"[{len(results):>2}/{total}] {result['name']:<24} {mark}  {result['detail']}",
                  flush=True)
    failed = [r for r in results if not r["ok"]]
    print(f"\n{len(results) - len(failed)} passed, {len(failed)} failed")
    for r in failed:
        print(f"  {r['name']}: {r['hint']}")
    return 1 if failed else 0


def _calibrate(args) -> int:
    """Tare, then the reference weight, for one shelf; the daemon saves the factors."""
    def step(prompt: str, body: dict) -> dict:
        if not args.yes:
            input(prompt + " Press Enter when ready. ")
        print("reading the shelf (1 s, do not touch the cabinet) ...", flush=True)
        return _post(args.url, "/api/calibrate", body)
    step(f"Shelf {args.shelf}: take everything off it (the empty tray stays).",
         {"shelf": args.shelf, "step": "tare"})
    result = step(f"Put the {args.grams:g} g reference weight in the middle of shelf {args.shelf}.",
                  {"shelf": args.shelf, "step": "span", "grams": args.grams})
    print(f"shelf {args.shelf} calibrated: {result['grams_per_count']:.6g} g per count "
          f"({result['change_percent']:+.2f} % from before), offset {result['offset_grams']:.1f} g; "
          "saved")
    return 0


def _faces(args) -> int:
    """Face enrolments at the cabinet. `enroll` measures the photographs here, in this process,
    and sends the daemon the embeddings only: no image reaches the daemon or its database."""
    if args.faces_verb == "list":
        try:
            with urllib.request.urlopen(args.url.rstrip("/") + "/api/faces", timeout=10) as r:
                faces = json.load(r)
        except (urllib.error.URLError, OSError) as exc:
            raise SystemExit(f"cabinet: cannot reach the daemon at {args.url}: {exc}") from None
        if not faces.get("available"):
            print(f"face checkout is off: {faces.get('reason')}")
            return 0
        for m in faces["enrolled"]:
            print(f"{m['member_id']:<40} {m['embeddings']} embedding(s), enrolled {m['enrolled_at']}")
        print(f"{len(faces['enrolled'])} member(s) enrolled")
        return 0
    if args.faces_verb == "delete":
        reply = _post(args.url, "/api/faces/delete", {"member_ids": args.member})
        print(f"deleted: {', '.join(reply['deleted']) or 'nobody'}"
              + (f"; not enrolled: {', '.join(reply['absent'])}" if reply["absent"] else ""))
        return 0
    if not args.consent:
        print("cabinet: face enrolment needs the member's consent: pass --consent once they have "
              "agreed (in writing, as the rules require)", file=sys.stderr)
        return EXIT_CONFIG
    from .access.face_model import FaceModel, FaceUnavailable, PhotoError
    try:
        model = FaceModel()
        vectors = [model.embedding_from_photo(path) for path in args.photo]
    except (FaceUnavailable, PhotoError) as exc:
        print(f"cabinet: {exc}", file=sys.stderr)
        return 1
    reply = _post(args.url, "/api/faces/enrol", {"members": [{
        "member_id": args.member, "consent": True,
        "embeddings": [[round(float(x), 6) for x in v] for v in vectors]}]})
    if reply["refused"]:
        print(f"cabinet: refused: {reply['refused'][0]['reason']}", file=sys.stderr)
        return 1
    print(f"{args.member} enrolled from {len(vectors)} photograph(s); "
          f"{reply['members']} member(s) on this cabinet")
    return 0


def _logs(args) -> int:
    """The daemon's (or the kiosk's) log from the journal: systemd keeps it, with rotation."""
    import shutil

    journalctl = shutil.which("journalctl")
    if journalctl is None:
        print("cabinet: journalctl not found: this machine has no systemd journal (a simulation "
              "started by hand logs to its terminal)", file=sys.stderr)
        return 1
    unit = "cabinet-kiosk.service" if args.kiosk else "cabinetd.service"
    command = [journalctl, "--unit", unit, "--output", "short-iso", "--no-pager",
               "--lines", str(args.lines)]
    if args.since:
        command += ["--since", args.since]
    if args.follow:
        command.append("--follow")
    if args.priority:
        command += ["--priority", args.priority]
    os.execv(journalctl, command)
    return 1  # not reached


def _queue(args) -> int:
    """The outbox, read straight from the database (works with the daemon stopped, too)."""
    import time
    from datetime import datetime

    from .outbox import OutboxQueue

    data_dir = args.data_dir
    if data_dir is None:
        try:
            data_dir = Path(load(args.config).cabinet.data_dir)
        except ConfigError as exc:
            print(f"cabinet: config error: {exc}", file=sys.stderr)
            return EXIT_CONFIG
    path = data_dir / "cabinet.db"
    if not path.exists():
        print(f"cabinet: no database at {path} (give --data-dir)", file=sys.stderr)
        return EXIT_CONFIG
    queue = OutboxQueue(path)
    try:
        stats = queue.stats()
    finally:
        queue.close()
    if args.json:
        print(json.dumps(stats, indent=2, ensure_ascii=False))
        return 0

    def age(iso: str | None) -> str:
        if not iso:
            return "never"
        seconds = time.time() - datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
        return f"{iso} ({seconds / 60:.0f} min ago)" if seconds >= 60 else f"{iso} ({seconds:.0f} s ago)"
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(stats["pending_by_kind"].items()))
    error = stats["last_error"]
    rows = [("pending", f"{stats['pending']} records, {stats['pending_bytes'] / 1024:.0f} KiB"
                        + (f" ({kinds})" if kinds else "")),
            ("oldest pending", age(stats["oldest_pending_at"]) if stats["pending"] else "—"),
            ("last sync", age(stats["last_success_at"])),
            ("last error", f"{error['error']}" if error else "—"),
            ("dead letters", str(len(stats["dead_letters"])))]
    for d in stats["dead_letters"]:
        rows.append((f"  seq {d['seq']}", f"{d['kind']} {d['record_id']}: {d['reason']} ({d['at']})"))
    _print_table(rows)
    return 0


FIRSTBOOT = Path("/usr/local/lib/cabinet/firstboot.py")


def _firstboot(args) -> int:
    """The SD image's first boot, step by step (the image's own script prints it: it works before
    this venv exists too, as `cabinet-firstboot --status`)."""
    if not FIRSTBOOT.exists():
        print(f"cabinet: {FIRSTBOOT} not found: this system was not installed from the cabinet's "
              "SD image", file=sys.stderr)
        return 1
    import subprocess
    return subprocess.run(["/usr/bin/python3", str(FIRSTBOOT), "--status"]).returncode


def _check_config(args) -> int:
    try:
        config = load(args.config)
    except ConfigError as exc:
        print(f"cabinet: config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return _report_check(config, True, "cabinet")


def _report_check(config: Config, deployed: bool, prog: str) -> int:
    """Everything the daemon checks before it starts (cabinet/preflight.py), one line each."""
    from .preflight import check_config

    try:
        checked = check_config(config, deployed=deployed)
    except ConfigError as exc:
        print(f"{prog}: config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    for warning in checked.warnings:
        print(f"{prog}: warning: {warning}", file=sys.stderr)
    print(f"{config.source}: OK")
    return 0


def _action(verbs, group: str, group_help: str, verb: str, help: str, who: str, func):
    """`cabinet GROUP VERB --technician NAME [--url URL]`: an action at the cabinet, recorded
    with the name of who took it."""
    sub = verbs.add_parser(group, help=group_help).add_subparsers(dest=f"{group}_verb",
                                                                  required=True)
    parser = sub.add_parser(verb, help=help)
    parser.add_argument("--technician", required=True, help=f"{who} (recorded)")
    parser.add_argument("--url", type=daemon_url, default=DEFAULT_URL)
    parser.set_defaults(func=func)
    return parser


def technician_main(argv: list[str] | None = None) -> int:
    p = _Parser(prog="cabinet", description="Technician tools for the cabinet.")
    p.add_argument("--version", action="version", version=f"cabinet {__version__}")
    verbs = p.add_subparsers(dest="verb", required=True)
    status = verbs.add_parser("status", help="state of the running daemon")
    status.add_argument("--url", type=daemon_url, default=DEFAULT_URL,
                        help="the daemon's HTTP address")
    status.add_argument("--json", action="store_true", help="print the raw state")
    status.set_defaults(func=_status)
    calibrate = verbs.add_parser("calibrate", help="calibrate a shelf: tare, then a known weight")
    calibrate.add_argument("--shelf", type=int, required=True)
    calibrate.add_argument("--grams", type=float, required=True, help="the reference weight")
    calibrate.add_argument("--yes", action="store_true", help="do not wait for Enter (scripts)")
    calibrate.add_argument("--url", type=daemon_url, default=DEFAULT_URL)
    calibrate.set_defaults(func=_calibrate)
    logs = verbs.add_parser("logs", help="the daemon's log (from the systemd journal)")
    logs.add_argument("-f", "--follow", action="store_true")
    logs.add_argument("-n", "--lines", type=int, default=100)
    logs.add_argument("--since", help="e.g. '1 hour ago', 'today', '2026-11-23 08:00'")
    logs.add_argument("-p", "--priority", choices=["err", "warning", "info", "debug"],
                      help="only this level and worse")
    logs.add_argument("--kiosk", action="store_true", help="the screen's log instead")
    logs.set_defaults(func=_logs)
    faces = verbs.add_parser("faces", help="members enrolled for face checkout")
    face_verbs = faces.add_subparsers(dest="faces_verb", required=True)
    face_verbs.add_parser("list", help="who is enrolled (ids and dates, never faces)")
    enroll = face_verbs.add_parser("enroll", help="enrol a member from 1-5 photographs")
    enroll.add_argument("photo", type=Path, nargs="+", help="JPEG or PNG, the member alone")
    enroll.add_argument("--member", required=True, help="the member's account id")
    enroll.add_argument("--consent", action="store_true",
                        help="the member has agreed to face checkout (required)")
    delete = face_verbs.add_parser("delete", help="delete members' faces for good")
    delete.add_argument("member", nargs="+")
    for sub in face_verbs.choices.values():
        sub.add_argument("--url", type=daemon_url, default=DEFAULT_URL, help="the daemon's address")
    faces.set_defaults(func=_faces)
    selftest = verbs.add_parser("selftest", help="check every device of the running cabinet")
    selftest.add_argument("--url", type=daemon_url, default=DEFAULT_URL,
                          help="the daemon's address")
    selftest.set_defaults(func=_selftest)
    queue = verbs.add_parser("queue", help="records waiting for the backend, last sync, dead letters")
    queue.add_argument("--data-dir", type=Path, help="the daemon's data folder "
                       "(default: cabinet.data_dir of the config)")
    queue.add_argument("--config", type=Path, default=DEFAULT_PATH)
    queue.add_argument("--json", action="store_true")
    queue.set_defaults(func=_queue)
    plan = verbs.add_parser("planogram", help="replace the running cabinet's planogram")
    plan_verbs = plan.add_subparsers(dest="planogram_verb", required=True)
    plan_load = plan_verbs.add_parser("load", help="validate a planogram file and load it")
    plan_load.add_argument("file", type=Path)
    plan_load.add_argument("--url", type=daemon_url, default=DEFAULT_URL,
                           help="the daemon's address")
    plan_load.set_defaults(func=_planogram_load)
    setpoint = verbs.add_parser("setpoint", help="set the temperature to hold")
    setpoint.add_argument("celsius", type=float)
    setpoint.add_argument("--zone", type=int, help="which zone, on a cabinet with several")
    setpoint.add_argument("--url", type=daemon_url, default=DEFAULT_URL)
    setpoint.set_defaults(func=_setpoint)
    lockout = _action(verbs, "lockout", "the food-safety lockout of perishables", "clear",
                      "after checking the food: sell perishables again", "who checked the food",
                      _lockout_clear)
    lockout.add_argument("--zone", type=int, help="the zone whose food was checked (needed when "
                         "more than one zone is locked out)")
    _action(verbs, "session", "the session in progress", "end", "end a session that does not "
            "end by itself (weighed now; refused while the door is open)", "who ended it",
            _session_end)
    alarm_clear = _action(verbs, "alarm", "alarms that stay until a technician has looked",
                          "clear", "clear forced_open (door closed, cabinet checked), "
                          "face_attempts (lifts face-unlock pauses) or settle_error (the flagged "
                          "session reviewed)", "who looked", _alarm_clear)
    alarm_clear.add_argument("kind", type=_acknowledged_kind,
                             help="forced_open, face_attempts or settle_error; on a cabinet with "
                             "several doors a door's own, e.g. forced_open:door2")
    voice = verbs.add_parser("voice", help="recorded prompts (voice packs, docs/voice.md)")
    voice_verbs = voice.add_subparsers(dest="voice_verb", required=True)
    voice_install = voice_verbs.add_parser("install", help="check a pack archive and install it")
    voice_install.add_argument("pack", type=Path)
    voice_install.add_argument("--url", type=daemon_url, default=DEFAULT_URL)
    voice_install.set_defaults(func=_voice_install)
    voice_check = voice_verbs.add_parser("check", help="say what a pack (archive or folder) "
                                         "lacks against this software's prompts")
    voice_check.add_argument("pack", type=Path)
    voice_check.set_defaults(func=_voice_check)
    update = verbs.add_parser("update", help="check a signed software release and spool it "
                              "(docs/updates.md)")
    update.add_argument("bundle", type=Path)
    update.add_argument("--url", type=daemon_url, default=DEFAULT_URL)
    update.set_defaults(func=_update)
    token = verbs.add_parser("token", help="access codes: make a key, mint, verify")
    token_verbs = token.add_subparsers(dest="token_verb", required=True)
    keygen = token_verbs.add_parser("keygen", help="a signing key, and the line for the keys file")
    keygen.add_argument("--out", type=Path, required=True, help="folder for the private key")
    keygen.add_argument("--key-id", type=int, default=1)
    mint = token_verbs.add_parser("mint", help="sign a code")
    mint.add_argument("--key", type=Path, default=Path("var/simulation/sim/access-signing-key"),
                      help="private key file (default: the simulation's)")
    mint.add_argument("--key-id", type=int, default=0)
    mint.add_argument("--audience", required=True, help='cabinet id, group, or "*"')
    mint.add_argument("--subject", required=True, help="the account, or the technician")
    mint.add_argument("--role", choices=("shopper", "technician"), default="shopper")
    mint.add_argument("--ttl", type=int, default=90, help="seconds the code is valid")
    verify = token_verbs.add_parser("verify", help="check a code as a cabinet would")
    verify.add_argument("token")
    verify.add_argument("--cabinet", required=True, help="the cabinet id to check it for")
    verify.add_argument("--keys", type=Path, default=Path("/etc/cabinet/access-keys.toml"))
    verify.add_argument("--key", type=Path, help="a private key file instead of --keys")
    verify.add_argument("--key-id", type=int, default=0)
    for sub in (keygen, mint, verify):
        sub.set_defaults(func=_token)
    firstboot = verbs.add_parser("firstboot", help="the SD image's first boot")
    firstboot.add_argument("firstboot_verb", choices=("status",))
    firstboot.set_defaults(func=_firstboot)
    check = verbs.add_parser("check-config", help="validate a config file")
    check.add_argument("--config", type=Path, default=DEFAULT_PATH)
    check.set_defaults(func=_check_config)
    args = p.parse_args(argv)
    return args.func(args)
