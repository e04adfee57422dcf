"""`cabinet-backend`: the operators' backend's command line.

    cabinet-backend [--config FILE] migrate                 create or upgrade the database
    cabinet-backend [--config FILE] serve                   run the service (uvicorn)
    cabinet-backend [--config FILE] create-user NAME --role admin [--password-file F]
    cabinet-backend [--config FILE] set-password NAME [--password-file F]
    cabinet-backend [--config FILE] api-token NAME --name LABEL [--days N]   (printed once)
    cabinet-backend [--config FILE] add-cabinet CABINET_ID  (prints its device token once)
    cabinet-backend [--config FILE] enrolment CABINET_ID    (a one-time token for first boot)
    cabinet-backend [--config FILE] prune                   raw telemetry past retention, now
    cabinet-backend openapi                                 print the OpenAPI document

The config file defaults to /etc/cabinet-backend/backend.toml (or CABINET_BACKEND_CONFIG);
--db URL overrides its database for one command.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import socket
import sys
from pathlib import Path

from .config import ConfigError, Settings, load
from .protocol import Role


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="cabinet-backend", description=__doc__.splitlines()[0])
    p.add_argument("--config", help="the config file (default /etc/cabinet-backend/backend.toml)")
    p.add_argument("--db", help="a database URL instead of the config's")
    sub = p.add_subparsers(dest="verb", required=True)
    sub.add_parser("migrate", help="create or upgrade the database (Alembic)")
    serve = sub.add_parser("serve", help="run the service")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int)
    for verb in ("create-user", "set-password"):
        person = sub.add_parser(verb)
        person.add_argument("username")
        person.add_argument("--password-file", help="read the password from this file's first "
                            "line (else asked on the terminal, or read from stdin)")
        if verb == "create-user":
            person.add_argument("--role", required=True, choices=[r.value for r in Role])
    token = sub.add_parser("api-token", help="an API token for a script (printed once)")
    token.add_argument("username")
    token.add_argument("--name", required=True)
    token.add_argument("--days", type=int)
    for verb in ("add-cabinet", "enrolment"):
        sub.add_parser(verb).add_argument("cabinet_id")
    sub.add_parser("prune", help="delete raw telemetry older than the retention now")
    sub.add_parser("openapi", help="print the OpenAPI document")
    args = p.parse_args(argv)

    if args.verb == "openapi":
        sys.stdout.write(openapi_document())
        return 0
    try:
        settings = _settings(args)
    except ConfigError as exc:
        print(f"cabinet-backend: {exc}", file=sys.stderr)
        return 2
    if args.verb == "migrate":
        from .storage.engine import migrate
        migrate(settings.database_url)
        print("database is at the newest schema")
        return 0
    if args.verb == "serve":
        return _serve(args, settings)
    return _admin(args, settings)


def _settings(args) -> Settings:
    environ = dict(os.environ)
    if args.db:
        environ["CABINET_BACKEND_DATABASE_URL"] = args.db
    return load(args.config, environ=environ)


def _storage(settings: Settings):
    from .storage import Storage
    from .storage.engine import current_revision, head_revision

    storage = Storage(settings.database_url, pool_size=2)
    have, want = current_revision(storage.engine), head_revision()
    if have != want:
        storage.close()
        raise SystemExit(f"cabinet-backend: the database is at schema {have or 'none'}, this "
                         f"version needs {want}: run `cabinet-backend migrate` first")
    return storage


def _admin(args, settings: Settings) -> int:
    from pydantic import ValidationError

    from .protocol import NewCabinet, NewUser
    from .storage.errors import Conflict, NotFound

    storage = _storage(settings)
    try:
        if args.verb in ("add-cabinet", "enrolment"):
            cabinet_id = NewCabinet(cabinet_id=args.cabinet_id).cabinet_id
            if args.verb == "add-cabinet":
                print(storage.fleet.add_cabinet(cabinet_id, actor="cli"))
            else:
                print(json.dumps(storage.fleet.new_enrolment(cabinet_id, "cli")))
        elif args.verb == "create-user":
            user = NewUser(username=args.username, role=args.role,
                           password=_password(args.password_file))
            storage.people.create_user(user.username, user.role.value, user.password, "cli")
            print(f"user {user.username} ({user.role.value}) created")
        elif args.verb == "set-password":
            NewUser(username=args.username, role="viewer", password=(pw := _password(
                args.password_file)))
            storage.people.change_user(args.username, "cli", password=pw)
            print(f"password of {args.username} set; their logins are ended")
        elif args.verb == "api-token":
            print(storage.people.new_token(args.username, "api", args.name, args.days,
                                           actor="cli")["token"])
        elif args.verb == "prune":
            print(f"{storage.fleet.prune_telemetry(settings.telemetry_retention_days or 400)} "
                  "telemetry records removed")
    except ValidationError as exc:
        error = exc.errors()[0]
        print(f"cabinet-backend: {'.'.join(map(str, error['loc']))}: {error['msg']}",
              file=sys.stderr)
        return 2
    except (Conflict, NotFound) as exc:
        print(f"cabinet-backend: {exc}", file=sys.stderr)
        return 1
    finally:
        storage.close()
    return 0


def _password(path: str | None) -> str:
    if path:
        return Path(path).read_text().splitlines()[0] if Path(path).read_text() else ""
    if sys.stdin.isatty():
        first = getpass.getpass("password (10 characters or more): ")
        if getpass.getpass("again: ") != first:
            raise SystemExit("cabinet-backend: the passwords differ")
        return first
    return sys.stdin.readline().rstrip("\n")


def _serve(args, settings: Settings) -> int:
    import dataclasses

    import uvicorn

    from .app import from_settings
    from .server import options

    server_options = options(certfile=settings.tls_cert, keyfile=settings.tls_key)

    overrides = {k: v for k, v in (("host", args.host), ("port", args.port),
                                   ("workers", args.workers)) if v is not None}
    settings = dataclasses.replace(settings, **overrides)
    if settings.workers > 1 and not settings.database_url.startswith("postgres"):
        print("cabinet-backend: several workers need PostgreSQL (SQLite has one writer)",
              file=sys.stderr)
        return 2
    _storage(settings).close()  # refuses to start on a database that needs migrating
    scheme = "https" if settings.tls_cert else "http"
    if settings.workers > 1:
        print(f"backend on {scheme}://{settings.host}:{settings.port}", flush=True)
        # Each worker process builds its own app from the same config file.
        if args.config:
            os.environ["CABINET_BACKEND_CONFIG"] = str(Path(args.config).resolve())
        os.environ["CABINET_BACKEND_DATABASE_URL"] = settings.database_url
        uvicorn.run("backend.app:from_environment", factory=True, workers=settings.workers,
                    host=settings.host, port=settings.port, **{**server_options,
                                                               "log_level": "info"})
        return 0
    # Bound here so that the URL printed is the real one (port 0 picks a free port).
    listener = socket.create_server((settings.host, settings.port), reuse_port=False)
    print(f"backend on {scheme}://{settings.host}:{listener.getsockname()[1]}", flush=True)
    app = from_settings(settings)
    uvicorn.Server(uvicorn.Config(app, **server_options)).run(sockets=[listener])
    return 0


def openapi_document() -> str:
    """The OpenAPI document as committed in backend/openapi.json (generated, never edited)."""
    from .app import create_app
    from .storage import Storage

    storage = Storage("sqlite:///:memory:", pool_size=1)
    try:
        return json.dumps(create_app(storage).openapi(), indent=1, ensure_ascii=False,
                          sort_keys=True) + "\n"
    finally:
        storage.close()


if __name__ == "__main__":
    sys.exit(main())
