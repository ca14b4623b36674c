"""The same incident flow on PostgreSQL: schema, declare, timer claim (once), acknowledge."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from opsbook.db import Database, open_database
from opsbook.incidents import escalation, lifecycle
from opsbook.incidents.config import load_config
from opsbook.incidents.service import declare, get, timeline
from tests.incidents.harness import make_ws

pytestmark = pytest.mark.postgres
TABLES = (
    "notification_attempts, notifications, incident_timers, incident_events,"
    " incident_executions, incident_actions, status_updates, incidents"
)


@pytest.fixture
def pg(pg_db: Database) -> Iterator[Database]:
    yield pg_db
    pg_db.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")


def test_declare_escalate_once_and_acknowledge_on_postgres(pg: Database, tmp_path: Path) -> None:
    ws = make_ws(tmp_path / "ws", smtp_port=9, webhook="http://127.0.0.1:9")
    config = load_config(ws)
    t0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
    inc = declare(
        db=pg,
        config=config,
        title="Accounts down",
        actor="alice",
        services=["account"],
        severity="SEV2",
        now=t0,
    ).incident
    other = open_database(pg.url)
    try:
        at = t0 + timedelta(seconds=3)
        (timer,) = escalation.due_timers(db=pg, now=at)
        fired = [
            escalation.fire(
                db=d,
                timer=timer,
                policy=config.policy,
                contacts=config.contacts,
                key=config.key,
                owner=n,
                now=at,
            )
            for d, n in ((pg, "a"), (other, "b"))
        ]
    finally:
        other.close()
    assert fired[0] is not None and fired[1] is None
    lifecycle.acknowledge(db=pg, ref=inc.ref, actor="bob")
    kinds = [e.kind for e in timeline(db=pg, incident=get(db=pg, ref=inc.ref))]
    assert kinds.count("escalation.paged") == 2 and kinds[-1] == "acknowledged"
