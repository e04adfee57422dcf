"""The backend's tables (SQLAlchemy Core), the same on PostgreSQL and SQLite. Alembic's migrations
(backend/migrations) create and change them; tests/test_backend_storage.py checks that the
migrated database and this metadata agree.

Times are `timestamp with time zone` in UTC. Records are unique on (cabinet_id, record_id): a
resent batch stores nothing twice. The hourly rollups are written in the batch's transaction.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

metadata = sa.MetaData()
Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
Time = sa.DateTime(timezone=True)

cabinets = sa.Table(
    "cabinets", metadata,
    sa.Column("cabinet_id", sa.String(64), primary_key=True),
    sa.Column("token_sha256", sa.String(64), nullable=False),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("last_seen_at", Time),
    sa.Column("last_seq", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("lag_seconds", sa.Float),
    sa.Column("temperature_celsius", sa.Float),
    sa.Column("temperature_at", Time),
    sa.Column("software_version", sa.String(64)),
    sa.Column("setpoint_celsius", sa.Float),      # from the newest telemetry (0002)
    sa.Column("last_sale_at", Time),              # the newest sale's created_at (0002)
)

records = sa.Table(
    "records", metadata,
    sa.Column("cabinet_id", sa.String(64), primary_key=True),
    sa.Column("record_id", sa.String(36), primary_key=True),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("received_at", Time, nullable=False),
    sa.Column("record", Json, nullable=False),
    sa.Index("records_by_kind", "kind", "cabinet_id", "seq"),
    sa.Index("records_by_time", "kind", "created_at"),
)

alarms = sa.Table(
    "alarms", metadata,
    sa.Column("cabinet_id", sa.String(64), primary_key=True),
    sa.Column("alarm_id", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("raised_at", sa.String(40)),
    sa.Column("cleared_at", sa.String(40)),
)

commands = sa.Table(
    "commands", metadata,
    sa.Column("command_seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"),
              primary_key=True, autoincrement=True),
    sa.Column("command_id", sa.String(36), nullable=False, unique=True),
    sa.Column("cabinet_id", sa.String(64), nullable=False),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("args", Json, nullable=False),
    sa.Column("args_bytes", sa.Integer, nullable=False),
    sa.Column("issued_by", sa.String(64)),
    sa.Column("issued_at", Time, nullable=False),
    sa.Column("expires_at", Time, nullable=False),
    sa.Column("delivered_at", Time),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("detail", sa.Text),
    sa.Column("result", Json),
    sa.Column("finished_at", Time),
    sa.Index("commands_pending", "cabinet_id", "status", "command_seq"),
)

enrolments = sa.Table(
    "enrolments", metadata,
    sa.Column("token_sha256", sa.String(64), primary_key=True),
    sa.Column("cabinet_id", sa.String(64), nullable=False),
    sa.Column("expires_at", Time, nullable=False),
    sa.Column("used_at", Time),
)

users = sa.Table(
    "users", metadata,
    sa.Column("username", sa.String(64), primary_key=True),
    sa.Column("password_hash", sa.Text, nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created_at", Time, nullable=False),
)

tokens = sa.Table(
    "tokens", metadata,
    sa.Column("token_sha256", sa.String(64), primary_key=True),
    sa.Column("username", sa.String(64), sa.ForeignKey("users.username", ondelete="CASCADE"),
              nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),       # session | api
    sa.Column("name", sa.String(64)),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("expires_at", Time),
    sa.Column("last_used_at", Time),
)

login_failures = sa.Table(
    "login_failures", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
              autoincrement=True),
    sa.Column("username", sa.String(64), nullable=False),
    sa.Column("address", sa.String(64), nullable=False),
    sa.Column("at", Time, nullable=False),
    sa.Index("login_failures_recent", "username", "at"),
)

audit = sa.Table(
    "audit", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
              autoincrement=True),
    sa.Column("at", Time, nullable=False),
    sa.Column("actor", sa.String(64), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("cabinet_id", sa.String(64)),
    sa.Column("detail", Json, nullable=False),
    sa.Index("audit_by_time", "at"),
)

# Hourly rollups for the back office's charts, kept in the batch's transaction.
sales_hourly = sa.Table(
    "sales_hourly", metadata,
    sa.Column("cabinet_id", sa.String(64), primary_key=True),
    sa.Column("hour", Time, primary_key=True),
    sa.Column("sku", sa.String(64), primary_key=True),
    sa.Column("units", sa.BigInteger, nullable=False),
    sa.Column("revenue_fen", sa.BigInteger, nullable=False),
    sa.Column("sales", sa.BigInteger, nullable=False),  # sales with this product in them
    sa.Index("sales_hourly_by_hour", "hour"),              # (0006) the fleet's short periods
)

climate_hourly = sa.Table(
    "climate_hourly", metadata,
    sa.Column("cabinet_id", sa.String(64), primary_key=True),
    sa.Column("hour", Time, primary_key=True),
    sa.Column("samples", sa.BigInteger, nullable=False),
    sa.Column("celsius_min", sa.Float),
    sa.Column("celsius_max", sa.Float),
    sa.Column("celsius_sum", sa.Float, nullable=False),
    sa.Column("door_openings", sa.BigInteger, nullable=False),
)

# What each cabinet holds (0003): a row per product seen at the cabinet, its shelf, name and
# price from the newest sale line or planogram, its count (null: never counted) from the newest
# stock snapshot (a restock's or unauthorised removal's inventory record, an applied planogram)
# less what was sold and adjusted since, and the operator's par level.
cabinet_products = sa.Table(
    "cabinet_products", metadata,
    sa.Column("cabinet_id", sa.String(64), primary_key=True),
    sa.Column("sku", sa.String(64), primary_key=True),
    sa.Column("shelf", sa.Integer),
    sa.Column("name_zh", sa.String(200)),
    sa.Column("name_en", sa.String(200)),
    sa.Column("price_fen", sa.BigInteger),
    sa.Column("count", sa.BigInteger),
    sa.Column("counted_at", Time),
    sa.Column("par", sa.Integer),
)

# Records a person must look at (0003): sales the cabinet flagged and unauthorised removals.
reviews = sa.Table(
    "reviews", metadata,
    sa.Column("cabinet_id", sa.String(64), primary_key=True),
    sa.Column("record_id", sa.String(36), primary_key=True),
    sa.Column("kind", sa.String(32), nullable=False),        # sale | inventory
    sa.Column("reason", sa.String(200), nullable=False),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("resolved_at", Time),
    sa.Column("adjustment_id", sa.BigInteger),
    # Partial: the open ones, oldest first, without sorting the resolved thousands.
    sa.Index("reviews_open", "created_at", postgresql_where=sa.text("resolved_at IS NULL"),
             sqlite_where=sa.text("resolved_at IS NULL")),
)

# The operators' corrections (0003), never an edit of the record they correct: what was really
# taken (lines), a void (nothing was taken) or a refund (taken, money returned), with the
# change in revenue and units they make and who made them.
adjustments = sa.Table(
    "adjustments", metadata,
    sa.Column("adjustment_id", sa.BigInteger().with_variant(sa.Integer, "sqlite"),
              primary_key=True, autoincrement=True),
    sa.Column("cabinet_id", sa.String(64), nullable=False),
    sa.Column("record_id", sa.String(36), nullable=False),
    sa.Column("action", sa.String(16), nullable=False),      # lines | void | refund | accept
    sa.Column("lines", Json, nullable=False),
    sa.Column("revenue_delta_fen", sa.BigInteger, nullable=False),
    sa.Column("units_delta", sa.BigInteger, nullable=False),
    sa.Column("note", sa.Text, nullable=False),
    sa.Column("made_by", sa.String(64), nullable=False),
    sa.Column("made_at", Time, nullable=False),
    sa.Index("adjustments_by_time", "made_at"),
    sa.Index("adjustments_by_record", "cabinet_id", "record_id", unique=True),
)

# Alerts (0004): the operators' rules, each alert's life (pending while its condition has held
# less than the rule's minutes, firing, resolved) and its deliveries by email and webhook.
alert_rules = sa.Table(
    "alert_rules", metadata,
    sa.Column("rule_id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
              autoincrement=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("minutes", sa.Float, nullable=False),
    sa.Column("band_celsius", sa.Float, nullable=False),
    sa.Column("cabinet_id", sa.String(64)),                   # null: every cabinet
    sa.Column("emails", Json, nullable=False),
    sa.Column("webhook_url", sa.Text),
    sa.Column("webhook_secret", sa.String(64)),
    sa.Column("quiet_start", sa.String(5)),                   # HH:MM in tz, or null
    sa.Column("quiet_end", sa.String(5)),
    sa.Column("tz", sa.String(64), nullable=False),
    sa.Column("created_by", sa.String(64), nullable=False),
    sa.Column("created_at", Time, nullable=False),
)

alerts = sa.Table(
    "alerts", metadata,
    sa.Column("alert_id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
              autoincrement=True),
    sa.Column("rule_id", sa.BigInteger, nullable=False),
    sa.Column("cabinet_id", sa.String(64), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),        # pending | firing | resolved
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("since", Time, nullable=False),
    sa.Column("fired_at", Time),
    sa.Column("resolved_at", Time),
    sa.Index("alerts_open", "rule_id", "state"),
    sa.Index("alerts_by_time", "since"),
)

alert_deliveries = sa.Table(
    "alert_deliveries", metadata,
    sa.Column("delivery_id", sa.BigInteger().with_variant(sa.Integer, "sqlite"),
              primary_key=True, autoincrement=True),
    sa.Column("alert_id", sa.BigInteger, nullable=False),
    sa.Column("event", sa.String(16), nullable=False),        # fired | resolved
    sa.Column("channel", sa.String(16), nullable=False),      # email | webhook
    sa.Column("target", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),       # pending | sent | failed
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_attempt_at", Time, nullable=False),
    sa.Column("last_error", sa.Text),
    sa.Column("sent_at", Time),
    sa.Index("alert_deliveries_due", "status", "next_attempt_at"),
    sa.Index("alert_deliveries_by_alert", "alert_id"),
)

# The newest planogram each cabinet reported (0005), as the cabinet holds it: what the planogram
# page edits and sends back as set_planogram.
planograms = sa.Table(
    "planograms", metadata,
    sa.Column("cabinet_id", sa.String(64), primary_key=True),
    sa.Column("version", sa.String(200)),
    sa.Column("document", Json, nullable=False),
    sa.Column("reason", sa.String(32)),
    sa.Column("reported_at", Time, nullable=False),
)

# The fleet's sales rollups (0006), kept with sales_hourly in the same transaction: per hour and
# product for the whole fleet, so that a year of the fleet is 8 760 x products rows, not that
# times the cabinets; and per cabinet and UTC day, for the cabinets' ranking over long periods.
sales_fleet_hourly = sa.Table(
    "sales_fleet_hourly", metadata,
    sa.Column("hour", Time, primary_key=True),
    sa.Column("sku", sa.String(64), primary_key=True),
    sa.Column("units", sa.BigInteger, nullable=False),
    sa.Column("revenue_fen", sa.BigInteger, nullable=False),
    sa.Column("sales", sa.BigInteger, nullable=False),
)

sales_cabinet_daily = sa.Table(
    "sales_cabinet_daily", metadata,
    sa.Column("day", Time, primary_key=True),                 # 00:00 UTC
    sa.Column("cabinet_id", sa.String(64), primary_key=True),
    sa.Column("units", sa.BigInteger, nullable=False),
    sa.Column("revenue_fen", sa.BigInteger, nullable=False),
)

# The operators' ad files (0007), addressed by their sha256: a set_ads playlist names them by a
# URL under /v1/ads/ and the cabinet keeps a file only when its sha256 matches.
ads = sa.Table(
    "ads", metadata,
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("content_type", sa.String(100), nullable=False),
    sa.Column("bytes", sa.BigInteger, nullable=False),
    sa.Column("data", sa.LargeBinary, nullable=False),
    sa.Column("uploaded_by", sa.String(64), nullable=False),
    sa.Column("uploaded_at", Time, nullable=False),
)

# Cabinets with several doors and temperature zones (0008): the layout each reported (its doors,
# with the shelves behind them, and its zones, with their doors and food-safety rule), the newest
# reading of each zone, and the hourly climate of zones 2 and up (zone 1's stays the cabinet's
# own, in cabinets and climate_hourly, as on a one-zone cabinet).
layouts = sa.Table(
    "layouts", metadata,
    sa.Column("cabinet_id", sa.String(64), primary_key=True),
    sa.Column("document", Json, nullable=False),
    sa.Column("reported_at", Time, nullable=False),
)

zone_readings = sa.Table(
    "zone_readings", metadata,
    sa.Column("cabinet_id", sa.String(64), primary_key=True),
    sa.Column("zone", sa.Integer, primary_key=True),
    sa.Column("celsius", sa.Float, nullable=False),
    sa.Column("setpoint_celsius", sa.Float),
    sa.Column("reading_at", Time, nullable=False),
)

zone_climate_hourly = sa.Table(
    "zone_climate_hourly", metadata,
    sa.Column("cabinet_id", sa.String(64), primary_key=True),
    sa.Column("zone", sa.Integer, primary_key=True),
    sa.Column("hour", Time, primary_key=True),
    sa.Column("samples", sa.BigInteger, nullable=False),
    sa.Column("celsius_min", sa.Float),
    sa.Column("celsius_max", sa.Float),
    sa.Column("celsius_sum", sa.Float, nullable=False),
)
