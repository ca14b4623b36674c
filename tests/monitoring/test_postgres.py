"""The monitoring SQL on PostgreSQL: alert ingest (idempotent, resolve), acknowledgement,
silences, escalation and the SLA report, on a database of its own."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from opsbook.audit import verify
from opsbook.db import Database
from opsbook.monitoring import alerts, store
from opsbook.monitoring.config import Escalation, load_monitoring
from opsbook.monitoring.escalation import escalate, load_levels
from opsbook.monitoring.service import ingest_alertmanager
from opsbook.monitoring.sla import sla_report
from tests.monitoring.conftest import make_ws
from tests.monitoring.test_alerts import NOW, payload
from tests.monitoring.test_escalation import RecordingNotifier

pytestmark = pytest.mark.postgres

ENV = """\
name: sandbox
services: [{name: payment}]
slos: [{name: payment-availability, service: payment, objective: 99.9}]
"""


def test_the_monitoring_flow_on_postgresql(fresh_pg: Database, tmp_path: Path) -> None:
    db = fresh_pg
    ws = make_ws(tmp_path, ENV)
    first = ingest_alertmanager(db=db, workspace=ws, body=payload(3), actor="am", now=NOW)
    again = ingest_alertmanager(db=db, workspace=ws, body=payload(3), actor="am", now=NOW)
    assert (first.created, again.duplicates) == (3, 3)
    alerts.acknowledge(db, ref="0000000000000000", actor="alice", now=NOW)
    alerts.create_silence(
        db,
        matchers={"pod": "p1"},
        duration=timedelta(hours=1),
        actor="bob",
        comment="known",
        now=NOW,
    )
    pager = RecordingNotifier()
    levels = load_levels({"levels": [{"name": "level-2"}]})
    escalate(
        db,
        rules=(Escalation("page", 60, "level-2"),),
        levels=levels,
        notifier=pager,
        now=NOW + timedelta(minutes=30),
    )
    assert [c[1] for c in pager.calls] == ["level-2"]  # p2 only: p0 acked, p1 silenced
    resolved = ingest_alertmanager(
        db=db, workspace=ws, body=payload(3, status="resolved"), actor="am", now=NOW
    )
    assert resolved.resolved == 3

    ids = store.probe_ids(db, environment="sandbox", probes=[("payment", "ph", "http")])
    start = int(datetime(2026, 11, 2, tzinfo=UTC).timestamp())
    rows = [(ids["ph"], start + i * 60, 0 if i < 30 else 1, 20, None) for i in range(1440)]
    with db.transaction():
        store.store_samples(db, rows)
    report = sla_report(
        db,
        config=load_monitoring(ws, "sandbox"),
        month="2026-11",
        now=datetime(2026, 12, 1, tzinfo=UTC),
    )
    (payment,) = report.services
    assert payment.downtime_minutes == 30 and payment.covered_minutes == 1440
    assert verify(db=db).ok
