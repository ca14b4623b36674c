"""Backup freshness checks (Barman-style) and the daily backup of `opsbook serve` on a real
sandbox: no backup fails the check; a taken and verified backup passes; a missing DR copy and an
old backup fail by name and raise an alert that resolves once fixed; the daily run happens once
a day whoever asks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from opsbook.backup.background import daily
from opsbook.backup.health import alert_failures, check
from opsbook.config import Settings
from opsbook.db import Database, open_database
from tests.sandbox.harness import Sandbox, running_sandbox

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    with running_sandbox(tmp_path_factory.mktemp("backup-health") / "ws") as s:
        yield s


@pytest.fixture
def db(sb: Sandbox) -> Iterator[Database]:
    d = open_database(Settings.from_env().database_url_for(sb.ws.state_dir))
    yield d
    d.close()


def ob(sb: Sandbox, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "opsbook.cli.main", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "OPSBOOK_WORKSPACE": str(sb.ws.root)},
        timeout=120,
    )


def _failed(db: Database, sb: Sandbox) -> set[str]:
    return {c.name for c in check(db, workspace=sb.ws, environment="sandbox") if not c.ok}


def test_1_no_backup_fails_the_check(sb: Sandbox) -> None:
    r = ob(sb, "backups", "check", "--json")
    assert r.returncode == 1
    (c,) = json.loads(r.stdout)["checks"]
    assert c["name"] == "backup exists" and c["critical"] and "backups take" in c["hint"]


def test_2_a_verified_backup_passes_and_problems_are_named(sb: Sandbox, db: Database) -> None:
    assert ob(sb, "backups", "take", "--verify").returncode == 0
    r = ob(sb, "backups", "check", "--json")
    assert r.returncode == 0, r.stdout
    assert all(c["status"] == "ok" for c in json.loads(r.stdout)["checks"])
    b = json.loads(ob(sb, "backups", "list", "--json").stdout)["backups"][0]
    Path(b["copies"][1]["path"]).unlink()  # the DR copy is lost
    assert _failed(db, sb) == {"copy in the DR location"}
    assert (
        alert_failures(
            db,
            environment="sandbox",
            checks=check(db, workspace=sb.ws, environment="sandbox"),
            actor="pytest",
        )
        == 1
    )
    fp = "backup-sandbox-copy-in-the-DR-location"
    alert = db.one("SELECT status, runbook FROM mon_alerts WHERE fingerprint = ?", (fp,))
    assert alert == {"status": "firing", "runbook": "backup-recovery#backup-verification"}
    later = datetime.now(UTC) + timedelta(hours=30)
    assert {"backup maximum age", "last verified restore age"} <= {
        c.name for c in check(db, workspace=sb.ws, environment="sandbox", now=later) if not c.ok
    }
    assert ob(sb, "backups", "take", "--verify").returncode == 0
    assert _failed(db, sb) == set()
    alert_failures(
        db,
        environment="sandbox",
        checks=check(db, workspace=sb.ws, environment="sandbox"),
        actor="pytest",
    )
    alert = db.one(
        "SELECT status FROM mon_alerts WHERE fingerprint = 'backup-sandbox-copy-in-the-DR-location'"
    )
    assert alert == {"status": "resolved"}


def test_3_the_daily_backup_runs_once_a_day(sb: Sandbox, db: Database) -> None:
    ctx = SimpleNamespace(workspace=sb.ws, settings=Settings.from_env())
    day = "2030-01-01"
    done = daily(ctx, db, "sandbox", day=day)  # type: ignore[arg-type]
    assert done is not None and done["verify_ok"] == 1
    assert daily(ctx, db, "sandbox", day=day) is None  # type: ignore[arg-type]
