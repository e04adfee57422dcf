"""The protocol, stated once: the pydantic models every request and reply is read and written with.

The OpenAPI document (backend/openapi.json, committed) is generated from these models and the
routers; the cabinet's own client (cabinet/sync_protocol.py) is checked against that document by
tests/test_daemon_sync.py. Times are UTC ISO-8601, money integer fen, weights grams.

Numbers are strict: a float field refuses NaN and Infinity, an integer field refuses what does not
fit PostgreSQL's BIGINT, and either answer is a 422 naming the field (backend/strict_json.py reads
the body so that NaN never reaches a model).
"""

from __future__ import annotations

from datetime import datetime, timezone
from enum import Enum
from typing import Annotated, Any, Literal

from pydantic import (AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field,
                      StringConstraints, model_validator)

BIGINT_MAX = 2 ** 63 - 1
# Bounds on a sale, far above any real one, so that no sum of them overflows a BIGINT rollup:
# 100 million yuan a line, a million of one product, ten thousand lines.
MAX_FEN, MAX_COUNT, MAX_LINES = 10 ** 10, 10 ** 6, 10 ** 4
SKU = r"^[A-Za-z0-9._-]{1,64}$"   # as the cabinet's planogram allows (cabinet/planogram.py)
Sku = Annotated[str, StringConstraints(pattern=SKU)]


def _utc_moment(value: datetime) -> datetime:
    """A period's end as a time this backend can compute with: in UTC, with a day to spare."""
    try:
        utc = value.astimezone(timezone.utc)
    except OverflowError:
        raise ValueError("is outside the years 1-9999 in UTC") from None
    if not 1 < utc.year < 9999:
        raise ValueError("must fall in the years 2 to 9998")
    return value


Moment = Annotated[AwareDatetime, AfterValidator(_utc_moment)]
CABINET_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
CabinetId = Annotated[str, StringConstraints(pattern=CABINET_ID)]
Seq = Annotated[int, Field(ge=1, le=BIGINT_MAX, strict=True)]
Uuid = Annotated[str, StringConstraints(
    pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]


def _zoned(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("a time needs its zone (Z or +08:00)")
    return value


ZonedTime = Annotated[datetime, AfterValidator(_zoned)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class RecordKind(str, Enum):
    sale = "sale"
    inventory = "inventory"
    session = "session"
    alarm = "alarm"
    telemetry = "telemetry"
    setpoint = "setpoint"
    food_safety = "food_safety"
    command_result = "command_result"
    notice = "notice"
    calibration = "calibration"
    planogram = "planogram"
    layout = "layout"
    voice_pack = "voice_pack"
    update = "update"


class CommandType(str, Enum):
    set_setpoint = "set_setpoint"
    set_planogram = "set_planogram"
    remote_unlock = "remote_unlock"
    restock_mode = "restock_mode"
    enroll_faces = "enroll_faces"
    delete_faces = "delete_faces"
    set_ads = "set_ads"
    set_voice_pack = "set_voice_pack"
    update_software = "update_software"
    request_diagnostics = "request_diagnostics"
    restart = "restart"
    end_session = "end_session"
    clear_alarm = "clear_alarm"
    clear_lockout = "clear_lockout"


class CommandStatus(str, Enum):
    issued = "issued"
    done = "done"
    rejected = "rejected"
    failed = "failed"
    unsupported = "unsupported"
    interrupted = "interrupted"
    expired = "expired"


# --- the cabinet side ---------------------------------------------------------------------------

class Record(BaseModel):
    """One outbox record. A record the backend cannot store is rejected on its own (the reply's
    `rejected`), never the batch: the cabinet moves it to its dead-letter table and goes on."""
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)
    record_id: Uuid
    seq: Seq = Field(description="cabinet-wide, strictly increasing")
    kind: RecordKind
    cabinet_id: CabinetId
    software_version: Annotated[str, StringConstraints(max_length=64)]
    created_at: ZonedTime
    body: dict[str, Any] = Field(description="the kind's content; see docs/sync.md")


class SeqOnly(BaseModel):
    """What a batch's records must all have even when malformed: the sequence the reply names."""
    model_config = ConfigDict(extra="allow")
    seq: Seq


class Batch(Strict):
    cabinet_id: CabinetId
    max_command_bytes: Annotated[int, Field(ge=0, le=BIGINT_MAX)] | None = Field(
        None, description="the most bytes of commands the acknowledgement may carry (0: none)")
    records: list[SeqOnly] = Field(
        min_length=1, max_length=10000,
        json_schema_extra={"items": {"$ref": "#/components/schemas/Record"}},
        description="each checked on its own: one the backend cannot store is listed in "
                    "`rejected` and the others are stored")


class Rejected(BaseModel):
    seq: int
    record_id: str
    reason: str


class Command(BaseModel):
    command_id: Uuid
    seq: int = Field(description="the backend's order, for the long-poll's `after`")
    type: CommandType
    args: dict[str, Any] = Field(description="per type: see docs/sync.md")
    issued_at: str
    expires_at: str


class Ack(BaseModel):
    stored_through: int
    rejected: list[Rejected]
    commands: list[Command]
    server_time: str


class CommandPage(BaseModel):
    commands: list[Command]
    server_time: str


class Enrol(Strict):
    cabinet_id: CabinetId
    enrolment_token: Annotated[str, StringConstraints(min_length=1, max_length=200)]


class DeviceToken(BaseModel):
    cabinet_id: str
    device_token: str


# --- the operator side --------------------------------------------------------------------------

class Error(BaseModel):
    """Every error: a sentence saying what was wrong; `fields` for a request that did not
    validate (each with its place, e.g. body.records.3.body.celsius)."""
    error: str
    fields: list[dict[str, Any]] | None = None


class NewCabinet(Strict):
    cabinet_id: CabinetId


class Enrolment(BaseModel):
    cabinet_id: str
    enrolment_token: str
    expires_at: str


class AlarmView(BaseModel):
    kind: str
    detail: str
    raised_at: str | None


class CabinetStatus(BaseModel):
    cabinet_id: str
    last_seen_at: str | None
    last_seq: int
    lag_seconds: float | None = Field(
        description="age of the oldest record in the last batch when it arrived")
    temperature_celsius: float | None
    temperature_at: str | None
    setpoint_celsius: float | None = Field(description="as the newest telemetry reported it")
    last_sale_at: str | None
    software_version: str | None
    alarms: list[AlarmView]
    sold_out: list[str] = Field(description="products counted at none left")


class ClimateHour(BaseModel):
    hour: str
    samples: int
    celsius_min: float | None
    celsius_max: float | None
    celsius_mean: float | None
    door_openings: int


class ClimateHours(BaseModel):
    hours: list[ClimateHour]


class LayoutDoor(BaseModel):
    door: int | None
    name: str
    shelves: list[int] = Field(description="the shelves behind this door")


class LayoutZone(BaseModel):
    zone: int | None
    name: str
    doors: list[int] = Field(description="the doors whose shelves this zone holds")
    food_safety_rule: str = Field(description="perishables (the cold-chain lockout) or none")
    compressor: bool
    heater: bool
    temperature_celsius: float | None = Field(description="the zone's newest reading")
    setpoint_celsius: float | None
    temperature_at: str | None


class Layout(BaseModel):
    doors: list[LayoutDoor] = Field(description="empty: one door (never reported)")
    zones: list[LayoutZone] = Field(description="empty: one zone (never reported)")
    reported_at: str | None


class AlarmEntry(AlarmView):
    cleared_at: str | None


class AlarmHistory(BaseModel):
    alarms: list[AlarmEntry] = Field(description="newest first")


class CabinetList(BaseModel):
    cabinets: list[CabinetStatus]


class RecordList(BaseModel):
    records: list[Record]


class Counts(BaseModel):
    counts: dict[str, int]


class DaySales(BaseModel):
    day: str = Field(description="YYYY-MM-DD in the summary's zone")
    revenue_fen: int
    units: int


class HourSales(BaseModel):
    hour: int = Field(ge=0, le=23, description="the hour of the day in the summary's zone")
    revenue_fen: int
    units: int


class ProductSales(BaseModel):
    sku: str
    revenue_fen: int
    units: int
    sales: int = Field(description="sales with this product in them")


class CabinetSales(BaseModel):
    cabinet_id: str
    revenue_fen: int
    units: int


class SalesSummary(BaseModel):
    since: str
    until: str
    tz: str
    revenue_fen: int
    units: int
    by_day: list[DaySales]
    by_hour_of_day: list[HourSales] = Field(description="24 entries, midnight first")
    weekday_hour_revenue_fen: list[list[int]] = Field(
        description="the heat map: 7 rows (Monday first) of 24 hours' revenue")
    by_product: list[ProductSales] = Field(description="top sellers (by revenue) first")
    by_cabinet: list[CabinetSales] = Field(description="by revenue, highest first")


def _storable(value: Any) -> Any:
    """No NUL character and no half surrogate pair in any string or key (PostgreSQL's jsonb
    holds neither; the cabinet's records are checked the same way)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                raise ValueError("a string holds a NUL character (\\u0000)")
            try:
                item.encode()
            except UnicodeEncodeError:
                raise ValueError("a string holds a lone UTF-16 surrogate, not a character") \
                    from None
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return value


class IssueCommand(Strict):
    type: CommandType
    args: Annotated[dict[str, Any], AfterValidator(_storable)] = Field(default_factory=dict)
    lifetime_seconds: Annotated[float, Field(ge=1, le=7 * 86400)] = 60


class CommandList(BaseModel):
    commands: list["CommandState"] = Field(description="newest first")


class CommandState(BaseModel):
    command_id: str
    cabinet_id: str
    type: CommandType
    args: dict[str, Any] = Field(description="as issued; bulky ones (faces, large planograms) "
                                 "summarised as in the audit log")
    status: CommandStatus
    detail: str | None
    result: dict[str, Any] | None
    issued_by: str | None
    issued_at: str
    expires_at: str
    delivered_at: str | None
    finished_at: str | None


class FaceEnrolment(Strict):
    member_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,99}$")]
    consent: bool = Field(description="must be true (the member agreed); false is refused")
    photos: list[str] = Field(min_length=1, max_length=5,
                              description="base64 JPEG or PNG photographs")


class AccessCodeRequest(Strict):
    audience: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    subject: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    role: Literal["shopper", "technician"] = "shopper"
    lifetime_seconds: Annotated[int, Field(ge=10, le=86400)] = 90


class AccessCode(BaseModel):
    code: str
    key_id: int
    issued_at: str
    expires_at: str
    qr_svg: str = Field(description="the code as a QR (SVG), to print or show on a phone")


# --- people ---------------------------------------------------------------------------------------

class Role(str, Enum):
    admin = "admin"          # everything, users too
    operator = "operator"    # the fleet: commands, planograms, prices, cabinets, codes
    technician = "technician"  # service commands (unlock, restock, clear, end a session)
    viewer = "viewer"        # reads only


Username = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")]
Password = Annotated[str, StringConstraints(min_length=10, max_length=200)]


class Login(Strict):
    username: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    password: Annotated[str, StringConstraints(min_length=1, max_length=200)]


class NewUser(Strict):
    username: Username
    role: Role
    password: Password


class UserChange(Strict):
    role: Role | None = None
    password: Password | None = None
    disabled: bool | None = None


class User(BaseModel):
    username: str
    role: Role
    disabled: bool
    created_at: str


class Me(User):
    permissions: list[str] = Field(description="what this role may do (backend/roles.py): the "
                                   "back office shows only the actions it may take")
    commands: list[CommandType] = Field(description="the command types this role may issue")


class UserList(BaseModel):
    users: list[User]


class NewToken(Strict):
    name: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    lifetime_days: Annotated[int, Field(ge=1, le=3650)] | None = None


class Token(BaseModel):
    """A bearer token, shown once: a login's (hours) or a script's API token (named)."""
    token: str
    username: str
    role: Role
    kind: Literal["session", "api"]
    name: str | None
    expires_at: str | None


class AuditEntry(BaseModel):
    at: str
    actor: str
    action: str
    cabinet_id: str | None
    detail: dict[str, Any]


class AuditList(BaseModel):
    entries: list[AuditEntry]


# --- stock, pick lists, reviews and adjustments (the back office) ------------------------------


class ProductStock(BaseModel):
    cabinet_id: str
    sku: str
    shelf: int | None
    name_zh: str | None
    name_en: str | None
    price_fen: int | None = Field(description="from the newest sale line or applied planogram")
    count: int | None = Field(description="units now on the shelf by the backend's reckoning "
                              "(the newest snapshot less sales and adjustments since); null: "
                              "never counted")
    counted_at: str | None = Field(description="when the newest snapshot was taken")
    par: int | None = Field(description="the level a restock fills to (the operator's)")
    per_day: float = Field(description="units sold a day over the last 14 days")


class PlanogramReport(BaseModel):
    cabinet_id: str
    version: str | None
    document: dict[str, Any] = Field(description="as the cabinet holds it: products (sku, "
                                     "names, price_fen, unit_grams, tolerance_grams, "
                                     "perishable) and shelves (id, stock)")
    reason: str | None = Field(description="start (reported at every start) or replaced")
    reported_at: str


class StockList(BaseModel):
    products: list[ProductStock]


class ParLevels(Strict):
    pars: dict[Sku, Annotated[int, Field(ge=0, le=100000)] | None] = Field(
        min_length=1, max_length=500, description="sku -> par level (null: none)")


class PickLine(ProductStock):
    expected_sales: float | None = Field(description="units expected to sell before the visit")
    bring: int | None = Field(description="units to bring to reach par at the visit; null: "
                              "never counted, count it on site")


class PickList(BaseModel):
    days_ahead: float
    lines: list[PickLine] = Field(description="by cabinet, then shelf")


class AdjustmentLine(Strict):
    sku: Sku
    count: Annotated[int, Field(ge=0, le=MAX_COUNT)]
    unit_price_fen: Annotated[int, Field(ge=0, le=MAX_FEN)]

    @model_validator(mode="after")
    def _within_a_sale_s_bounds(self):
        # As a sale's line is bounded (so no sum of them overflows a rollup).
        if self.count * self.unit_price_fen > MAX_FEN:
            raise ValueError(f"count x unit_price_fen is at most {MAX_FEN} fen a line")
        return self


class Resolution(Strict):
    action: Literal["lines", "void", "refund", "accept"] = Field(
        description="lines: what was really taken (priced); void: nothing was taken; refund: "
        "taken, the money returned; accept: the record stands (the only one for an "
        "unauthorised removal)")
    lines: list[AdjustmentLine] = Field(default_factory=list, max_length=100)
    note: Annotated[str, StringConstraints(max_length=500)] = ""

    @model_validator(mode="after")
    def _lines_only_with_lines(self):
        if self.action != "lines" and self.lines:
            raise ValueError(f"lines are given only with action 'lines', not {self.action!r}")
        return self


class Adjustment(BaseModel):
    adjustment_id: int
    cabinet_id: str
    record_id: str
    action: str
    lines: list[dict[str, Any]]
    revenue_delta_fen: int
    units_delta: int
    note: str
    made_by: str
    made_at: str


class Review(BaseModel):
    cabinet_id: str
    record_id: str
    kind: Literal["sale", "inventory"]
    reason: str = Field(description="the flags' kinds, or 'unauthorised removal'")
    created_at: str
    resolved_at: str | None
    record: Record
    adjustment: Adjustment | None


class ReviewList(BaseModel):
    reviews: list[Review]
    open: int = Field(description="open reviews in the whole fleet")


# --- alerts -----------------------------------------------------------------------------------
HHMM = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"


def _zone(name: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (e.g. Asia/Shanghai)") from None
    return name


EMAIL = r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63})+$"


def _webhook_url(url: str | None) -> str | None:
    """An http(s) URL with a host, as the sender will parse it."""
    if url is None:
        return None
    from urllib3.util import parse_url
    from urllib3.exceptions import LocationParseError
    try:
        parsed = parse_url(url)
    except LocationParseError:
        raise ValueError(f"{url[:100]!r} is not a URL") from None
    if parsed.scheme not in ("http", "https") or not parsed.host or ".." in parsed.host \
            or any(c.isspace() for c in url):
        raise ValueError(f"{url[:100]!r}: an http(s) URL with a host is expected")
    return url


class NewAlertRule(Strict):
    kind: Literal["offline", "temperature", "lockout", "forced_open", "unauthorised",
                  "sold_out", "no_sales"]
    minutes: Annotated[float, Field(ge=0, le=7 * 24 * 60, allow_inf_nan=False)] = Field(
        15, description="how long the condition holds before the alert fires (offline, "
        "no_sales: how long without contact or sales)")
    band_celsius: Annotated[float, Field(gt=0, le=30, allow_inf_nan=False)] = Field(
        2.0, description="temperature: how far from the setpoint is outside the band")
    cabinet_id: Annotated[str | None, StringConstraints(pattern=CABINET_ID)] = Field(
        None, description="one cabinet, or none for every cabinet")
    emails: list[Annotated[str, StringConstraints(pattern=EMAIL)]] = Field(
        default_factory=list, max_length=20)
    webhook_url: Annotated[str | None, StringConstraints(max_length=2000),
                           AfterValidator(_webhook_url)] = None
    quiet_start: Annotated[str | None, StringConstraints(pattern=HHMM)] = Field(
        None, description="HH:MM in tz: deliveries wait until quiet_end")
    quiet_end: Annotated[str | None, StringConstraints(pattern=HHMM)] = None
    tz: Annotated[str, StringConstraints(max_length=64), AfterValidator(_zone)] = "Asia/Shanghai"

    @model_validator(mode="after")
    def _deliverable(self):
        if not self.emails and not self.webhook_url:
            raise ValueError("give emails, a webhook_url, or both: a rule must reach someone")
        if (self.quiet_start is None) != (self.quiet_end is None):
            raise ValueError("quiet hours need both quiet_start and quiet_end")
        if self.quiet_start is not None and self.quiet_start == self.quiet_end:
            raise ValueError("quiet_start and quiet_end are the same time: say which hours")
        return self


class AlertRule(BaseModel):
    rule_id: int
    kind: str
    minutes: float
    band_celsius: float
    cabinet_id: str | None
    emails: list[str]
    webhook_url: str | None
    quiet_start: str | None
    quiet_end: str | None
    tz: str
    created_by: str
    created_at: str
    webhook_secret: str | None = Field(None, description="the webhook's HMAC key: only in the "
                                       "reply that created the rule")


class AlertRuleList(BaseModel):
    rules: list[AlertRule]


class Delivery(BaseModel):
    event: Literal["fired", "resolved"]
    channel: Literal["email", "webhook"]
    target: str
    status: Literal["pending", "sent", "failed"]
    attempts: int
    last_error: str | None
    sent_at: str | None
    next_attempt_at: str | None


class Alert(BaseModel):
    alert_id: int
    rule_id: int
    kind: str
    cabinet_id: str
    state: Literal["firing", "resolved"]
    detail: str
    since: str
    fired_at: str | None
    resolved_at: str | None
    deliveries: list[Delivery]


class AlertList(BaseModel):
    alerts: list[Alert]


# --- ads --------------------------------------------------------------------------------------
AD_TYPES = ("image/png", "image/jpeg", "image/webp", "video/mp4", "video/webm")


class AdFile(BaseModel):
    sha256: str
    name: str
    content_type: str
    bytes: int
    uploaded_by: str
    uploaded_at: str
    url_path: str = Field(description="where cabinets fetch it, under this backend's address")


class AdList(BaseModel):
    ads: list[AdFile]
