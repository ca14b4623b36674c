"""Escalated alerts open incidents: monitoring's escalation with the incidents-backed notifier,
over a real workspace and SQLite database."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from opsbook.db import Database, open_database
from opsbook.incidents import service
from opsbook.incidents.alert_bridge import IncidentNotifier
from opsbook.monitoring import alerts
from opsbook.monitoring.config import Escalation
from opsbook.monitoring.escalation import escalate, load_levels
from opsbook.workspace import Workspace
from opsbook.workspace.init import init_workspace

T0 = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)
RULES = (Escalation("page", 60, "level-1"), Escalation("page", 900, "level-2"))


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    init_workspace(target=tmp_path / "ws")
    return Workspace.load(tmp_path / "ws")


@pytest.fixture
def db(ws: Workspace) -> Iterator[Database]:
    ws.state_dir.mkdir(parents=True, exist_ok=True)
    database = open_database(f"sqlite:///{ws.state_dir / 'opsbook.db'}")
    yield database
    database.close()


def fire(db: Database, name: str, severity: str, labels: dict[str, str] | None = None) -> None:
    alerts.ingest(
        db,
        alerts=[
            alerts.IncomingAlert(
                name,
                "firing",
                {"alertname": name, "severity": severity, "service": "payment", **(labels or {})},
                {"summary": "payment health check failing"},
                alerts.iso(T0),
                None,
            )
        ],
        source="test",
        actor="test",
        runbook_for=lambda a: None,
        now=T0,
    )


def test_a_paging_alert_opens_one_sev2_incident_and_pages(ws: Workspace, db: Database) -> None:
    fire(db, "ProbeFailing", "critical")
    notifier = IncidentNotifier(db=db, workspace=ws)
    levels = load_levels({"levels": [{"name": "level-1"}, {"name": "level-2"}]})
    assert escalate(db, rules=RULES, levels=levels, notifier=notifier, now=T0) == []
    done = escalate(
        db, rules=RULES, levels=levels, notifier=notifier, now=T0 + timedelta(minutes=2)
    )
    assert [lv for _, lv in done] == ["level-1"]
    (inc,) = service.list_incidents(db=db)
    assert inc.severity == "SEV2" and inc.services == ("payment",)
    assert inc.title == "ProbeFailing on payment"
    pages = db.query("SELECT * FROM notifications")
    assert pages, "the incident paged its first level"
    # Later escalation steps attach the still-firing alert; never a second incident.
    escalate(db, rules=RULES, levels=levels, notifier=notifier, now=T0 + timedelta(minutes=20))
    assert len(service.list_incidents(db=db)) == 1
    kinds = [e.kind for e in service.timeline(db=db, incident=inc)]
    assert "alert.attached" in kinds


def test_an_alert_can_ask_for_its_incident_severity(ws: Workspace, db: Database) -> None:
    fire(db, "LedgerImbalance", "critical", {"incident_severity": "SEV1"})
    notifier = IncidentNotifier(db=db, workspace=ws)
    levels = load_levels({"levels": [{"name": "level-1"}]})
    escalate(db, rules=RULES, levels=levels, notifier=notifier, now=T0 + timedelta(minutes=2))
    (inc,) = service.list_incidents(db=db)
    assert inc.severity == "SEV1"
