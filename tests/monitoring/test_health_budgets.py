"""The morning report says why an error budget has no figure, and says plainly that backups
are not tracked (issue 18 §4)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from opsbook.db import Database
from opsbook.monitoring import render
from opsbook.monitoring.config import load_monitoring
from opsbook.monitoring.health import health_data
from tests.monitoring.conftest import make_ws

ENV = """\
name: sandbox
services: [{name: payment}]
monitoring:
  slos:
    - {name: payment-availability, service: payment, objective: 99.9}
"""
NOW = datetime(2026, 11, 25, 7, 0, tzinfo=UTC)


def _run(db: Database, state: str, when: datetime) -> None:
    ts = when.isoformat().replace("+00:00", "Z")
    db.execute(
        "INSERT INTO executions (id, runbook_id, runbook_path, runbook_hash, procedure_id,"
        " environment, params, digest, state, state_name, started_by, created_at, updated_at,"
        " finished_at) VALUES ('bk1', 'backup-recovery', 'x', 'h', 'backup-verification',"
        " 'sandbox', '{}', 'd', ?, ?, 'alice', ?, ?, ?)",
        (state, state.capitalize(), ts, ts, ts),
    )


def test_a_budget_without_data_says_why(db: Database, tmp_path: Path) -> None:
    config = load_monitoring(make_ws(tmp_path, ENV), "sandbox")
    data = health_data(db, config=config, results=[], now=NOW)
    (slo,) = data["slos"]
    assert slo["budget_remaining"] is None
    assert slo["budget_note"] == "no probe results for payment in the last 30 days"
    md = render.health_markdown(data)
    assert "remaining — (no probe results for payment in the last 30 days)" in md
    assert "no probe results for payment" in render.health_html(data)


def test_backups_are_said_plainly(db: Database, tmp_path: Path) -> None:
    config = load_monitoring(make_ws(tmp_path, ENV), "sandbox")
    data = health_data(db, config=config, results=[], now=NOW)
    assert data["backups"].startswith("No backup of sandbox in the catalogue")
    assert "no backup-recovery#backup-verification run in the last 24 h" in data["backups"]
    db.execute(
        "INSERT INTO backups (id, environment, database, method, state, retention, started_at,"
        " finished_at, duration_s, raw_bytes, stored_bytes, sha256, key_id, manifest, copies,"
        " created_by, verified_at, verify_ok) VALUES ('bk-1', 'sandbox', 'ledger',"
        " 'sqlite-online-backup', 'ok', 'daily', ?, ?, 1.0, 4194304, 2097152, 'x', 'k', '{}',"
        " '[]', 'test', ?, 1)",
        (
            (NOW - timedelta(hours=3)).isoformat().replace("+00:00", "Z"),
            (NOW - timedelta(hours=3)).isoformat().replace("+00:00", "Z"),
            (NOW - timedelta(hours=2)).isoformat().replace("+00:00", "Z"),
        ),
    )
    data = health_data(db, config=config, results=[], now=NOW)
    assert data["backups"].startswith(
        "The last backup bk-1 is ok, 3.0 h old, 2.0 MiB, verified by restore at"
    )
    _run(db, "succeeded", NOW - timedelta(hours=1))
    data = health_data(db, config=config, results=[], now=NOW)
    assert (
        "backup-recovery#backup-verification succeeded at 2026-11-25 06:00 UTC" in (data["backups"])
    )
