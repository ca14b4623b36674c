"""Change records (opsbook.deploy.records) on a real SQLite database: the refusals are records
too, one open deployment per service, a run's own record found again, outcomes, rollbacks,
incidents, and the record an auditor reads."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from opsbook.db import Database, open_database
from opsbook.deploy import records
from opsbook.errors import ConflictError, NotFoundError, UsageError


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = open_database(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        yield database
    finally:
        database.close()


def begin(db: Database, **kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "environment_name": "sandbox",
        "environment": {"tier": "production"},
        "service": "payment",
        "version": "1.5.0",
        "strategy": "canary",
        "ticket": "CHG-1",
        "reason": "fees",
        "security_impact": "none",
        "backout": "roll back",
        "emergency": False,
        "actor": "alice",
        "execution_id": None,
        "freezes": [],
        "previous_version": "1.4.2",
    }
    return records.begin(db, **{**args, **kw})


def actions(db: Database) -> list[str]:
    return [str(r["action"]) for r in db.query("SELECT action FROM events ORDER BY id")]


def test_production_without_testing_evidence_is_refused_and_recorded(db: Database) -> None:
    with pytest.raises(ConflictError, match=r"no testing evidence for payment 1\.5\.0"):
        begin(db)
    [refused] = records.list_releases(db)
    assert refused["state"] == "refused" and "no testing evidence" in refused["detail"]
    assert actions(db) == ["release.refused"]
    staged = begin(db, environment_name="staging", environment={"tier": "staging"})
    assert staged["state"] == "running" and staged["tier"] == "staging"  # no evidence needed


def test_a_freeze_refuses_unless_emergency(db: Database) -> None:
    freeze = [{"name": "month-end close", "reason": "books"}]
    with pytest.raises(ConflictError, match="inside the change freeze month-end close"):
        begin(db, freezes=freeze)
    rel = begin(db, freezes=freeze, emergency=True)
    assert rel["state"] == "running" and rel["emergency"] is True
    assert rel["freeze"] == freeze


def test_one_open_deployment_per_service_and_a_runs_own_record(db: Database) -> None:
    first = begin(db, emergency=True, execution_id="run-1")
    assert begin(db, emergency=True, execution_id="run-1")["id"] == first["id"]  # again: same
    with pytest.raises(ConflictError, match=f"release {first['id']}"):
        begin(db, emergency=True, execution_id="run-2", version="1.5.1")
    other = begin(db, emergency=True, service="account")  # another service is free
    assert other["service"] == "account"
    with pytest.raises(UsageError, match="needs a reason"):
        begin(db, emergency=True, service="notification", reason=" ")


def test_outcome_rollback_incident_and_the_change_record(db: Database) -> None:
    rel = begin(db, emergency=True)
    decisions = [{"kind": "weight", "weight": 10}, {"kind": "promoted"}]
    done = records.finish(
        db,
        release_id=rel["id"],
        state="promoted",
        rollout={"outcome": "promoted", "decisions": decisions},
        actor="alice",
    )
    assert done["state"] == "promoted" and done["finished_at"]
    marked = records.rolled_back(
        db,
        environment="sandbox",
        service="payment",
        from_version="1.5.0",
        actor="bob",
        execution_id=None,
        ticket="INC-7",
        rolled_back_at="2026-12-04T10:00:00Z",
        restored_at="2026-12-04T10:00:05Z",
    )
    assert marked is not None and marked["state"] == "rolled_back"
    assert marked["incident_ids"] == ["INC-7"]
    linked = records.link_incident(db, release_id=rel["id"], incident_id="INC-8", actor="bob")
    assert linked["incident_ids"] == ["INC-7", "INC-8"]
    record = records.change_record(db, rel["id"])
    assert record["change"] == "payment 1.4.2 -> 1.5.0" and record["outcome"] == "rolled_back"
    assert record["decisions"] == decisions and record["backout"] == "roll back"
    assert "release.promoted" in actions(db) and "release.incident_linked" in actions(db)
    with pytest.raises(NotFoundError):
        records.change_record(db, "rel-nope")
    with pytest.raises(UsageError, match="unknown release state"):
        records.finish(db, release_id=rel["id"], state="sideways", rollout={}, actor="a")
