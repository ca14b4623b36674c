"""`cluster.status` (runbook 07's action): workers by state, queue backlogs and their consumers,
queues nobody consumes, runs waiting for a recovery decision — on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from opsbook.actions._registry import ActionContext
from opsbook.actions.cluster import ACTIONS
from opsbook.cluster.dispatch import enqueue
from opsbook.cluster.registry import declare_dead, register
from opsbook.cluster.status import cluster_status
from opsbook.db import Database
from opsbook.engine.states import State
from opsbook.workspace.init import init_workspace
from tests.cluster.conftest import run_row


def _worker(db: Database, worker_id: str, queues: list[str]) -> None:
    register(
        db=db,
        kind="worker",
        name=worker_id.split(":", maxsplit=1)[0],
        queues=queues,
        concurrency=1,
        version="t",
        lease_seconds=60,
        worker_id=worker_id,
    )


def test_status_names_unconsumed_queues_and_runs_awaiting_a_decision(any_db: Database) -> None:
    _worker(any_db, "east-1.example:11:1700000000", ["eastus"])
    _worker(any_db, "west-1.example:12:1700000000", ["westus2"])
    assert declare_dead(db=any_db, worker_id="west-1.example:12:1700000000", by="test")
    for eid, queue in (("e-east", "eastus"), ("e-west-1", "westus2"), ("e-west-2", "westus2")):
        run_row(any_db, eid, owner=None, state=State.PENDING)
        with any_db.transaction():
            enqueue(db=any_db, execution_id=eid, queue=queue, actor="alice")
    run_row(any_db, "e-parked", owner=None, state=State.WAITING)
    any_db.execute(
        "UPDATE executions SET state_name = 'AwaitingRecoveryDecision' WHERE id = 'e-parked'"
    )
    run_row(any_db, "e-done", owner=None, state=State.SUCCEEDED)
    with any_db.transaction():
        enqueue(db=any_db, execution_id="e-done", queue="westus2", actor="alice")

    status = cluster_status(db=any_db)

    assert (status["alive"], status["dead"]) == (1, 1)
    queues = {q["queue"]: q for q in status["queues"]}
    assert queues["eastus"]["waiting"] == 1 and queues["eastus"]["consumers"] == 1
    assert queues["westus2"]["waiting"] == 2  # the finished run does not wait
    assert queues["westus2"]["consumers"] == 0  # its only consumer is dead
    assert status["unconsumed_queues"] == ["westus2"]
    assert [r["execution_id"] for r in status["awaiting_recovery"]] == ["e-parked"]


def test_the_action_reads_the_workspace_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "ws"
    init_workspace(target=root)
    monkeypatch.delenv("OPSBOOK_DATABASE_URL", raising=False)
    ctx = ActionContext(
        environment_name="sandbox",
        environment={},
        workspace=root,
        execution_id="x",
        started_by="alice",
    )
    result = asyncio.run(ACTIONS["cluster.status"].func(ctx, {}))
    assert result["alive"] == 0
    assert result["unconsumed_queues"] == []
    assert (root / ".opsbook").is_dir()
