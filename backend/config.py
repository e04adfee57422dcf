"""The backend's configuration: a TOML file (config/backend.example.toml shows every key), with
the database URL also taken from CABINET_BACKEND_DATABASE_URL (containers pass it that way).
A mistake is named with its key and the file, never guessed around."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PATH = "/etc/cabinet-backend/backend.toml"


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Settings:
    database_url: str
    pool_size: int = 10
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    tls_cert: str | None = None
    tls_key: str | None = None
    max_body_bytes: int = 32 * 1024 * 1024
    signing_key: str | None = None        # Ed25519 private key file (mode 0600) for access codes
    key_id: int = 0
    telemetry_retention_days: float | None = 400.0
    smtp_host: str | None = None          # alerts by email: none without it
    smtp_port: int = 25
    smtp_from: str = "cabinet-backend@localhost"
    smtp_starttls: bool = False
    smtp_username: str | None = None
    smtp_password_file: str | None = None
    alert_evaluate_seconds: float = 15.0


_KEYS = {  # section.key -> (field, type)
    "database.url": ("database_url", str), "database.pool_size": ("pool_size", int),
    "http.host": ("host", str), "http.port": ("port", int), "http.workers": ("workers", int),
    "http.tls_cert": ("tls_cert", str), "http.tls_key": ("tls_key", str),
    "http.max_body_bytes": ("max_body_bytes", int),
    "access_codes.signing_key": ("signing_key", str), "access_codes.key_id": ("key_id", int),
    "retention.telemetry_days": ("telemetry_retention_days", (int, float)),
    "alerts.smtp_host": ("smtp_host", str), "alerts.smtp_port": ("smtp_port", int),
    "alerts.smtp_from": ("smtp_from", str), "alerts.smtp_starttls": ("smtp_starttls", bool),
    "alerts.smtp_username": ("smtp_username", str),
    "alerts.smtp_password_file": ("smtp_password_file", str),
    "alerts.evaluate_seconds": ("alert_evaluate_seconds", (int, float)),
}
_RANGES = {"pool_size": (1, 200), "port": (0, 65535), "workers": (1, 64),
           "max_body_bytes": (1024, 1 << 30), "key_id": (0, 255),
           "telemetry_retention_days": (1, 36500), "smtp_port": (1, 65535),
           "alert_evaluate_seconds": (1, 3600)}


def load(path: str | Path | None = None, *, environ=os.environ) -> Settings:
    path = Path(path or environ.get("CABINET_BACKEND_CONFIG") or DEFAULT_PATH)
    values: dict = {}
    if path.exists():
        try:
            document = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not TOML ({exc})") from None
        for section, table in document.items():
            if not isinstance(table, dict):
                raise ConfigError(f"{path}: {section} must be a [section]")
            for key, value in table.items():
                name = f"{section}.{key}"
                if name not in _KEYS:
                    raise ConfigError(f"{path}: unknown key {name} (known: {', '.join(_KEYS)})")
                field, kind = _KEYS[name]
                if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
                    raise ConfigError(f"{path}: {name} has the wrong type ({value!r})")
                low_high = _RANGES.get(field)
                if low_high and not low_high[0] <= value <= low_high[1]:
                    raise ConfigError(f"{path}: {name} must be {low_high[0]} to {low_high[1]}")
                values[field] = value
    if environ.get("CABINET_BACKEND_DATABASE_URL"):
        values["database_url"] = environ["CABINET_BACKEND_DATABASE_URL"]
    if "database_url" not in values:
        raise ConfigError(f"no database: set [database] url in {path} or "
                          "CABINET_BACKEND_DATABASE_URL")
    if not values["database_url"].startswith(("sqlite:///", "postgresql://", "postgres://",
                                              "postgresql+psycopg://")):
        raise ConfigError(f"{path}: database.url must be sqlite:///PATH or postgresql://...")
    return Settings(**values)
