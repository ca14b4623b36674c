"""Runbook quality signals (issue 15): steps that fail on a healthy sandbox (not during an
incident, a firing alert or an injected fault; not on other environments; not dry runs),
review timeliness from the front matter, training completion from the certifications in force."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from opsbook.lifecycle import quality
from tests.lifecycle import metrics_history as history
from tests.lifecycle.metrics_history import NOW, iso

SINCE, UNTIL = iso(NOW - timedelta(days=90)), iso(NOW)
X3_STEP = datetime(2026, 11, 25, 0, 0, 1, tzinfo=UTC)  # when x3's failing step started


@pytest.fixture
def hist(tmp_path: Path) -> Iterator[tuple[Any, Any]]:
    _, db, cat = history.workspace(tmp_path / "ws")
    history.known_history(db)
    yield db, cat
    db.close()


def signals(db: Any) -> list[dict[str, Any]]:
    return [a.to_dict() for a in quality.accuracy_signals(db, since=SINCE, until=UNTIL)]


def test_a_failure_on_a_healthy_sandbox_is_an_accuracy_signal(hist: tuple[Any, Any]) -> None:
    db, _ = hist
    # x2's failure came during incident 1; x5 was a dry run; x8 ran on staging: none count
    assert signals(db) == [
        {
            "ref": "checks#quick",
            "runbook": "checks",
            "procedure": "quick",
            "step": "second",
            "failures": 1,
            "last": iso(X3_STEP),
            "executions": ["x3"],
        }
    ]
    assert (
        quality.accuracy_signals(db, since=SINCE, until=UNTIL, environments=("staging",))[0].ref
        == "other#solo"
    )


def test_an_injected_fault_explains_a_failure(hist: tuple[Any, Any]) -> None:
    db, _ = hist
    history.add_event(
        db,
        at=X3_STEP - timedelta(seconds=30),
        action="sandbox.fault.injected",
        eid=None,
        payload={"fault": "latency", "service": "payment", "duration": 60},
    )
    assert signals(db) == []


def test_a_fault_cleared_before_the_step_does_not(hist: tuple[Any, Any]) -> None:
    db, _ = hist
    history.add_event(
        db,
        at=X3_STEP - timedelta(minutes=10),
        action="sandbox.fault.injected",
        eid=None,
        payload={"fault": "latency", "service": "payment", "duration": None},
    )
    history.add_event(
        db,
        at=X3_STEP - timedelta(minutes=5),
        action="sandbox.fault.cleared",
        eid=None,
        payload={"fault": "latency", "service": "payment"},
    )
    assert [s["executions"] for s in signals(db)] == [["x3"]]


def test_a_firing_alert_explains_a_failure(hist: tuple[Any, Any]) -> None:
    db, _ = hist
    db.execute(
        "INSERT INTO mon_alerts (fingerprint, source, alertname, environment, severity, status,"
        " labels, annotations, starts_at, first_received, last_received)"
        " VALUES ('f1', 'test', 'PaymentDown', 'sandbox', 'critical', 'firing', '{}', '{}',"
        " ?, ?, ?)",
        (iso(X3_STEP - timedelta(minutes=1)),) * 3,
    )
    assert signals(db) == []


def test_review_timeliness(hist: tuple[Any, Any]) -> None:
    _, cat = hist
    got = {r.runbook: r.to_dict() for r in quality.review_statuses(cat, today=date(2026, 12, 1))}
    assert got["checks"] == {
        "runbook": "checks",
        "title": "Checks",
        "owner": "operations",
        "last_reviewed": "2026-09-01",
        "review_interval": "30d",
        "due": "2026-10-01",
        "overdue_days": 61,
        "state": "overdue",
    }
    assert got["other"]["state"] == "no cadence" and got["other"]["overdue_days"] is None
    early = {r.runbook: r for r in quality.review_statuses(cat, today=date(2026, 9, 15))}
    assert early["checks"].state == "ok" and early["checks"].overdue_days == -16


def test_training_completion_counts_certifications_in_force(hist: tuple[Any, Any]) -> None:
    db, cat = hist
    assert quality.training_completion(db).by_area == ()  # nobody is certified in this history
    for person, expires in (("ann", "2099-01-01T00:00:00Z"), ("bob", "2020-01-01T00:00:00Z")):
        db.insert(
            "INSERT INTO training_certifications (person, area, earned_at, expires_at,"
            " granted_by) VALUES (?, 'incident-response', '2019-01-01T00:00:00Z', ?, 't')",
            (person, expires),
        )
    t = quality.training_completion(db)
    assert t.measured and t.by_area == (("incident-response", 1),)  # bob's has expired
    q = quality.quality(db, catalogue=cat, since=SINCE, until=UNTIL, today=date(2026, 12, 1))
    assert q.to_dict()["overdue"] == ["checks"]
    assert q.to_dict()["training"]["by_area"] == {"incident-response": 1}
