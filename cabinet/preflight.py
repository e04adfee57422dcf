"""What the daemon checks before it touches any hardware, in one place, so that `--check-config`
and the start cannot disagree: a config that the check passes is one the daemon starts with.

Refusals (ConfigError, one line naming the file and what to do): the config itself (loaded
before this), the device token file when a backend is set (missing, empty, or readable by others)
and an access-keys file that exists but cannot be read. The check also refuses a planogram file
that does not parse: the daemon refuses it at its first start (later it sells the planogram saved
in its database) and `cabinet planogram load` refuses it too. Things that only degrade the cabinet
(no keys: codes cannot open; a face key others can read: face checkout off, with an alarm) are
warnings that the check prints; the daemon logs the same conditions where each part starts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .config import Config, ConfigError, read_secret


@dataclass
class Preflight:
    token: str | None                  # the device token, when a backend is configured
    access_keys: dict                  # key id -> Ed25519 public key
    warnings: list[str] = field(default_factory=list)


def preflight(config: Config, *, deployed: bool = True) -> Preflight:
    """`deployed`: a cabinet in the field (hardware.Devices), whose deployment files are warned
    about; twins bring their own keys and planogram."""
    from .access.control import load_keys_file

    warnings: list[str] = []
    token = None
    if config.sync.backend_url:
        token = read_secret(config.sync.device_token_file, "device token")
        owner = os.stat(config.sync.device_token_file).st_uid
        if os.geteuid() == 0 and owner == 0 and deployed:
            # Read here as root; the service reads it as its own user (cabinet).
            warnings.append(f"sync.device_token_file: {config.sync.device_token_file} is "
                            "root's, mode 0600: the cabinet user cannot read it (run: chown "
                            f"cabinet: {config.sync.device_token_file})")
    try:
        keys = load_keys_file(config.access.keys_file)
    except ValueError as exc:
        raise ConfigError(f"access.keys_file: {exc}") from None
    if not keys and deployed:
        why = "holds no keys" if Path(config.access.keys_file).exists() else "does not exist"
        warnings.append(f"access.keys_file: {config.access.keys_file} {why}: access codes "
                        "cannot open the door")
    if config.face.enabled and deployed:
        key = Path(config.face.key_file)
        if key.exists() and os.stat(key).st_mode & 0o077:
            warnings.append(f"face.key_file: {key} can be read by others: face checkout stays "
                            f"off until it is 0600 (run: chmod 600 {key})")
    return Preflight(token, keys, warnings)


def check_config(config: Config, *, deployed: bool = True) -> Preflight:
    """`--check-config`: the start's checks, and the planogram file its first start would load."""
    from .planogram import PlanogramError, load as load_planogram

    checked = preflight(config, deployed=deployed)
    planogram = Path(config.checkout.planogram_file)
    if planogram.exists():
        try:
            load_planogram(planogram, {s.id for s in config.shelves.shelf})
        except PlanogramError as exc:
            raise ConfigError(f"checkout.planogram_file: {exc}") from None
    elif deployed:
        checked.warnings.append(f"checkout.planogram_file: {planogram} does not exist: the "
                                "cabinet sells nothing until a planogram is loaded")
    return checked
