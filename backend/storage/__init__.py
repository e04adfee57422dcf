"""The backend's one storage layer: every SQL statement of the service is in this package, behind
`Storage` (fleet, commands, people, stock, reviews, alerts, ads,
audit). Handlers call its methods and never
write SQL."""

from __future__ import annotations

import sqlalchemy as sa

from . import audit, ingest
from .ads import Ads
from .alerts import Alerts
from .commands import Commands
from .engine import make_engine
from .fleet import Fleet
from .people import People
from .reviews import Reviews
from .stock import Stock
from .zones import Zones


class Storage:
    def __init__(self, url: str, *, pool_size: int = 10, on_command_issued=None):
        self.url = url
        self.engine: sa.Engine = make_engine(url, pool_size=pool_size)
        self.dialect = self.engine.dialect.name
        self.fleet = Fleet(self.engine)
        self.commands = Commands(self.engine, on_command_issued)
        self.people = People(self.engine)
        self.stock = Stock(self.engine)
        self.reviews = Reviews(self.engine)
        self.alerts = Alerts(self.engine)
        self.ads = Ads(self.engine)
        self.zones = Zones(self.engine)

    def receive(self, cabinet_id: str, raw_records: list[dict], max_command_bytes: int | None
                ) -> tuple[list[dict], list[dict]]:
        """A cabinet's batch stored and its reply's commands paged, in one transaction on one
        connection: (records refused, commands for the reply)."""
        batch = ingest.check(cabinet_id, raw_records)
        with self.engine.begin() as connection:
            ingest.write(connection, batch)
            page, _ = self.commands.page_in(connection, cabinet_id, 0, max_command_bytes)
        return batch.rejected, page

    def record_action(self, actor: str, action: str, cabinet_id: str | None, **detail) -> None:
        """An audit entry for an action that changes nothing stored (an access code minted)."""
        with self.engine.begin() as connection:
            audit.write(connection, actor, action, cabinet_id, **detail)

    def audit(self, **filters) -> list[dict]:
        return audit.entries(self.engine, **filters)

    def close(self) -> None:
        self.engine.dispose()
