"""SLA verdicts are only given on enough data: a service measured for less than the reporting
window says "not enough data", its budget is a share of the month's budget, and a firing alert
keeps a probe-only "met" from being claimed (issue 18 §4)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from opsbook.db import Database
from opsbook.monitoring import alerts, render, store
from opsbook.monitoring.config import load_monitoring
from opsbook.monitoring.sla import sla_report
from tests.monitoring.conftest import make_ws
from tests.monitoring.test_sla import ENV, START, fill


def _few_minutes(db: Database) -> None:
    """Two minutes of payment probes, one of them failing (what a fresh sandbox has)."""
    pid = store.probe_ids(db, environment="sandbox", probes=[("payment", "ph", "http")])["ph"]
    day = START + 3 * 86400
    rows = [(pid, day, 1, 20, None), (pid, day + 60, 0, 20, None), (pid, day + 70, 1, 20, None)]
    with db.transaction():
        store.store_samples(db, rows)


def test_a_service_measured_for_minutes_gets_no_verdict(db: Database, tmp_path: Path) -> None:
    _few_minutes(db)
    config = load_monitoring(make_ws(tmp_path, ENV), "sandbox")
    report = sla_report(db, config=config, month="2026-11", now=datetime(2026, 12, 2, tzinfo=UTC))
    payment = report.services[0]
    assert payment.covered_minutes == 2
    assert payment.verdict == "not enough data" and payment.met is None
    # the month's budget, not the two measured minutes': 0.5 min of 43.14 min
    assert payment.budget_consumed == pytest.approx(0.5 / (0.001 * (30 * 1440 - 60)))
    md = render.sla_markdown(report)
    assert "not enough data" in md and "MISSED" not in md and "12500" not in md
    row = next(line for line in md.splitlines() if line.startswith("| payment"))
    assert "1.2%" in row  # budget consumed
    assert "not enough data" in render.sla_html(report)
    data = report.to_dict()["services"][0]
    assert data["verdict"] == "not enough data" and data["met"] is None
    assert data["measured_share"] == pytest.approx(2 / (30 * 1440 - 60))


def test_a_firing_alert_keeps_a_probe_only_met_from_being_claimed(
    db: Database, tmp_path: Path
) -> None:
    fill(db, service="payment", down=[])
    ws = make_ws(tmp_path, ENV)
    alerts.ingest(
        db,
        alerts=[
            alerts.IncomingAlert(
                fingerprint="f1",
                status="firing",
                labels={
                    "alertname": "PaymentErrorRate",
                    "service": "payment",
                    "environment": "sandbox",
                    "severity": "page",
                },
                annotations={},
                starts_at="2026-11-25T00:00:00Z",
                ends_at=None,
            )
        ],
        source="alertmanager",
        actor="test",
        runbook_for=lambda a: None,
        now=datetime(2026, 11, 25, tzinfo=UTC),
    )
    config = load_monitoring(ws, "sandbox")
    report = sla_report(db, config=config, month="2026-11", now=datetime(2026, 12, 2, tzinfo=UTC))
    payment = report.services[0]
    assert payment.availability == 1.0
    assert payment.met is None
    assert payment.verdict == "no verdict: PaymentErrorRate firing"
    md = render.sla_markdown(report)
    assert "| met |" not in md and "PaymentErrorRate firing" in md
