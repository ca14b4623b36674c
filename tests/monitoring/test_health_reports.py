"""Which finished morning health checks get their report from `opsbook serve`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from opsbook.config import Settings
from opsbook.db import open_database
from opsbook.executions.context import build_context
from opsbook.executions.settings import ServerSettings
from opsbook.monitoring import background, health
from tests.api.harness import make_workspace


def _finished(db, eid: str, when: datetime) -> None:  # type: ignore[no-untyped-def]
    ts = when.isoformat(timespec="microseconds").replace("+00:00", "Z")
    db.execute(
        "INSERT INTO executions (id, runbook_id, runbook_path, runbook_hash, procedure_id,"
        " environment, params, digest, state, state_name, started_by, created_at, updated_at,"
        " finished_at) VALUES (?, 'system-monitoring', 'x', 'h', 'morning-health-check',"
        " 'sandbox', '{}', 'd', 'succeeded', 'Succeeded', 'alice', ?, ?, ?)",
        (eid, ts, ts, ts),
    )


def test_recent_runs_get_reports_a_few_at_a_time_and_old_runs_none(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws")
    url = f"sqlite:///{tmp_path / 'opsbook.db'}"
    db = open_database(url)
    ctx = build_context(
        settings=Settings(database_url=url), server=ServerSettings(), workspace=ws, db=db
    )
    now = datetime.now(UTC)
    _finished(db, "old1", now - timedelta(days=2))  # before opsbook serve was running
    for i in range(3):
        _finished(db, f"new{i}", now - timedelta(minutes=5 - i))
    try:
        assert background.make_health_reports(ctx, now=now, limit=2) == ["new0", "new1"]
        assert background.make_health_reports(ctx, now=now, limit=2) == ["new2"]
        assert background.make_health_reports(ctx, now=now) == []
        assert "Morning health check" in health.get_report(db, execution_id="new2")["markdown"]
        assert db.one("SELECT 1 AS x FROM mon_health_reports WHERE execution_id = 'old1'") is None
    finally:
        db.close()
