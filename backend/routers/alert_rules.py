"""Alerts for operators: the rules (offline for N minutes, temperature outside the band for N
minutes, lockout, forced opening, unauthorised removal, sold out, no sales for N minutes), each
delivered by email and/or a signed webhook, with quiet hours; and the alerts that fired, each
delivery's fate visible (backend/alerts.py sends, backend/storage/alerts.py decides)."""

from __future__ import annotations

from typing import Annotated

from urllib.parse import urlsplit

from fastapi import APIRouter, Path, Query

from ..deps import Manager, Reader, StorageDep
from ..protocol import AlertList, AlertRule, AlertRuleList, Error, NewAlertRule
from ..roles import may
from ..strict_json import StrictRoute

router = APIRouter(prefix="/v1/operator/alerts", route_class=StrictRoute, tags=["alerts"],
                   responses={401: {"model": Error}, 403: {"model": Error},
                              422: {"model": Error}})


def _masked(url: str | None) -> str | None:
    """A webhook's URL as those who may not change rules see it: chat services' webhooks
    carry their access token in the URL, which would let a viewer post into the channel."""
    if url is None:
        return None
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}/…"


@router.get("/rules", response_model=AlertRuleList)
def rules(person: Reader, storage: StorageDep) -> AlertRuleList:
    """Every rule (a webhook's URL shown whole only to those who may change rules)."""
    found = storage.alerts.rules()
    if not may(person.role, "fleet"):
        found = [{**r, "webhook_url": _masked(r["webhook_url"])} for r in found]
    return AlertRuleList(rules=found)


@router.post("/rules", status_code=201, response_model=AlertRule)
def add_rule(body: NewAlertRule, person: Manager, storage: StorageDep) -> AlertRule:
    """A new rule; a webhook's signing secret is in this reply only."""
    return AlertRule(**storage.alerts.add_rule(body.model_dump(), person.username))


@router.delete("/rules/{rule_id}", status_code=204, responses={404: {"model": Error}})
def delete_rule(rule_id: Annotated[int, Path(ge=1)], person: Manager,
                storage: StorageDep) -> None:
    storage.alerts.delete_rule(rule_id, person.username)


@router.get("", response_model=AlertList)
def recent(person: Reader, storage: StorageDep,
           limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> AlertList:
    """Alerts that fired, newest first, with every delivery's status, attempts and error."""
    found = storage.alerts.recent(limit)
    if not may(person.role, "fleet"):
        for alert in found:
            alert["deliveries"] = [{**d, "target": _masked(d["target"])}
                                   if d["channel"] == "webhook" else d
                                   for d in alert["deliveries"]]
    return AlertList(alerts=found)
