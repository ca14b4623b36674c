"""Migrations 0007 (known errors) and 0010 (training) shipped empty in the release before they
were filled: a database that ran them empty gets their tables from 0011 (real SQLite, the real
migration chain)."""

from __future__ import annotations

from pathlib import Path

from opsbook.db import open_database
from opsbook.db._database import SCHEMA_HEAD


def test_a_database_that_ran_the_empty_placeholders_catches_up(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    db = open_database(url)
    try:
        # what a database at the previous release looks like: 0007 and 0010 ran as no-ops
        for table in (
            "known_errors",
            "training_certifications",
            "training_drills",
            "training_assessments",
            "training_onboarding",
            "diagnoses",
            "runbook_opens",
            "custody_records",
            "security_detection_hits",
            "jit_grants",
            "access_review_items",
            "access_campaigns",
            "security_acceptances",
            "security_findings",
            "security_results",
            "security_scans",
            "backups",
            "releases",
            "workers",
        ):
            db.execute(f"DROP TABLE {table}")
        db.execute("DROP INDEX ix_executions_unclaimed")
        for column in ("queue", "dispatch", "claimed_dispatch", "claimed_by", "dispatched_at"):
            db.execute(f"ALTER TABLE executions DROP COLUMN {column}")
        db.execute("UPDATE alembic_version SET version_num = '0010'")
    finally:
        db.close()
    again = open_database(url)  # migrates to the head
    try:
        names = {
            r["name"] for r in again.query("SELECT name FROM sqlite_master WHERE type='table'")
        }
        assert {"known_errors", "training_onboarding", "training_drills", "diagnoses"} <= names
        assert again.query("SELECT version_num FROM alembic_version") == [
            {"version_num": SCHEMA_HEAD}
        ]
    finally:
        again.close()
