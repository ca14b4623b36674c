"""Point-in-time recovery and the DR region on a real sandbox running its own PostgreSQL
clusters with pgBackRest (issue 13), driven through the real CLI and runbook 05's procedures:
two approvers before a cut-over or a failover, never the person who started it.

- failover to a synchronous DR replica with the load generator running loses no committed
  transfer, is measured (RTO, RPO) and keeps the invariants; failback re-seeds the old primary
  and moves the primary home;
- a DR drill with an asynchronous replica writes its report;
- PITR to a time between two known transfers keeps the first and not the second, then the
  services run on the recovered ledger; a target outside the recovery window is refused."""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

import opsbook.workspace
from opsbook.sandbox import pgcluster
from opsbook.sandbox.config import free_port
from opsbook.sandbox.load import run_load
from tests.backup.conftest import _tools, traversable
from tests.sandbox.harness import Sandbox, running_sandbox, sandbox_env
from tests.workspace.drive import Driver, failed_steps

pytestmark = pytest.mark.slow
TEMPLATES = Path(opsbook.workspace.__file__).parent / "templates"

USERS = """[workspace]
name = "recovery-tests"
default_environment = "sandbox"
default_roles = ["operator"]

[users]
lead = ["engineer", "manager", "operator"]
dba = ["approver"]
eng-manager = ["approver"]
"""


@pytest.fixture(scope="module")
def rsb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    _tools()
    root = tmp_path_factory.mktemp("recovery") / "ws"
    root.mkdir()
    traversable(root)
    with running_sandbox(root, sandbox_env(db="postgres", postgres_port=free_port())) as s:
        (root / "opsbook.toml").write_text(USERS, encoding="utf-8")
        shutil.copy(TEMPLATES / "runbooks" / "05_backup_recovery.md", root / "runbooks")
        d = Driver(root, fake_platform=False)
        taken = d.ob("backups", "take", "--json", "--as", "lead")
        assert taken.returncode == 0, taken.stdout + taken.stderr
        yield s


def _load(s: Sandbox, seconds: float, out: dict[str, Any]) -> threading.Thread:
    urls = {x["name"]: x["url"] for x in s.status()["services"]}

    def work() -> None:
        out["report"] = asyncio.run(run_load(urls=urls, rate=25, duration=seconds))

    t = threading.Thread(target=work, daemon=True)
    t.start()
    return t


def test_failover_to_a_synchronous_replica_loses_nothing_and_fails_back(rsb: Sandbox) -> None:
    d = Driver(rsb.ws.root, fake_platform=False)
    setup = d.ob("dr", "setup", "--sync", "--json", "--as", "lead")
    assert setup.returncode == 0, setup.stdout + setup.stderr
    assert json.loads(setup.stdout)["mode"] == "synchronous"
    load: dict[str, Any] = {}
    runner = _load(rsb, 8, load)
    time.sleep(2)
    execution = d.run("backup-recovery#dr-activation", {"ticket": "INC-8"})
    runner.join(60)
    assert execution["state"] == "succeeded", failed_steps(execution)
    f = next(s for s in execution["steps"] if s["step"] == "failover")["result"]["fields"]["result"]
    assert f["to"] == "westus2" and f["invariants_ok"] is True
    assert f["rpo"]["transfers"] == 0  # a synchronous replica: no committed transfer lost
    assert f["met"] == {"rto": True, "rpo": True}
    assert load["report"].invariant["ok"] is True  # the ledger balances after the load
    approvals = [s for s in execution["steps"] if s["step"].startswith("approval")]
    assert approvals and all(s["state_name"] == "Succeeded" for s in approvals)
    status = json.loads(d.ob("dr", "status", "--json").stdout)
    assert status["primary"] == "westus2" and status["endpoint"]["cluster"] == "westus2"
    back = d.ob("dr", "failback", "--json", "--as", "lead")
    assert back.returncode == 0, back.stdout + back.stderr
    b = json.loads(back.stdout)
    assert b["primary"] == "eastus" and b["invariants_ok"] is True
    status = json.loads(d.ob("dr", "status", "--json").stdout)
    roles = {c["name"]: c for c in status["clusters"]}
    assert status["primary"] == "eastus" and roles["westus2"]["role"] == "replica"
    assert roles["westus2"]["replication"]["state"] == "streaming"
    with httpx.Client(timeout=5) as c:  # the services write to the ledger at home again
        r = c.post(f"{rsb.url('account')}/accounts", json={"owner": "after-failback"})
    assert r.status_code == 201, r.text


def test_a_dr_drill_with_an_asynchronous_replica_writes_its_report(rsb: Sandbox) -> None:
    d = Driver(rsb.ws.root, fake_platform=False)
    r = d.ob("dr", "drill", "--async", "--load", "20", "--json", "--as", "lead", timeout=300)
    assert r.returncode in (0, 1), r.stdout + r.stderr
    out = json.loads(r.stdout)
    f = out["failover"]
    assert f["mode"] == "asynchronous" and isinstance(f["rpo"]["transfers"], int)
    assert (r.returncode == 0) == (f["met"]["rto"] and f["met"]["rpo"])
    report = Path(out["report"]).read_text()
    assert "RTO" in report and "RPO" in report and f["declared_at"] in report
    assert out["load"]["sent"] > 0
    assert out["failback"]["primary"] == "eastus"


def _transfer(c: httpx.Client, sb: Sandbox, a: int, b: int, cents: int) -> int:
    r = c.post(
        f"{sb.url('transaction')}/transfers",
        json={"from_account": a, "to_account": b, "amount_cents": cents},
    )
    assert r.status_code in (200, 201), r.text
    return int(r.json()["id"])


def test_point_in_time_recovery_is_exact_and_cuts_over_after_approval(rsb: Sandbox) -> None:
    d = Driver(rsb.ws.root, fake_platform=False)
    with httpx.Client(timeout=5) as c:
        a = c.post(f"{rsb.url('account')}/accounts", json={"owner": "a", "initial_cents": 10_000})
        b = c.post(f"{rsb.url('account')}/accounts", json={"owner": "b"})
        ida, idb = a.json()["id"], b.json()["id"]
        before = _transfer(c, rsb, ida, idb, 100)
        time.sleep(1.2)
        target = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        time.sleep(1.2)
        after = _transfer(c, rsb, ida, idb, 250)
    outside = d.ob("recover", "--to", "2001-01-01T00:00:00Z", "--ticket", "INC-9", "--yes")
    assert outside.returncode == 2 and "outside the recovery window" in outside.stderr
    execution = d.run(
        "backup-recovery#point-in-time-recovery", {"to_time": target, "ticket": "INC-9"}
    )
    assert execution["state"] == "succeeded", failed_steps(execution)
    steps = {s["step"]: s for s in execution["steps"]}
    prepared = steps["prepare"]["result"]["fields"]["result"]
    assert prepared["lost"]["transfers"] >= 1 and prepared["invariants_ok"] is True
    app = prepared["app_state"]  # configuration and secret names as of the backup, the outbox
    assert app["from_backup"] and Path(app["saved_to"], "environment.yaml").is_file()
    assert "backup-encryption-key" in app["secret_refs"] and app["secret_refs_missing"] == []
    assert sum(app["outbox"].values()) > 0
    reg = pgcluster.load_registry(rsb.data_dir)
    assert reg.primary == prepared["instance"]
    ids = {r[0] for r in pgcluster.sql(reg.current(), "SELECT id FROM transfers")}
    assert before in ids and after not in ids  # exact: before the target kept, after it not
    with httpx.Client(timeout=5) as c:
        bal = c.get(f"{rsb.url('account')}/accounts/{ida}").json()["balance_cents"]
    assert bal == 10_000 - 100  # the services run on the recovered ledger
    assert steps["baseline"]["state_name"] == "Succeeded"
    with sqlite3.connect(rsb.ws.state_dir / "opsbook.db") as db:
        actions = {r[0] for r in db.execute("SELECT action FROM events")}
    assert {"backup.recovery_prepared", "backup.recovery_cutover"} <= actions


def test_a_missing_wal_segment_is_named_and_nothing_is_touched(rsb: Sandbox) -> None:
    """Last in this module: it removes a WAL segment from the archive."""
    d = Driver(rsb.ws.root, fake_platform=False)
    taken = d.ob("backups", "take", "--json", "--as", "lead")
    assert taken.returncode == 0, taken.stdout + taken.stderr
    reg = pgcluster.load_registry(rsb.data_dir)
    primary = reg.current()
    archive = Path(json.loads(taken.stdout)["copies"][0]["repo"]) / "archive" / "ledger"
    before = set(archive.rglob("0*.zst"))
    with httpx.Client(timeout=5) as c:
        for _ in range(3):
            c.post(f"{rsb.url('account')}/accounts", json={"owner": "wal"})
            pgcluster.sql(primary, "SELECT pg_switch_wal()", db="postgres")
            time.sleep(0.5)
    time.sleep(1.5)
    target = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    time.sleep(1.2)
    pgcluster.sql(primary, "SELECT pg_switch_wal()", db="postgres")
    time.sleep(1)
    new = sorted(set(archive.rglob("0*.zst")) - before)
    assert len(new) >= 2, new
    new[0].unlink()  # a segment between the backup and the target is lost
    r = d.ob("recover", "--to", target, "--ticket", "INC-10", "--yes", "--json", "--as", "lead")
    assert r.returncode in (1, 3), r.stdout + r.stderr
    execution = json.loads(r.stdout)
    for _ in range(3):  # the first approval, then the prepare step fails
        if execution["state"] in ("failed", "succeeded"):
            break
        execution = d._act(execution, d_proc(rsb), "lead")
    assert execution["state"] == "failed"
    reason = json.dumps(failed_steps(execution))
    assert "recovery ended before" in reason or new[0].name.split("-")[0] in reason, reason
    after = pgcluster.load_registry(rsb.data_dir)
    assert after.primary == reg.primary  # nothing running was touched
    assert not [c for c in after.clusters.values() if c.role == "recovered"]


def d_proc(sb: Sandbox) -> Any:
    from opsbook.runbooks.catalogue import load_catalogue

    return load_catalogue(sb.ws.root / "runbooks").resolve(
        "backup-recovery#point-in-time-recovery"
    )[1]
