"""Two processes resuming the same parked run at once (two CLI `resume`s, or two servers):
only one may move it from waiting to running. On PostgreSQL the state read must lock the row;
before it did, both transitions succeeded and the run was driven twice (found by the issue 17
design spike). The same holds for a step run's transitions (the execution row is locked first,
then the step run). Real SQLite and a real PostgreSQL server."""

from __future__ import annotations

import threading
import time

from opsbook.db import Database, open_database
from opsbook.engine._journal import (
    ExecutionRow,
    create_execution,
    start_step_run,
    transition_execution,
    transition_step,
)
from opsbook.engine.states import State
from opsbook.errors import ConflictError

NOW = "2026-12-04T10:00:00.000000Z"


def parked(db: Database) -> str:
    row = ExecutionRow(
        id="race1",
        parent_id=None,
        runbook_id="rb",
        runbook_path="rb.md",
        runbook_hash="h",
        procedure_id="p",
        environment="sandbox",
        params={},
        digest="d",
        state=State.WAITING,
        state_name="AwaitingApproval",
        reason=None,
        cursor=1,
        dry_run=False,
        started_by="alice",
        owner=None,
        created_at=NOW,
        updated_at=NOW,
        finished_at=None,
    )
    create_execution(db=db, execution=row, actor="alice")
    return row.id


def test_only_one_of_two_concurrent_resumes_wins(any_db: Database) -> None:
    eid = parked(any_db)
    first, second = open_database(any_db.url), open_database(any_db.url)
    outcome: dict[str, object] = {}
    inside = threading.Event()

    def resume_and_hold() -> None:
        with first.transaction():
            transition_execution(
                db=first, execution_id=eid, to=State.RUNNING, actor="server-a", owner="a"
            )
            inside.set()
            time.sleep(0.5)  # the other resume arrives while this one is not committed yet

    def resume() -> None:
        inside.wait(10)
        try:
            transition_execution(
                db=second, execution_id=eid, to=State.RUNNING, actor="server-b", owner="b"
            )
            outcome["b"] = "resumed"
        except ConflictError as exc:
            outcome["b"] = exc

    threads = [threading.Thread(target=resume_and_hold), threading.Thread(target=resume)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    finally:
        first.close()
        second.close()
    assert isinstance(outcome["b"], ConflictError), "the run was resumed twice"
    resumed = any_db.query(
        "SELECT actor FROM events WHERE execution_id = ? AND actor LIKE ?", (eid, "server-%")
    )
    assert [r["actor"] for r in resumed] == ["server-a"]
    assert any_db.one("SELECT owner FROM executions WHERE id = ?", (eid,)) == {"owner": "a"}


def running_step(db: Database) -> str:
    """A running execution with its step 1 running."""
    eid = parked(db)
    transition_execution(db=db, execution_id=eid, to=State.RUNNING, actor="w", owner="a")
    start_step_run(
        db=db,
        execution_id=eid,
        seq=1,
        step_id="one",
        step_index=0,
        kind="sh",
        state=State.RUNNING,
        name="Running",
        actor="w",
    )
    return eid


def test_only_one_of_two_concurrent_step_transitions_wins(any_db: Database) -> None:
    """A reaper's recovery marks the step crashed while the (frozen) worker that ran it records
    its result: exactly one of them may move the step out of running."""
    eid = running_step(any_db)
    first, second = open_database(any_db.url), open_database(any_db.url)
    outcome: dict[str, object] = {}
    inside = threading.Event()

    def crash_and_hold() -> None:
        with first.transaction():
            transition_step(db=first, execution_id=eid, seq=1, to=State.CRASHED, actor="reaper")
            inside.set()
            time.sleep(0.5)  # the worker's write arrives while this one is not committed yet

    def finish() -> None:
        inside.wait(10)
        try:
            transition_step(
                db=second, execution_id=eid, seq=1, to=State.SUCCEEDED, actor="worker", cursor=1
            )
            outcome["worker"] = "succeeded"
        except ConflictError as exc:
            outcome["worker"] = exc

    threads = [threading.Thread(target=crash_and_hold), threading.Thread(target=finish)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    finally:
        first.close()
        second.close()
    assert isinstance(outcome["worker"], ConflictError), "the step left running twice"
    moved = any_db.query(
        "SELECT actor, action FROM events WHERE execution_id = ? AND action LIKE ?",
        (eid, "execution.step.%ed"),
    )
    assert [(r["actor"], r["action"]) for r in moved][-1] == ("reaper", "execution.step.crashed")
    assert any_db.query("SELECT state FROM step_runs WHERE execution_id = ?", (eid,)) == [
        {"state": "crashed"}
    ]
    assert any_db.one("SELECT cursor FROM executions WHERE id = ?", (eid,)) == {"cursor": 0}
