"""The backup and DR faults for drills (issue 13), injected into real sandboxes through the real
CLI, each caught by what it is for: a stopped backup job by the freshness checks, a corrupted
backup by verification (and clear does not undo it), a lagging replica by the DR replica lag
check (and clear resumes replay). The SQLite sandbox first, then one on its own PostgreSQL
cluster with a DR replica."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from opsbook.backup.background import daily
from opsbook.backup.faults import job_stopped
from opsbook.backup.health import check
from opsbook.config import Settings
from opsbook.db import Database, open_database
from opsbook.sandbox import pgcluster
from opsbook.sandbox.faults import (
    FAULTS,
    ActiveFault,
    read_chaos_log,
    read_faults,
    write_faults,
)
from opsbook.sandbox.load import run_load
from opsbook.workspace import Workspace
from tests.sandbox.harness import Sandbox, make_workspace, running_sandbox, wait_for

pytestmark = pytest.mark.slow

FAULT_NAMES = ("backup-job-stopped", "corrupted-backup", "lagging-replica")


def ob(sb: Sandbox, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "opsbook.cli.main", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "OPSBOOK_WORKSPACE": str(sb.ws.root), "OPSBOOK_USER": "pytest"},
        timeout=timeout,
    )


def _json(r: subprocess.CompletedProcess[str]) -> Any:
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout)


def _take(sb: Sandbox, *extra: str) -> dict[str, Any]:
    return _json(ob(sb, "backups", "take", "--json", *extra))  # type: ignore[no-any-return]


def _flipped_only_at(damaged: dict[str, Any], twin: Path) -> None:
    """The damaged file (``path`` in ``repository``) differs from its good twin in exactly the
    ``bytes`` at ``offset`` the record names."""
    bad = (Path(damaged["repository"]) / damaged["path"]).read_bytes()
    good = twin.read_bytes()
    assert len(bad) == len(good)
    changed = [i for i, (x, y) in enumerate(zip(bad, good, strict=True)) if x != y]
    start = damaged["offset"]
    assert changed == list(range(start, start + damaged["bytes"])), (changed[:3], damaged)


def _load(sb: Sandbox, seconds: float = 2) -> None:
    urls = {x["name"]: x["url"] for x in sb.status()["services"]}
    asyncio.run(run_load(urls=urls, rate=40, duration=seconds))


@pytest.fixture(scope="module")
def sb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    with running_sandbox(tmp_path_factory.mktemp("backup-faults") / "ws") as s:
        _load(s)
        yield s


@pytest.fixture
def db(sb: Sandbox) -> Iterator[Database]:
    d = open_database(Settings.from_env().database_url_for(sb.ws.state_dir))
    yield d
    d.close()


@pytest.fixture(autouse=True)
def _healthy(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test leaves its sandbox without active faults."""
    yield
    for name in ("sb", "pg"):
        if name in request.fixturenames:
            s = request.getfixturevalue(name)
            assert ob(s, "sandbox", "chaos", "clear").returncode == 0


def test_1_the_faults_are_in_the_catalogue() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "opsbook.cli.main", "sandbox", "chaos", "list", "--all", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    listed = {f["fault"]: f for f in _json(r)["faults"]}
    for name in FAULT_NAMES:
        assert FAULTS[name].backup and not FAULTS[name].security
        assert listed[name]["ended_by"] == "clear"
        assert listed[name]["description"] and listed[name]["symptom"]
    assert "stays corrupted" in listed["corrupted-backup"]["description"]


def test_2_nothing_to_corrupt_and_no_replica_are_usage_errors(sb: Sandbox) -> None:
    r = ob(sb, "sandbox", "chaos", "inject", "corrupted-backup")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "no good backup to corrupt" in r.stderr and "opsbook backups take" in r.stderr
    r = ob(sb, "sandbox", "chaos", "inject", "lagging-replica")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "opsbook dr setup" in r.stderr and "Traceback" not in r.stderr
    assert _json(ob(sb, "sandbox", "chaos", "list", "--json"))["faults"] == []  # no record left


def test_3_a_stopped_backup_job_is_caught_by_the_freshness_check(sb: Sandbox, db: Database) -> None:
    first = _take(sb, "--verify")
    ctx = SimpleNamespace(workspace=sb.ws, settings=Settings.from_env())
    day = "2031-03-01"
    _json(ob(sb, "sandbox", "chaos", "inject", "backup-job-stopped", "--json"))
    rows = db.one("SELECT COUNT(*) AS n FROM backups")
    assert daily(ctx, db, "sandbox", day=day) is None  # type: ignore[arg-type]
    assert db.one("SELECT COUNT(*) AS n FROM backups") == rows  # no catalogue row, no error
    claim = "SELECT * FROM schedule_claims WHERE ref = 'backup:sandbox' AND due_at = ?"
    assert db.one(claim, (day,)) is None  # the day is not claimed while the job is stopped
    # a day and more later, nothing has been backed up: the freshness check fails
    later = datetime.fromisoformat(first["finished_at"].replace("Z", "+00:00")) + timedelta(
        hours=27
    )
    failing = {
        c.name: c.detail
        for c in check(db, workspace=sb.ws, environment="sandbox", now=later)
        if not c.ok
    }
    assert "is 27.0 h old" in failing["backup maximum age"], failing
    # cleared: the next daily run backs up (and is verified) again
    assert ob(sb, "sandbox", "chaos", "clear", "backup-job-stopped").returncode == 0
    done = daily(ctx, db, "sandbox", day=day)  # type: ignore[arg-type]
    assert done is not None and done["verify_ok"] == 1 and done["id"] != first["id"]
    soon = datetime.fromisoformat(done["finished_at"].replace("Z", "+00:00")) + timedelta(minutes=5)
    max_age = {c.name: c for c in check(db, workspace=sb.ws, environment="sandbox", now=soon)}[
        "backup maximum age"
    ]
    assert max_age.ok, max_age.detail
    assert daily(ctx, db, "sandbox", day=day) is None  # type: ignore[arg-type]  # claimed once


def test_3b_a_stopped_sandboxs_leftover_record_stops_no_backup(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws")
    data = ws.state_dir / "sandbox"
    data.mkdir(parents=True)
    left = ActiveFault("x1", "backup-job-stopped", None, 0.0, None, "pytest")
    write_faults(data, [left])  # as a sandbox stopped mid-drill leaves it: no supervisor runs
    assert [f.fault for f in read_faults(data)] == ["backup-job-stopped"]
    assert not job_stopped(ws, "sandbox")


def test_4_a_corrupted_backup_fails_verification_and_clear_does_not_undo_it(
    sb: Sandbox, db: Database
) -> None:
    b = _take(sb)
    primary, dr = (Path(c["path"]) for c in b["copies"])
    mtime = primary.stat().st_mtime_ns
    injected = _json(ob(sb, "sandbox", "chaos", "inject", "corrupted-backup", "--json"))
    damaged = injected["damaged"]
    assert damaged["backup"] == b["id"] and damaged["file"] == str(primary)
    assert damaged["location"] == "primary" and damaged["bytes"] == 16
    assert damaged["repository"] == str(primary.parent) and damaged["path"] == primary.name
    _flipped_only_at(damaged, dr)  # the record says which bytes of which file changed
    assert primary.stat().st_mtime_ns == mtime
    logged = [e for e in read_chaos_log(sb.data_dir) if e["fault"] == "corrupted-backup"]
    assert logged[-1]["action"] == "sandbox.fault.injected"
    assert logged[-1]["damaged"] == damaged  # what was damaged is on record
    audited = db.one(
        "SELECT payload FROM events WHERE action = 'sandbox.fault.injected'"
        " AND subject LIKE 'sandbox:fault:corrupted-backup:%' ORDER BY id DESC LIMIT 1"
    )
    assert audited is not None and json.loads(audited["payload"])["damaged"] == damaged

    r = ob(sb, "backups", "verify", b["id"], "--json")
    assert r.returncode == 1, r.stdout + r.stderr
    v = json.loads(r.stdout)
    assert v["state"] == "bad" and v["verify_ok"] == 0
    problems = " ".join(v["verify_result"]["problems"])
    assert f"primary copy {primary}: corrupted" in problems

    assert ob(sb, "sandbox", "chaos", "clear", "corrupted-backup").returncode == 0
    assert primary.read_bytes() != dr.read_bytes()  # a corrupted backup stays corrupted
    assert _json(ob(sb, "sandbox", "chaos", "list", "--json"))["faults"] == []
    assert ob(sb, "backups", "verify", b["id"]).returncode == 1


# -- on PostgreSQL, with the DR replica ------------------------------------------------------


@pytest.fixture(scope="module")
def pg(pg_sb: Sandbox) -> Sandbox:
    """The PostgreSQL sandbox (tests/backup/conftest.py), with a lag limit a drill reaches."""
    toml = pg_sb.ws.root / "opsbook.toml"
    toml.write_text(
        toml.read_text(encoding="utf-8") + '\n[backups]\nreplica_max_lag = "1s"\n',
        encoding="utf-8",
    )
    return Sandbox(ws=Workspace.load(pg_sb.ws.root), config=pg_sb.config)


def _replay_paused(s: Sandbox) -> list[bool]:
    reg = pgcluster.load_registry(s.data_dir)
    return [
        bool(pgcluster.sql(c, "SELECT pg_is_wal_replay_paused()", db="postgres")[0][0])
        for c in reg.clusters.values()
        if c.role == "replica"
    ]


def _lag_check(s: Sandbox) -> dict[str, Any]:
    r = ob(s, "backups", "check", "--json")
    checks = {c["name"]: c for c in json.loads(r.stdout)["checks"]}
    return checks["DR replica lag"]  # type: ignore[no-any-return]


def test_5_pg_without_a_replica_lagging_replica_is_refused(pg: Sandbox) -> None:
    r = ob(pg, "sandbox", "chaos", "inject", "lagging-replica")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "opsbook dr setup" in r.stderr


def test_6_pg_a_corrupted_backup_set_is_named_and_the_dr_copy_restores(pg: Sandbox) -> None:
    b = _take(pg)
    label = b["manifest"]["label"]
    damaged = _json(ob(pg, "sandbox", "chaos", "inject", "corrupted-backup", "--json"))["damaged"]
    repo, dr_repo = (Path(c["repo"]) for c in b["copies"])
    assert damaged["backup"] == label and damaged["kind"] == "pgbackrest-set"
    assert damaged["file"].startswith(str(repo / "backup" / "ledger" / label / "pg_data"))
    assert damaged["repository"] == str(repo)
    assert damaged["path"].startswith(f"backup/ledger/{label}/pg_data/")
    assert str(repo / damaged["path"]) == damaged["file"]
    _flipped_only_at(damaged, dr_repo / damaged["path"])
    logged = [e for e in read_chaos_log(pg.data_dir) if e["fault"] == "corrupted-backup"]
    assert logged[-1]["damaged"] == damaged
    r = ob(pg, "backups", "verify", b["id"], "--json")
    assert r.returncode == 1, r.stdout + r.stderr
    out = json.loads(r.stdout)
    assert out["state"] == "bad"
    problems = " ".join(out["verify_result"]["problems"])
    assert "primary copy" in problems and "checksum invalid" in problems
    assert out["verify_result"]["restored"]["restored_from"] == "dr"


def test_7_pg_a_lagging_replica_fails_the_lag_check_until_cleared(pg: Sandbox) -> None:
    _take(pg)  # the checks need a backup to look past
    _json(ob(pg, "dr", "setup", "--json"))
    assert _replay_paused(pg) == [False]
    injected = _json(ob(pg, "sandbox", "chaos", "inject", "lagging-replica", "--json"))
    assert injected["paused"] == [pgcluster.DR_NAME]
    assert _replay_paused(pg) == [True]

    def lagging() -> dict[str, Any] | None:
        _load(pg, 1.5)
        c = _lag_check(pg)
        return c if c["status"] != "ok" else None

    failed = wait_for(lagging, timeout=60, interval=0.5)
    assert f"{pgcluster.DR_NAME} is" in failed["detail"] and "at most 1 s" in failed["detail"]

    assert ob(pg, "sandbox", "chaos", "clear", "lagging-replica").returncode == 0
    assert _replay_paused(pg) == [False]

    def caught_up() -> bool:
        _load(pg, 1)
        return bool(_lag_check(pg)["status"] == "ok")

    wait_for(caught_up, timeout=90, interval=0.5)


def test_8_pg_lagging_replica_ends_with_its_duration(pg: Sandbox) -> None:
    _json(ob(pg, "sandbox", "chaos", "inject", "lagging-replica", "--duration", "1s", "--json"))
    wait_for(lambda: _replay_paused(pg) == [False], timeout=30, interval=0.2)
    expired = [e for e in read_chaos_log(pg.data_dir) if e["fault"] == "lagging-replica"]
    assert expired[-1]["action"] == "sandbox.fault.expired"
