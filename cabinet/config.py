"""The cabinet's configuration: one TOML file read into frozen dataclasses.

Every key has a default here (the embedded defaults that `config/cabinet.toml` documents key by key),
a type, and a rule for what is allowed. Loading refuses unknown keys and bad values with one line that
names the file, the `section.key`, the value and what is allowed; nothing is clamped, because a
technician who typed 400 for a 40 s timeout wants to be told, not silently corrected. Validation runs
before any hardware is touched.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .climate import SETPOINT_RANGE

DEFAULT_PATH = Path("/etc/cabinet/cabinet.toml")


class ConfigError(Exception):
    """A configuration problem, phrased as the one line a technician needs to fix it."""


# --- rules: each returns None when the value is allowed, else the sentence saying what is ------------

def _between(low: float, high: float, unit: str = "") -> Callable[[Any], str | None]:
    def rule(value):
        if low <= value <= high:
            return None
        return f"must be between {low:g} and {high:g}{unit}"
    return rule


def _one_of(*choices: str) -> Callable[[Any], str | None]:
    def rule(value):
        return None if value in choices else "must be one of " + ", ".join(repr(c) for c in choices)
    return rule


def _matches(pattern: str, meaning: str) -> Callable[[Any], str | None]:
    compiled = re.compile(pattern)
    def rule(value):
        return None if compiled.fullmatch(value) else f"must be {meaning}"
    return rule


def _gpio_pin(value):
    return None if 0 <= value <= 27 else "must be a BCM GPIO number from 0 to 27"


def _absolute_path(value):
    return None if value.startswith("/") else "must be an absolute path"


def _optional_absolute_path(value):
    return None if value == "" or value.startswith("/") else "must be empty or an absolute path"


def _optional_url(value):
    if value == "" or re.fullmatch(r"https?://[^\s/]+(/\S*)?", value):
        return None
    return "must be empty (no backend) or an http:// or https:// URL"


def _f(default, check=None, **kw):
    return field(default=default, metadata={"check": check}, **kw)


# --- sections ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CabinetSection:
    id: str = _f("cabinet-0001", _matches(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}",
                                          "1-64 letters, digits, '.', '_' or '-'"))
    data_dir: str = _f("/var/lib/cabinet", _absolute_path)
    log_level: str = _f("info", _one_of("debug", "info", "warning", "error"))


@dataclass(frozen=True)
class GpioSection:
    pin_factory: str = _f("lgpio", _one_of("lgpio", "mock"))
    chip: int = _f(0, _between(0, 15))


@dataclass(frozen=True)
class RelaySection:
    pin: int = _f(17, _gpio_pin)
    active_high: bool = _f(True)


@dataclass(frozen=True)
class LockSection:
    pin: int = _f(17, _gpio_pin)
    active_high: bool = _f(True)
    feedback: bool = _f(False)
    feedback_pin: int = _f(5, _gpio_pin)
    feedback_pull_up: bool = _f(True)
    feedback_seconds: float = _f(1.0, _between(0.1, 10, " s"))


@dataclass(frozen=True)
class DoorSection:
    pin: int = _f(27, _gpio_pin)
    pull_up: bool = _f(True)
    bounce_seconds: float = _f(0.05, _between(0, 1, " s"))


@dataclass(frozen=True)
class Rs485Section:
    port: str = _f("/dev/ttyUSB0", _absolute_path)
    baudrate: int = _f(9600, _one_of(1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200))
    parity: str = _f("N", _one_of("N", "E", "O"))
    stopbits: int = _f(1, _one_of(1, 2))
    timeout_seconds: float = _f(0.3, _between(0.05, 5, " s"))


@dataclass(frozen=True)
class ShelfEntry:
    id: int = _f(1, _between(1, 64))
    device_id: int = _f(1, _between(1, 247))
    grams_per_count: float = _f(1.0, _between(0.0001, 1000))
    offset_grams: float = _f(0.0, _between(-100000, 100000, " g"))


def _default_shelves() -> tuple[ShelfEntry, ...]:
    return tuple(ShelfEntry(id=n, device_id=n) for n in (1, 2, 3, 4))


@dataclass(frozen=True)
class ShelvesSection:
    weight_register: int = _f(0, _between(0, 65534))
    register_kind: str = _f("holding", _one_of("holding", "input"))
    value_format: str = _f("int32", _one_of("int32", "int16", "uint16"))
    word_order: str = _f("big", _one_of("big", "little"))
    poll_interval_seconds: float = _f(0.5, _between(0.05, 10, " s"))
    session_poll_interval_seconds: float = _f(0.1, _between(0.02, 10, " s"))
    stable_band_grams: float = _f(3.0, _between(0.1, 500, " g"))
    stable_readings: int = _f(4, _between(2, 50))
    # Of those, how many must be asked for after the door closed; the rest may be from before
    # when they agree (a steady shelf settles in 2 readings, a disturbed one needs the 4).
    fresh_readings: int = _f(2, _between(2, 50))
    shelf: tuple[ShelfEntry, ...] = field(default_factory=_default_shelves,
                                          metadata={"item": ShelfEntry})


@dataclass(frozen=True)
class ThermometerSection:
    kind: str = _f("ds18b20", _one_of("ds18b20", "modbus"))
    w1_base_dir: str = _f("/sys/bus/w1/devices", _absolute_path)
    sensor_id: str = _f("auto", _matches(r"auto|28-[0-9a-f]{12}", "'auto' or a DS18B20 id like 28-0123456789ab"))
    poll_interval_seconds: float = _f(5.0, _between(1, 600, " s"))
    modbus_device_id: int = _f(10, _between(1, 247))
    modbus_register: int = _f(0, _between(0, 65535))
    modbus_celsius_per_count: float = _f(0.1, _between(0.0001, 10))


@dataclass(frozen=True)
class ScannerSection:
    enabled: bool = _f(True)
    port: str = _f("/dev/ttyACM0", _absolute_path)
    baudrate: int = _f(9600, _one_of(9600, 19200, 38400, 57600, 115200))
    max_line_bytes: int = _f(1024, _between(16, 65536))


@dataclass(frozen=True)
class CameraSection:
    enabled: bool = _f(True)
    device: str = _f("/dev/video0", _absolute_path)
    width: int = _f(640, _between(160, 3840))
    height: int = _f(480, _between(120, 2160))
    frames_per_second: float = _f(15.0, _between(0.5, 60))
    read_timeout_seconds: float = _f(2.0, _between(0.1, 30, " s"))
    decode_frames_per_second: float = _f(5.0, _between(0.5, 30))


@dataclass(frozen=True)
class CheckoutSection:
    unlock_timeout_seconds: float = _f(15.0, _between(3, 120, " s"))
    door_open_warning_seconds: float = _f(30.0, _between(5, 600, " s"))
    door_open_alarm_seconds: float = _f(60.0, _between(10, 1200, " s"))
    settle_timeout_seconds: float = _f(10.0, _between(1, 120, " s"))
    shelf_tolerance_grams: float = _f(5.0, _between(0.5, 200, " g"))
    receipt_seconds: float = _f(10.0, _between(3, 120, " s"))
    planogram_file: str = _f("/etc/cabinet/planogram.toml", _absolute_path)


@dataclass(frozen=True)
class ClimateSection:
    setpoint_celsius: float = _f(4.0, _between(*SETPOINT_RANGE, " °C"))
    hysteresis_celsius: float = _f(1.0, _between(0.2, 5, " K"))
    min_off_seconds: float = _f(180.0, _between(60, 900, " s"))
    min_on_seconds: float = _f(150.0, _between(30, 900, " s"))
    start_delay_seconds: float = _f(120.0, _between(0, 900, " s"))
    door_hold_seconds: float = _f(60.0, _between(0, 600, " s"))
    fault_on_seconds: float = _f(300.0, _between(60, 3600, " s"))
    fault_off_seconds: float = _f(600.0, _between(60, 3600, " s"))
    # "perishables": the cold-chain rule (food_safety.py) and its lockout; "none": an ambient
    # zone (drinks, daily goods) whose temperature is kept but never locks anything out.
    food_safety: str = _f("perishables", _one_of("perishables", "none"))
    food_safety_limit_celsius: float = _f(5.0, _between(0, 15, " °C"))
    recovery_minutes: float = _f(30.0, _between(1, 240, " min"))
    excursion_minutes: float = _f(15.0, _between(1, 240, " min"))
    telemetry_interval_seconds: float = _f(60.0, _between(10, 3600, " s"))
    telemetry_change_celsius: float = _f(0.5, _between(0.1, 10, " K"))


@dataclass(frozen=True)
class AccessSection:
    keys_file: str = _f("/etc/cabinet/access-keys.toml", _absolute_path)
    group: str = _f("", _matches(r"[A-Za-z0-9_.-]{0,64}", "empty or 1-64 letters, digits, '.', '_' or '-'"))
    clock_skew_seconds: int = _f(60, _between(0, 600, " s"))
    max_code_lifetime_seconds: int = _f(86400, _between(30, 31 * 86400, " s"))
    clock_trust: str = _f("timesync", _one_of("timesync", "always"))
    repeat_window_seconds: float = _f(3.0, _between(0, 60, " s"))
    phone_url: str = _f("https://backend.invalid/open", _optional_url)
    phone_nonce_seconds: float = _f(60.0, _between(10, 3600, " s"))


@dataclass(frozen=True)
class FaceSection:
    enabled: bool = _f(True)
    key_file: str = _f("/etc/cabinet/face.key", _absolute_path)
    tolerance: float = _f(0.5, _between(0.3, 0.6))
    margin: float = _f(0.08, _between(0, 0.3))
    turn_span: float = _f(0.2, _between(0.1, 0.6))
    attempt_seconds: float = _f(8.0, _between(2, 60, " s"))
    frames_per_second: float = _f(5.0, _between(0.5, 30))
    detect_width: int = _f(640, _between(160, 1920, " px"))
    min_face_pixels: int = _f(80, _between(40, 1000, " px"))
    max_failures: int = _f(3, _between(1, 100))
    failure_window_minutes: float = _f(10.0, _between(1, 1440, " min"))
    pause_minutes: float = _f(15.0, _between(1, 1440, " min"))


@dataclass(frozen=True)
class HttpSection:
    host: str = _f("127.0.0.1", _one_of("127.0.0.1", "::1", "localhost"))
    port: int = _f(8080, _between(0, 65535))


@dataclass(frozen=True)
class ScreenSection:
    default_language: str = _f("zh", _one_of("zh", "bo", "en"))
    elderly_mode: bool = _f(False)
    speech: bool = _f(True)
    speech_rate: int = _f(140, _between(80, 300, " words/min"))
    language_reset_seconds: float = _f(60.0, _between(10, 3600, " s"))


@dataclass(frozen=True)
class SyncSection:
    backend_url: str = _f("", _optional_url)
    device_token_file: str = _f("/etc/cabinet/device-token", _absolute_path)
    ca_file: str = _f("", _optional_absolute_path)
    connect_timeout_seconds: float = _f(5.0, _between(0.5, 60, " s"))
    read_timeout_seconds: float = _f(30.0, _between(1, 300, " s"))
    long_poll_seconds: float = _f(25.0, _between(1, 120, " s"))
    batch_max_records: int = _f(500, _between(1, 10000))
    batch_max_kilobytes: int = _f(1024, _between(16, 16384, " KiB"))
    queue_budget_megabytes: int = _f(200, _between(1, 100000, " MiB"))
    keep_delivered_days: float = _f(7.0, _between(0, 365, " days"))
    offline_alarm_minutes: float = _f(60.0, _between(1, 10080, " min"))


def _shelf_list(value):
    if len(value) != len(set(value)) or not all(1 <= v <= 64 for v in value):
        return "must be a list of distinct shelf ids (1-64)"
    return None


def _door_list(value):
    if not value or len(value) != len(set(value)) or not all(1 <= v <= 8 for v in value):
        return "must be a non-empty list of distinct door ids (1-8)"
    return None


def _label(value):
    return None if len(value) <= 32 and value.isprintable() else \
        "must be at most 32 printable characters"


@dataclass(frozen=True)
class DoorEntry:
    """One door: its lock relay (and feedback contact), its switch, the shelves behind it."""
    id: int = _f(1, _between(1, 8))
    name: str = _f("", _label)
    shelves: tuple[int, ...] = _f((), _shelf_list)
    lock: LockSection = field(default_factory=LockSection)
    switch: DoorSection = field(default_factory=DoorSection)

    @property
    def label(self) -> str:
        return self.name or f"door {self.id}"


@dataclass(frozen=True)
class DoorsSection:
    door: tuple[DoorEntry, ...] = field(default=(), metadata={"item": DoorEntry})


@dataclass(frozen=True)
class ZoneEntry:
    """One temperature zone: its thermometer, compressor and/or heater, its climate settings
    (setpoint and food-safety rule) and the doors whose shelves it holds."""
    id: int = _f(1, _between(1, 8))
    name: str = _f("", _label)
    doors: tuple[int, ...] = _f((1,), _door_list)
    thermometer: ThermometerSection = field(default_factory=ThermometerSection)
    compressor: RelaySection | None = None
    heater: RelaySection | None = None
    climate: ClimateSection = field(default_factory=ClimateSection)

    @property
    def label(self) -> str:
        return self.name or f"zone {self.id}"


def thermometer_device(zone: int, several: bool) -> str:
    """A zone's thermometer as faults and alarms name it: `thermometer` on a one-zone cabinet."""
    return f"thermometer:{zone}" if several else "thermometer"


@dataclass(frozen=True)
class ZonesSection:
    zone: tuple[ZoneEntry, ...] = field(default=(), metadata={"item": ZoneEntry})


def _release_key(value):
    if value == "":
        return None
    from .release import public_key
    try:
        public_key(value)
    except ValueError as exc:
        return f"must be empty (no updates) or {exc}"
    return None


@dataclass(frozen=True)
class UpdatesSection:
    # The release signing key's public half (tools/release.py keygen prints it): a bundle is
    # accepted only when signed by it. Empty: software updates are refused.
    public_key: str = _f("", _release_key)
    # Where the releases' venvs live (venvs/, the `venv` link, update.json: cabinet/supervisor.py).
    install_dir: str = _f("/opt/cabinet", _absolute_path)


@dataclass(frozen=True)
class SimulationSection:
    ambient_celsius: float = _f(20.0, _between(-40, 50, " °C"))
    start_celsius: float = _f(4.0, _between(-40, 50, " °C"))
    tare_grams: float = _f(1500.0, _between(0, 100000, " g"))
    noise_grams: float = _f(0.4, _between(0, 50, " g"))
    creep_grams_per_hour: float = _f(2.0, _between(0, 100, " g/h"))
    settle_seconds: float = _f(1.0, _between(0, 30, " s"))
    load_cell_gain: float = _f(1.0, _between(0.5, 2.0))


@dataclass(frozen=True)
class Config:
    cabinet: CabinetSection = field(default_factory=CabinetSection)
    gpio: GpioSection = field(default_factory=GpioSection)
    lock: LockSection = field(default_factory=LockSection)
    door: DoorSection = field(default_factory=DoorSection)
    compressor: RelaySection = field(default_factory=lambda: RelaySection(pin=22))
    heater: RelaySection = field(default_factory=lambda: RelaySection(pin=23))
    buzzer: RelaySection = field(default_factory=lambda: RelaySection(pin=24))
    rs485: Rs485Section = field(default_factory=Rs485Section)
    shelves: ShelvesSection = field(default_factory=ShelvesSection)
    thermometer: ThermometerSection = field(default_factory=ThermometerSection)
    scanner: ScannerSection = field(default_factory=ScannerSection)
    camera: CameraSection = field(default_factory=CameraSection)
    checkout: CheckoutSection = field(default_factory=CheckoutSection)
    climate: ClimateSection = field(default_factory=ClimateSection)
    access: AccessSection = field(default_factory=AccessSection)
    face: FaceSection = field(default_factory=FaceSection)
    http: HttpSection = field(default_factory=HttpSection)
    screen: ScreenSection = field(default_factory=ScreenSection)
    sync: SyncSection = field(default_factory=SyncSection)
    updates: UpdatesSection = field(default_factory=UpdatesSection)
    simulation: SimulationSection = field(default_factory=SimulationSection)
    doors: DoorsSection = field(default_factory=DoorsSection)
    zones: ZonesSection = field(default_factory=ZonesSection)
    source: str = field(default="<embedded defaults>", compare=False)

    def door_list(self) -> tuple[DoorEntry, ...]:
        """The doors: the [[doors.door]] tables, or the one door of [lock] and [door] with every
        shelf behind it (the simple cabinet, read as a one-door table)."""
        if self.doors.door:
            return self.doors.door
        return (DoorEntry(id=1, shelves=tuple(s.id for s in self.shelves.shelf), lock=self.lock,
                          switch=self.door),)

    def zone_list(self) -> tuple[ZoneEntry, ...]:
        """The zones: the [[zones.zone]] tables, or one zone of [thermometer], [compressor],
        [heater] and [climate] holding every door."""
        if self.zones.zone:
            return self.zones.zone
        return (ZoneEntry(id=1, doors=tuple(d.id for d in self.door_list()),
                          thermometer=self.thermometer, compressor=self.compressor,
                          heater=self.heater, climate=self.climate),)

    @property
    def several_doors(self) -> bool:
        return len(self.door_list()) > 1

    @property
    def several_zones(self) -> bool:
        return len(self.zone_list()) > 1


# --- loading -----------------------------------------------------------------------------------------

_TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def _type_of(cls, name: str) -> type:
    hint = cls.__annotations__[name]
    for py_type in (bool, int, float, str):
        if hint == py_type.__name__:
            return py_type
    raise AssertionError(f"unsupported annotation {hint!r} on {cls.__name__}.{name}")


def _build(cls, table: Any, where: str, source: str):
    def fail(key_path: str, value: Any, allowed: str):
        raise ConfigError(f"{source}: {key_path} = {_show(value)}: {allowed}")

    if not isinstance(table, dict):
        fail(where, table, "must be a table")
    known = {f.name: f for f in dataclasses.fields(cls) if f.name != "source"}
    for key in table:
        if key not in known:
            fail(f"{where}.{key}" if where else key, table[key],
                 "unknown key; known keys here: " + ", ".join(sorted(known)))
    values = {}
    for name, spec in known.items():
        if name not in table:
            continue
        value = table[name]
        key_path = f"{where}.{name}" if where else name
        item_cls = spec.metadata.get("item")
        if item_cls is not None:
            if not isinstance(value, list):
                fail(key_path, value, f"must be an array of tables ([[{key_path}]])")
            values[name] = tuple(_build(item_cls, entry, f"{key_path}[{i}]", source)
                                 for i, entry in enumerate(value))
            continue
        section = spec.type.removesuffix(" | None")
        if section in _SECTION_TYPES:
            values[name] = _build(_SECTION_TYPES[section], value, key_path, source)
            continue
        if spec.type == "tuple[int, ...]":
            if not isinstance(value, list) or not all(
                    isinstance(v, int) and not isinstance(v, bool) for v in value):
                fail(key_path, value, "must be a list of integers")
            problem = spec.metadata["check"](value)
            if problem:
                fail(key_path, value, problem)
            values[name] = tuple(value)
            continue
        py_type = _type_of(cls, name)
        ok = isinstance(value, py_type) and not (py_type is int and isinstance(value, bool))
        if py_type is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            fail(key_path, value, f"must be {_TYPE_NAMES[py_type]}")
        check = spec.metadata.get("check")
        problem = check(value) if check else None
        if problem:
            fail(key_path, value, problem)
        values[name] = value
    return cls(**values)


_SECTION_TYPES = {
    "CabinetSection": CabinetSection, "GpioSection": GpioSection, "RelaySection": RelaySection,
    "LockSection": LockSection,
    "DoorSection": DoorSection, "Rs485Section": Rs485Section, "ShelvesSection": ShelvesSection,
    "ThermometerSection": ThermometerSection, "ScannerSection": ScannerSection,
    "CameraSection": CameraSection, "CheckoutSection": CheckoutSection, "HttpSection": HttpSection,
    "ClimateSection": ClimateSection, "AccessSection": AccessSection,
    "SyncSection": SyncSection, "SimulationSection": SimulationSection,
    "ScreenSection": ScreenSection, "FaceSection": FaceSection,
    "DoorsSection": DoorsSection, "ZonesSection": ZonesSection, "UpdatesSection": UpdatesSection,
}


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        text = repr(value)
        return text if len(text) <= 60 else text[:57] + "..."
    return repr(value)


def parse(text: str, source: str = "<string>") -> Config:
    """Parse and validate TOML text; raise ConfigError with one line on the first problem."""
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    defaults = Config()
    # Relay sections need their own default pins, so start each from the embedded default.
    for name in ("compressor", "heater", "buzzer"):
        if name in table and isinstance(table[name], dict):
            table[name] = {"pin": getattr(defaults, name).pin, **table[name]}
    _prepare_tables(table, source)
    config = _build(Config, table, "", source)
    config = dataclasses.replace(config, source=source)
    _check_across(config)
    _check_doors_and_zones(config)
    return config


def _tables(table: dict, section: str, item: str) -> list[tuple[int, dict]]:
    """The [[section.item]] tables that are tables (anything else is _build's to refuse)."""
    entries = table.get(section, {}).get(item, []) if isinstance(table.get(section), dict) else []
    return [(i, e) for i, e in enumerate(entries if isinstance(entries, list) else [])
            if isinstance(e, dict)]


def _prepare_tables(table: dict, source: str) -> None:
    """Door and zone tables: what each must give, and the top-level sections they replace or
    take their defaults from ([thermometer] and [climate] are every zone's defaults)."""
    doors = _tables(table, "doors", "door")
    if doors:
        for old in ("lock", "door"):
            if old in table:
                raise ConfigError(f"{source}: [{old}] is the one door of a cabinet without "
                                  f"[[doors.door]] tables: move it into each door's "
                                  f"[doors.door.{'switch' if old == 'door' else 'lock'}]")
        for i, entry in doors:
            for part in ("lock", "switch"):
                if not isinstance(entry.get(part), dict) or "pin" not in entry[part]:
                    raise ConfigError(f"{source}: doors.door[{i}].{part}.pin: required: each "
                                      f"door's {part} has a GPIO of its own")
    zones = _tables(table, "zones", "zone")
    if zones:
        for old in ("compressor", "heater"):
            if old in table:
                raise ConfigError(f"{source}: [{old}]: with [[zones.zone]] tables each zone "
                                  f"names its own ([zones.zone.{old}])")
        for i, entry in zones:
            for shared in ("thermometer", "climate"):
                if isinstance(table.get(shared), dict) and isinstance(entry.get(shared, {}), dict):
                    entry[shared] = {**table[shared], **entry.get(shared, {})}
            for part in ("compressor", "heater"):
                if isinstance(entry.get(part), dict) and "pin" not in entry[part]:
                    raise ConfigError(f"{source}: zones.zone[{i}].{part}.pin: required")
            if isinstance(entry, dict) and "compressor" not in entry and "heater" not in entry:
                raise ConfigError(f"{source}: zones.zone[{i}]: a zone needs a compressor, a "
                                  "heater or both ([zones.zone.compressor] with its pin)")


def _check_doors_and_zones(config: Config) -> None:
    """Doors and zones together: every shelf behind one door, every door in one zone, no GPIO
    or sensor used twice, and each zone's setpoint within its own food-safety rule."""
    src = config.source
    if not config.doors.door and not config.zones.zone:
        return  # the simple cabinet: _check_across has said it all
    doors, zones = config.door_list(), config.zone_list()
    shelf_ids = [s.id for s in config.shelves.shelf]
    pins: dict[int, str] = {config.buzzer.pin: "buzzer.pin"}
    behind: dict[int, str] = {}

    def claim(pin: int, what: str) -> None:
        if pin in pins:
            raise ConfigError(f"{src}: {what} = {pin}: already used by {pins[pin]}; each "
                              "device needs its own GPIO")
        pins[pin] = what

    seen: set[int] = set()
    for i, door in enumerate(config.doors.door):
        where = f"doors.door[{i}]"
        if door.id in seen:
            raise ConfigError(f"{src}: {where}.id = {door.id}: door ids must be unique")
        seen.add(door.id)
        if not door.shelves:
            raise ConfigError(f"{src}: {where}.shelves = []: name the shelves behind this door")
        for shelf in door.shelves:
            if shelf not in shelf_ids:
                raise ConfigError(f"{src}: {where}.shelves: no shelf {shelf} "
                                  f"(shelves are {shelf_ids})")
            if shelf in behind:
                raise ConfigError(f"{src}: {where}.shelves: shelf {shelf} is already behind "
                                  f"{behind[shelf]}")
            behind[shelf] = where
        _check_lock_pin(src, f"{where}.lock", door.lock)
        claim(door.lock.pin, f"{where}.lock.pin")
        claim(door.switch.pin, f"{where}.switch.pin")
        if door.lock.feedback:
            claim(door.lock.feedback_pin, f"{where}.lock.feedback_pin")
    if config.doors.door:
        missing = [n for n in shelf_ids if n not in behind]
        if missing:
            raise ConfigError(f"{src}: doors.door: shelves {missing} are behind no door; "
                              "list each shelf in one door's shelves")
        _check_numbered(src, "doors.door", [d.id for d in config.doors.door], "door")
    else:
        _check_lock_pin(src, "lock", config.lock)
        claim(config.lock.pin, "lock.pin")
        claim(config.door.pin, "door.pin")
        if config.lock.feedback:
            claim(config.lock.feedback_pin, "lock.feedback_pin")
    door_ids = [d.id for d in doors]
    held: dict[int, str] = {}
    zone_ids: set[int] = set()
    sensors: dict[str, str] = {}
    boards = {s.device_id: f"shelves.shelf[{i}]" for i, s in enumerate(config.shelves.shelf)}
    tables = bool(config.zones.zone)
    for i, zone in enumerate(zones):
        where = f"zones.zone[{i}]" if tables else ""
        dot = f"{where}." if tables else ""
        if zone.id in zone_ids:
            raise ConfigError(f"{src}: {where}.id = {zone.id}: zone ids must be unique")
        zone_ids.add(zone.id)
        for door in zone.doors:
            if door not in door_ids:
                raise ConfigError(f"{src}: {where}.doors: no door {door} (doors are {door_ids})")
            if door in held:
                raise ConfigError(f"{src}: {where}.doors: door {door} is already in {held[door]}")
            held[door] = where
        for part in ("compressor", "heater"):
            relay = getattr(zone, part)
            if relay is not None:
                claim(relay.pin, f"{dot}{part}.pin")
        t = zone.thermometer
        if t.kind == "ds18b20":
            if t.sensor_id == "auto" and len(zones) > 1:
                raise ConfigError(f"{src}: {dot}thermometer.sensor_id = 'auto': with several "
                                  "zones each names its DS18B20 (ls /sys/bus/w1/devices)")
            key = f"ds18b20 {t.sensor_id}"
        else:
            if t.modbus_device_id in boards:
                raise ConfigError(f"{src}: {dot}thermometer.modbus_device_id = "
                                  f"{t.modbus_device_id}: already used by "
                                  f"{boards[t.modbus_device_id]} on the same RS485 bus")
            key = f"modbus {t.modbus_device_id}"
        if key in sensors:
            raise ConfigError(f"{src}: {dot}thermometer: the same sensor as {sensors[key]}")
        sensors[key] = where
        _check_band(src, f"{dot}climate", zone.climate)
    missing = [n for n in door_ids if n not in held]
    if missing:
        raise ConfigError(f"{src}: zones.zone: doors {missing} are in no zone; list each "
                          "door in one zone's doors")
    if tables:
        _check_numbered(src, "zones.zone", [z.id for z in zones], "zone")
        first = next(z for z in zones if z.id == 1)
        if first.climate.food_safety != "perishables" and any(
                z.climate.food_safety == "perishables" for z in zones):
            # Zone 1 is the cabinet's own temperature (the fleet page, the one-zone cabinet's
            # stored setpoint and lockout): it must be the zone whose cold chain matters.
            raise ConfigError(f"{src}: zones.zone: zone 1 has food_safety = "
                              f"{first.climate.food_safety!r}: number the zone that holds "
                              "perishables 1")


def _check_numbered(src: str, where: str, ids: list[int], what: str) -> None:
    """Doors and zones are numbered 1..N, as the screen, the alarms and the backend name them."""
    if sorted(ids) != list(range(1, len(ids) + 1)):
        raise ConfigError(f"{src}: {where}: {what} ids are {sorted(ids)}: number them 1 to "
                          f"{len(ids)}")


def _check_lock_pin(src: str, where: str, lock: LockSection) -> None:
    # At power-up GPIO 0-8 are pulled up and 9-27 pulled down; the lock must read "de-energised"
    # while the Pi boots and before this daemon drives the pin.
    if lock.active_high and lock.pin <= 8:
        raise ConfigError(f"{src}: {where}.pin = {lock.pin}: an active-high lock relay needs a "
                          "pin pulled down at boot (GPIO 9-27), or the lock opens while the Pi "
                          "boots")
    if not lock.active_high and lock.pin >= 9:
        raise ConfigError(f"{src}: {where}.pin = {lock.pin}: an active-low lock relay needs a "
                          "pin pulled up at boot (GPIO 0-8), or the lock opens while the Pi boots")


def _check_band(src: str, where: str, k: ClimateSection) -> None:
    if k.food_safety == "perishables" and \
            k.setpoint_celsius + k.hysteresis_celsius / 2 >= k.food_safety_limit_celsius:
        raise ConfigError(f"{src}: {where}.setpoint_celsius = {k.setpoint_celsius:g}: with "
                          f"hysteresis {k.hysteresis_celsius:g} K the cabinet would run above "
                          f"{where}.food_safety_limit_celsius ({k.food_safety_limit_celsius:g})")


def load(path: Path | str) -> Config:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    return parse(text, str(path))


def _check_across(config: Config) -> None:
    """Rules that involve more than one key."""
    src = config.source
    if config.doors.door or config.zones.zone:
        _check_across_shelves(config)
        return
    pins: dict[int, str] = {}
    used = [(name, "pin", getattr(config, name).pin)
            for name in ("lock", "door", "compressor", "heater", "buzzer")]
    if config.lock.feedback:
        used.append(("lock", "feedback_pin", config.lock.feedback_pin))
    for name, key, pin in used:
        if pin in pins:
            raise ConfigError(f"{src}: {name}.{key} = {pin}: already used by {pins[pin]}; "
                              "each device needs its own GPIO")
        pins[pin] = f"{name}.{key}"
    _check_lock_pin(src, "lock", config.lock)
    _check_across_shelves(config)
    t = config.thermometer
    seen_devices = {s.device_id: f"shelves.shelf[{i}]" for i, s in enumerate(config.shelves.shelf)}
    if t.kind == "modbus" and t.modbus_device_id in seen_devices:
        raise ConfigError(f"{src}: thermometer.modbus_device_id = {t.modbus_device_id}: "
                          f"already used by {seen_devices[t.modbus_device_id]} on the same RS485 bus")
    _check_band(src, "climate", config.climate)


def _check_across_shelves(config: Config) -> None:
    src = config.source
    seen_ids: set[int] = set()
    seen_devices: dict[int, str] = {}
    for i, shelf in enumerate(config.shelves.shelf):
        if shelf.id in seen_ids:
            raise ConfigError(f"{src}: shelves.shelf[{i}].id = {shelf.id}: shelf ids must be unique")
        seen_ids.add(shelf.id)
        if shelf.device_id in seen_devices:
            raise ConfigError(f"{src}: shelves.shelf[{i}].device_id = {shelf.device_id}: "
                              f"already used by {seen_devices[shelf.device_id]}")
        seen_devices[shelf.device_id] = f"shelves.shelf[{i}]"
    if not config.shelves.shelf:
        raise ConfigError(f"{src}: shelves.shelf = []: at least one shelf is required")
    if config.shelves.fresh_readings > config.shelves.stable_readings:
        raise ConfigError(f"{src}: shelves.fresh_readings = {config.shelves.fresh_readings}: "
                          f"must not exceed shelves.stable_readings "
                          f"({config.shelves.stable_readings}), the window they are part of")
    c = config.checkout
    if c.door_open_alarm_seconds <= c.door_open_warning_seconds:
        raise ConfigError(f"{src}: checkout.door_open_alarm_seconds = {c.door_open_alarm_seconds:g}: "
                          f"must be greater than checkout.door_open_warning_seconds "
                          f"({c.door_open_warning_seconds:g})")


def read_secret(path: Path | str, what: str) -> str:
    """Read a secret file that must be private to its owner (mode 0600 or stricter)."""
    path = Path(path)
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} file missing") from None
    if mode & 0o077:
        raise ConfigError(f"{path}: {what} file has mode {mode:04o}; it must be 0600 "
                          f"(run: chmod 600 {path})")
    try:
        value = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: {what} file cannot be read: {exc}") from None
    if not value:
        raise ConfigError(f"{path}: {what} file is empty")
    return value
