"""Two processes resuming the same parked run at once (two CLI `resume`s, or two servers):
only one may move it from waiting to running. On PostgreSQL the state read must lock the row;
before it did, both transitions succeeded and the run was driven twice (found by the issue 17
design spike). Real SQLite and a real PostgreSQL server."""

from __future__ import annotations

import threading
import time

from opsbook.db import Database, open_database
from opsbook.engine._journal import ExecutionRow, create_execution, transition_execution
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
