"""The monitoring collector renders alerts, probe results and SLO budgets as Prometheus
metrics."""

from __future__ import annotations

import time
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from opsbook.db import Database
from opsbook.monitoring import alerts, store
from opsbook.monitoring.metrics import MonitoringCollector
from opsbook.monitoring.probes import ProbeResult
from tests.monitoring.conftest import make_ws

ENV = """\
name: sandbox
services: [{name: payment}]
slos: [{name: payment-availability, service: payment, objective: 99.9}]
"""


def test_collector(db: Database, tmp_path: Path) -> None:
    ws = make_ws(tmp_path, ENV)
    alerts.ingest(
        db,
        alerts=[
            alerts.IncomingAlert(
                "f",
                "firing",
                {"alertname": "X", "severity": "critical"},
                {},
                "2026-11-26T07:00:00Z",
                None,
            )
        ],
        source="t",
        actor="t",
        runbook_for=lambda a: None,
    )
    now = int(time.time())
    store.record_results(
        db,
        environment="sandbox",
        results=[
            ProbeResult("ph", "payment", "http", True, 120, now - 120),
            ProbeResult("ph", "payment", "http", False, 900, now - 60),
        ],
    )
    registry = CollectorRegistry()
    registry.register(MonitoringCollector(db=db, workspace=ws))
    text = generate_latest(registry).decode()
    assert 'opsbook_alerts{severity="critical",status="firing"} 1.0' in text
    assert 'opsbook_probe_up{environment="sandbox",probe="ph",service="payment"} 0.0' in text
    assert (
        'opsbook_probe_latency_seconds{environment="sandbox",probe="ph",service="payment"} 0.9'
        in text
    )
    budget = 'environment="sandbox",service="payment",slo="payment-availability"} -499.0'
    assert "opsbook_slo_error_budget_remaining{" + budget in text  # 1 of 2 checks failed
