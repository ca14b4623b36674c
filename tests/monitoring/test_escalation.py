"""Escalation hook: unacknowledged, unsilenced alerts whose severity and age cross the policy
call the notifier once per level, recorded on the alert and audited."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest

from opsbook.db import Database, open_database
from opsbook.monitoring import alerts
from opsbook.monitoring.config import Escalation
from opsbook.monitoring.escalation import Contact, escalate, load_levels, severity_class

T0 = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)
RULES = (Escalation("page", 900, "level-2"), Escalation("page", 3600, "level-3"))
LEVELS = load_levels(
    {
        "levels": [
            {"name": "level-2", "title": "Engineering", "contacts": [{"role": "DBA"}]},
            {"name": "level-3", "title": "Management", "contacts": []},
        ]
    }
)


@dataclass
class RecordingNotifier:
    """A test double of the incidents' notifier: records every call, fails when told to."""

    calls: list[tuple[str, str, str]] = field(default_factory=list)
    fail: bool = False

    def notify(self, *, alert: Mapping[str, Any], level: Contact, reason: str) -> None:
        if self.fail:
            raise RuntimeError("SMS gateway down")
        self.calls.append((str(alert["alertname"]), level.level, reason))


def fire(db: Database, name: str, severity: str = "critical") -> None:
    alerts.ingest(
        db,
        alerts=[
            alerts.IncomingAlert(
                name, "firing", {"alertname": name, "severity": severity}, {}, alerts.iso(T0), None
            )
        ],
        source="test",
        actor="test",
        runbook_for=lambda a: None,
        now=T0,
    )


def test_severity_classes() -> None:
    assert [severity_class(s) for s in ("critical", "page", "warning", "info", "odd")] == [
        "page",
        "page",
        "ticket",
        "info",
        "info",
    ]


def test_escalates_by_age_once_per_level(db: Database) -> None:
    fire(db, "PaymentDown")
    fire(db, "DiskFilling", severity="warning")
    n = RecordingNotifier()
    assert escalate(db, rules=RULES, levels=LEVELS, notifier=n, now=T0 + timedelta(minutes=5)) == []
    done = escalate(db, rules=RULES, levels=LEVELS, notifier=n, now=T0 + timedelta(minutes=16))
    assert done == [("PaymentDown", "level-2")]
    assert n.calls == [("PaymentDown", "level-2", "page alert unacknowledged for 16 min")]
    escalate(db, rules=RULES, levels=LEVELS, notifier=n, now=T0 + timedelta(minutes=30))
    assert len(n.calls) == 1  # not paged again for the same level
    escalate(db, rules=RULES, levels=LEVELS, notifier=n, now=T0 + timedelta(minutes=61))
    assert [c[1] for c in n.calls] == ["level-2", "level-3"]
    row = alerts.get_alert(db, "PaymentDown")
    assert row["escalated_level"] == 2
    assert len(db.query("SELECT id FROM events WHERE action = 'alert.escalated'")) == 2


def test_acknowledged_or_silenced_alerts_do_not_escalate(db: Database) -> None:
    fire(db, "A")
    fire(db, "B")
    alerts.acknowledge(db, ref="A", actor="alice", now=T0)
    alerts.create_silence(
        db,
        matchers={"alertname": "B"},
        duration=timedelta(hours=2),
        actor="bob",
        comment="known",
        now=T0,
    )
    n = RecordingNotifier()
    escalate(db, rules=RULES, levels=LEVELS, notifier=n, now=T0 + timedelta(minutes=20))
    assert n.calls == []


def test_a_failed_delivery_is_audited_and_retried(db: Database) -> None:
    fire(db, "A")
    n = RecordingNotifier(fail=True)
    assert (
        escalate(db, rules=RULES, levels=LEVELS, notifier=n, now=T0 + timedelta(minutes=20)) == []
    )
    assert db.one("SELECT action FROM events WHERE action = 'alert.escalation_failed'")
    n.fail = False
    escalate(db, rules=RULES, levels=LEVELS, notifier=n, now=T0 + timedelta(minutes=21))
    assert n.calls[0][:2] == ("A", "level-2")


class _ReadsThen:
    """A connection whose read of the firing alerts runs ``then()`` before answering: the
    other replica acts between this one's read and its claim (a deterministic race)."""

    def __init__(self, db: Database, then: Callable[[], object]) -> None:
        self._db, self._then = db, then

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        rows = self._db.query(sql, params)
        if "FROM mon_alerts" in sql and self._then is not None:
            then, self._then = self._then, None
            then()
        return rows

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def both_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """SQLite, then a PostgreSQL database of the test's own (the shared one keeps no alerts)."""
    if request.param == "postgres":
        yield request.getfixturevalue("fresh_pg")
        return
    d = open_database(f"sqlite:///{tmp_path / 'state' / 'opsbook.db'}")
    yield d
    d.close()


def test_a_failed_page_puts_the_level_back(both_db: Database) -> None:
    """The level is claimed before the page; the page fails, so the claim is undone and the
    next pass (this replica's or another's) pages that level."""
    fire(both_db, "A")
    before = alerts.get_alert(both_db, "A")
    failing = RecordingNotifier(fail=True)
    later = T0 + timedelta(minutes=20)
    assert escalate(both_db, rules=RULES, levels=LEVELS, notifier=failing, now=later) == []
    after = alerts.get_alert(both_db, "A")
    assert after["escalated_level"] == 0
    assert after["escalated_at"] == before["escalated_at"]
    assert both_db.query("SELECT id FROM events WHERE action = 'alert.escalated'") == []
    other = open_database(both_db.url)
    try:
        n = RecordingNotifier()
        assert escalate(other, rules=RULES, levels=LEVELS, notifier=n, now=later) == [
            ("A", "level-2")
        ]
    finally:
        other.close()
    assert alerts.get_alert(both_db, "A")["escalated_level"] == 1


def test_two_replicas_racing_page_once(both_db: Database) -> None:
    """Both read the alert as due; only the one whose UPDATE moves the level notifies."""
    fire(both_db, "PaymentDown")
    other = open_database(both_db.url)
    a, b = RecordingNotifier(), RecordingNotifier()
    later = T0 + timedelta(minutes=16)
    try:

        def replica_a() -> None:
            escalate(other, rules=RULES, levels=LEVELS, notifier=a, now=later)

        stale = cast(Database, _ReadsThen(both_db, replica_a))
        done_b = escalate(stale, rules=RULES, levels=LEVELS, notifier=b, now=later)
    finally:
        other.close()
    assert [c[1] for c in a.calls] == ["level-2"]
    assert b.calls == [] and done_b == []
    assert len(both_db.query("SELECT id FROM events WHERE action = 'alert.escalated'")) == 1
