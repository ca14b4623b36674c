"""The DR region of the SQLite ledger (issue 13): the journal shipped to a replica file by the
real sandbox supervisor, failover through runbook 05's dr-activation (two approvers) with the
load generator running, RPO and RTO measured, failback without losing a transfer."""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import opsbook.workspace
from opsbook.sandbox.load import run_load
from tests.sandbox.harness import Sandbox, running_sandbox
from tests.workspace.drive import Driver, failed_steps

pytestmark = pytest.mark.slow
TEMPLATES = Path(opsbook.workspace.__file__).parent / "templates"
USERS = """[workspace]
name = "sqlite-dr-tests"
default_environment = "sandbox"
default_roles = ["operator"]

[users]
lead = ["engineer", "manager", "operator"]
dba = ["approver"]
eng-manager = ["approver"]

[backups]
rpo_transfers = 1000
"""


@pytest.fixture(scope="module")
def ssb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    root = tmp_path_factory.mktemp("sqlite-dr") / "ws"
    with running_sandbox(root) as s:
        (root / "opsbook.toml").write_text(USERS, encoding="utf-8")
        shutil.copy(TEMPLATES / "runbooks" / "05_backup_recovery.md", root / "runbooks")
        yield s


def _count(path: Path) -> int:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return int(db.execute("SELECT COUNT(*) FROM transfers").fetchone()[0])


def test_a_synchronous_replica_is_refused_on_sqlite(ssb: Sandbox) -> None:
    d = Driver(ssb.ws.root, fake_platform=False)
    r = d.ob("dr", "setup", "--sync", "--as", "lead")
    assert r.returncode == 2 and "needs the ledger on PostgreSQL" in r.stderr


def test_log_shipping_failover_and_failback(ssb: Sandbox) -> None:
    d = Driver(ssb.ws.root, fake_platform=False)
    setup = d.ob("dr", "setup", "--json", "--as", "lead")
    assert setup.returncode == 0, setup.stdout + setup.stderr
    replica = Path(json.loads(setup.stdout)["path"])
    urls = {x["name"]: x["url"] for x in ssb.status()["services"]}
    asyncio.run(run_load(urls=urls, rate=30, duration=2))
    time.sleep(1.5)  # shipped every second
    status = json.loads(d.ob("dr", "status", "--json").stdout)
    assert status["database"] == "sqlite" and status["primary"] == "eastus"
    rep = next(c for c in status["clusters"] if c["name"] == "westus2")["replication"]
    assert rep["state"] == "shipping" and rep["transfers_behind"] == 0
    assert _count(replica) == _count(ssb.data_dir / "ledger.db")
    load: dict[str, Any] = {}
    runner = threading.Thread(
        target=lambda: load.setdefault("r", asyncio.run(run_load(urls=urls, rate=25, duration=6))),
        daemon=True,
    )
    runner.start()
    time.sleep(2)
    execution = d.run("backup-recovery#dr-activation", {"ticket": "INC-11"})
    runner.join(60)
    assert execution["state"] == "succeeded", failed_steps(execution)
    f = next(s for s in execution["steps"] if s["step"] == "failover")["result"]["fields"]["result"]
    assert f["to"] == "westus2" and f["invariants_ok"] is True and f["met"]["rto"] is True
    assert isinstance(f["rpo"]["transfers"], int) and f["rpo"]["transfers"] >= 0
    end = json.loads((ssb.data_dir / "ledger-endpoint.json").read_text())
    assert end["cluster"] == "westus2" and end["path"] == str(replica)
    # the services write to the replica now; failback moves them home without losing one
    asyncio.run(run_load(urls=urls, rate=20, duration=1))
    on_dr = _count(replica)
    back = d.ob("dr", "failback", "--json", "--as", "lead")
    assert back.returncode == 0, back.stdout + back.stderr
    b = json.loads(back.stdout)
    assert b["primary"] == "eastus" and b["invariants_ok"] is True
    assert _count(ssb.data_dir / "ledger.db") == on_dr  # nothing lost in the switchover
    assert Path(b["kept"]).is_file()  # the lost region's file, kept for the investigation
    check = d.ob("backups", "check", "--json")
    lag = next(c for c in json.loads(check.stdout)["checks"] if c["name"] == "DR replica lag")
    assert lag["status"] == "ok", lag
    report = asyncio.run(run_load(urls=urls, rate=20, duration=1))
    assert report.invariant["ok"] is True


def test_the_quarterly_dr_test_runs_on_the_sqlite_sandbox(ssb: Sandbox) -> None:
    """runbook 05's dr-test: a verified backup, the replica, failover, every service, failback,
    the backups' health (the drill with load is `opsbook dr drill`)."""
    d = Driver(ssb.ws.root, fake_platform=False)
    execution = d.run("backup-recovery#dr-test")
    assert execution["state"] == "succeeded", failed_steps(execution)
    steps = {s["step"]: s for s in execution["steps"]}
    for step in ("backup", "setup", "failover", "failback", "after"):
        assert steps[step]["state_name"] == "Succeeded", step
    f = steps["failover"]["result"]["fields"]["result"]
    assert f["invariants_ok"] and f["met"]["rto"] and f["rpo"]["transfers"] == 0  # no load
    end = json.loads((ssb.data_dir / "ledger-endpoint.json").read_text())
    assert end["cluster"] == "eastus" and not end["fenced"]
