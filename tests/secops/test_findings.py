"""The findings lifecycle on a real SQLite database: identity across scans (new, still open,
fixed, reintroduced), SLA due dates, assignment, risk acceptance by a second person, expiry,
overdue alerts; every change audited."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from opsbook import audit
from opsbook.db import Database, open_database
from opsbook.errors import ConflictError, PermissionDenied, ValidationError
from opsbook.secops import findings
from opsbook.secops.model import FindingInput
from opsbook.secops.service import alert_overdue
from opsbook.secops.settings import DEFAULT_SLA, SecuritySettings

NOW = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    d = open_database(f"sqlite:///{tmp_path / 'state.db'}")
    yield d
    d.close()


def _f(subject: str, severity: str = "high", rule: str = "tls.protocols") -> FindingInput:
    return FindingInput(
        source="check",
        rule_id=rule,
        title="Only TLS 1.2 or newer is accepted",
        severity=severity,  # type: ignore[arg-type]
        subject=subject,
        environment="sandbox",
        detail={"text": f"accepts {subject}"},
        requirements=("4.2.1",),
    )


def _scan(db: Database, *subjects: str, now: datetime = NOW) -> dict[str, object]:
    return findings.ingest(
        db,
        kind="checks",
        environment="sandbox",
        source="check",
        inputs=[_f(s) for s in subjects],
        complete=True,
        actor="pytest",
        now=now,
    )


def test_identity_across_scans_new_open_fixed_reintroduced(db: Database) -> None:
    first = _scan(db, "tls_1_0", "tls_1_1")
    assert first["new"] == 2 and first["findings"]["new"] == ["FND-1", "FND-2"]  # type: ignore[index]
    second = _scan(db, "tls_1_0", now=NOW + timedelta(days=1))
    assert second["still_open"] == 1 and second["fixed"] == 1
    assert second["findings"]["fixed"] == ["FND-2"]  # type: ignore[index]
    third = _scan(db, "tls_1_0", "tls_1_1", now=NOW + timedelta(days=2))
    assert third["reintroduced"] == 1 and third["findings"]["reintroduced"] == ["FND-2"]  # type: ignore[index]
    back = findings.get(db, "FND-2")
    assert back["state"] == "open" and back["reintroduced"] == 1 and back["fixed_at"] is None
    # the due date restarts from the reintroduction, by the high SLA (14 days)
    assert back["due_at"].startswith((NOW + timedelta(days=16)).date().isoformat())
    assert [r["action"] for r in db.query("SELECT action FROM events")].count(
        "security.scanned"
    ) == 3
    assert len(db.query("SELECT id FROM security_scans")) == 3


def test_due_dates_follow_the_sla_stricter_than_pci_dss(db: Database) -> None:
    assert DEFAULT_SLA["critical"] <= 7 * 86400 and DEFAULT_SLA["high"] < 30 * 86400
    findings.ingest(
        db,
        kind="checks",
        environment="sandbox",
        source="check",
        inputs=[_f("a", "critical", "data.pan-in-logs"), _f("b", "low", "tokens.unused")],
        complete=True,
        actor="pytest",
        settings=SecuritySettings(sla={**DEFAULT_SLA, "low": 86400.0}),
        now=NOW,
    )
    due = {f["rule_id"]: f["due_at"][:10] for f in findings.list_findings(db)}
    assert due == {"data.pan-in-logs": "2026-12-11", "tokens.unused": "2026-12-05"}


def test_a_scan_limited_to_some_rules_fixes_only_those(db: Database) -> None:
    findings.ingest(
        db,
        kind="checks",
        environment="sandbox",
        source="check",
        inputs=[_f("x"), _f("y", rule="accounts.dormant")],
        complete=True,
        actor="pytest",
        now=NOW,
    )
    out = findings.ingest(
        db,
        kind="checks",
        environment="sandbox",
        source="check",
        inputs=[],
        complete=True,
        actor="pytest",
        scope_rules=["accounts.dormant"],
        now=NOW,
    )
    assert out["findings"]["fixed"] == ["FND-2"]  # type: ignore[index]
    assert findings.get(db, "FND-1")["state"] == "open"


def test_risk_acceptance_needs_a_reason_a_second_person_and_not_the_owner(db: Database) -> None:
    _scan(db, "tls_1_0")
    findings.assign(db, finding="FND-1", to="olivia", actor="sam")
    with pytest.raises(ValidationError) as no_reason:
        findings.request_acceptance(
            db, finding="FND-1", reason="", until="2027-01-31", actor="sam", now=NOW
        )
    assert no_reason.value.field == "--reason" and no_reason.value.exit_code == 2
    with pytest.raises(ValidationError, match="more than 180 days"):
        findings.request_acceptance(
            db, finding="FND-1", reason="WAF", until="2028-01-01", actor="sam", now=NOW
        )
    with pytest.raises(PermissionDenied, match="owns FND-1"):
        findings.request_acceptance(
            db, finding="FND-1", reason="WAF", until="2027-01-31", actor="olivia", now=NOW
        )
    assert db.query("SELECT * FROM security_acceptances") == []  # nothing stored
    findings.request_acceptance(
        db,
        finding="FND-1",
        reason="legacy terminal, WAF blocks",
        until="2027-01-31",
        actor="sam",
        now=NOW,
    )
    with pytest.raises(PermissionDenied, match="second person"):
        findings.approve_acceptance(db, finding="FND-1", actor="sam", roles=("admin",), now=NOW)
    with pytest.raises(PermissionDenied, match="owns FND-1"):
        findings.approve_acceptance(db, finding="FND-1", actor="olivia", roles=("admin",), now=NOW)
    with pytest.raises(PermissionDenied, match="may not approve"):
        findings.approve_acceptance(db, finding="FND-1", actor="ed", roles=("operator",), now=NOW)
    f = findings.approve_acceptance(db, finding="FND-1", actor="maria", roles=("manager",), now=NOW)
    assert f["state"] == "accepted" and f["acceptances"][0]["approved_by"] == "maria"
    # still seen by the next scan: it stays accepted, not open
    _scan(db, "tls_1_0", now=NOW + timedelta(days=1))
    assert findings.get(db, "FND-1")["state"] == "accepted"
    # the acceptance ends: the finding is open again, and overdue at once (due 2026-12-18)
    reopened = findings.expire_acceptances(db, now=datetime(2027, 2, 1, tzinfo=UTC))
    assert reopened == ["FND-1"] and findings.get(db, "FND-1")["state"] == "open"
    actions = [r["action"] for r in db.query("SELECT action FROM events ORDER BY id")]
    for a in (
        "security.finding.assigned",
        "security.acceptance.requested",
        "security.acceptance.approved",
        "security.acceptance.expired",
    ):
        assert a in actions
    assert audit.verify(db=db).ok


def test_an_overdue_finding_raises_one_alert(db: Database) -> None:
    _scan(db, "tls_1_0")
    later = NOW + timedelta(days=15)
    assert alert_overdue(db, settings=SecuritySettings(), actor="pytest", now=later) == ["FND-1"]
    assert alert_overdue(db, settings=SecuritySettings(), actor="pytest", now=later) == []
    alerts = db.query("SELECT labels, runbook FROM mon_alerts")
    assert len(alerts) == 1 and "SecurityFindingOverdue" in alerts[0]["labels"]
    assert alerts[0]["runbook"] == "security-operations#vulnerability-management"


def test_bad_references_name_the_field(db: Database) -> None:
    with pytest.raises(ValidationError) as bad:
        findings.get(db, "twelve")
    assert bad.value.field == "finding"
    with pytest.raises(ConflictError):
        _scan(db, "tls_1_0")
        findings.approve_acceptance(db, finding="FND-1", actor="maria", roles=("manager",))
