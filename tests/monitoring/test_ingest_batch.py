"""Group commit of webhook deliveries on the event loop: deliveries submitted in the same
turn share one transaction, each keeps its result and audit record, a bad one fails alone."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from opsbook.audit import verify
from opsbook.db import Database
from opsbook.monitoring import alerts
from opsbook.monitoring.ingest_batch import IngestBatch
from opsbook.monitoring.webhook import parse_webhook
from tests.monitoring.test_alerts import payload


def delivery(tag: str, n: int = 3) -> tuple[dict[str, Any], list[alerts.IncomingAlert]]:
    body = copy.deepcopy(payload(n))
    for a in body["alerts"]:
        a["fingerprint"] = f"{tag}{a['fingerprint'][len(tag) :]}"
        a["labels"]["alertname"] = f"Alert{tag}"
    return parse_webhook(body)


def test_deliveries_of_one_turn_share_a_commit(db: Database) -> None:
    batch = IngestBatch(db=db, runbook_for=lambda: lambda a: None)

    async def main() -> list[alerts.IngestResult]:
        jobs = []
        for tag in ("a", "b", "c"):
            meta, incoming = delivery(tag)
            jobs.append(batch.submit(incoming=incoming, meta=meta, actor="am"))
        first = await asyncio.gather(*jobs)
        meta, incoming = delivery("a")  # the same alerts again: duplicates
        return [*first, await batch.submit(incoming=incoming, meta=meta, actor="am")]

    results = asyncio.run(main())
    assert [r.created for r in results] == [3, 3, 3, 0] and results[3].duplicates == 3
    assert batch.commits == 2  # three deliveries in one transaction, then the fourth
    assert len(alerts.list_alerts(db, status="firing")) == 9
    assert len(db.query("SELECT id FROM events WHERE action = 'alerts.ingested'")) == 3
    assert verify(db=db).ok


def test_a_delivery_that_fails_fails_alone(db: Database) -> None:
    def runbook_for() -> alerts.RunbookFor:
        def resolve(a: alerts.IncomingAlert) -> str | None:
            if a.alertname == "Alertbad":
                raise RuntimeError("mapping exploded")
            return None

        return resolve

    batch = IngestBatch(db=db, runbook_for=runbook_for)

    async def main() -> list[Any]:
        jobs = []
        for tag in ("ok1", "bad", "ok2"):
            meta, incoming = delivery(tag, n=2)
            jobs.append(batch.submit(incoming=incoming, meta=meta, actor="am"))
        return await asyncio.gather(*jobs, return_exceptions=True)

    ok1, bad, ok2 = asyncio.run(main())
    assert isinstance(bad, RuntimeError)
    assert ok1.created == 2 and ok2.created == 2
    names = {r["alertname"] for r in alerts.list_alerts(db, status="firing")}
    assert names == {"Alertok1", "Alertok2"}
    assert verify(db=db).ok


def test_large_bursts_are_split_into_bounded_groups(db: Database) -> None:
    n = 40
    batch = IngestBatch(db=db, runbook_for=lambda: lambda a: None)

    async def main() -> None:
        jobs = []
        for i in range(n):
            meta, incoming = delivery(f"g{i:02d}", n=1)
            jobs.append(batch.submit(incoming=incoming, meta=meta, actor="am"))
        await asyncio.gather(*jobs)

    asyncio.run(main())
    assert batch.commits == 2  # 32 + 8
    assert len(alerts.list_alerts(db, status="firing")) == n
