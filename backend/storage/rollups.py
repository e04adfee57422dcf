"""The sales rollups the charts read, kept in the transaction that changes sales (an upload, an
adjustment): per cabinet, hour and product (sales_hourly); per hour and product for the whole
fleet (sales_fleet_hourly), so that a year of the fleet reads 8 760 x products rows instead of
that times the cabinets; per cabinet and UTC day (sales_cabinet_daily), for the cabinets'
ranking over long periods. Rows are written in key order, so concurrent uploads that share
the fleet's current hour wait for each other instead of deadlocking.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from datetime import datetime

import sqlalchemy as sa

from .dialect import insert
from .schema import sales_cabinet_daily, sales_fleet_hourly, sales_hourly


def add_sales(connection: sa.Connection, cabinet_id: str,
              sales: dict[tuple[datetime, str], list[int]]) -> None:
    """Add (units, revenue_fen, sales) per (UTC hour, sku) of one cabinet to every rollup
    (negative for an adjustment that takes some back)."""
    if not sales:
        return
    statements = _statements(connection.dialect.name)
    connection.execute(statements.hourly, [
        {"cabinet_id": cabinet_id, "hour": hour, "sku": sku, "units": u, "revenue_fen": r,
         "sales": n} for (hour, sku), (u, r, n) in sorted(sales.items())])
    daily: dict[datetime, list[int]] = defaultdict(lambda: [0, 0])
    for (hour, _), (u, r, _) in sales.items():
        day = daily[hour.replace(hour=0)]
        day[0] += u
        day[1] += r
    connection.execute(statements.daily, [
        {"day": day, "cabinet_id": cabinet_id, "units": u, "revenue_fen": r}
        for day, (u, r) in sorted(daily.items())])
    # Last: the fleet's rows are the ones other uploads wait for; held from here to the commit.
    connection.execute(statements.fleet, [
        {"hour": hour, "sku": sku, "units": u, "revenue_fen": r, "sales": n}
        for (hour, sku), (u, r, n) in sorted(sales.items())])


class _Statements:
    def __init__(self, dialect: str):
        def adding(table: sa.Table, keys: list[str], columns: list[str]):
            statement = insert(dialect, table)
            return statement.on_conflict_do_update(
                index_elements=keys,
                set_={c: table.c[c] + statement.excluded[c] for c in columns})
        self.hourly = adding(sales_hourly, ["cabinet_id", "hour", "sku"],
                             ["units", "revenue_fen", "sales"])
        self.fleet = adding(sales_fleet_hourly, ["hour", "sku"], ["units", "revenue_fen", "sales"])
        self.daily = adding(sales_cabinet_daily, ["day", "cabinet_id"], ["units", "revenue_fen"])


@functools.cache
def _statements(dialect: str) -> _Statements:
    return _Statements(dialect)
