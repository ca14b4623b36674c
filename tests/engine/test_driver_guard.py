"""The driver guard and the crash rules across hosts (ADR 0017 §3 (b), §4).

A driving engine's journal writes name it (``driver=`` its owner token) and are refused with
:class:`OwnershipLost` unless the run is still ``running`` under that token: a frozen worker
that wakes after its run was declared crashed or recovered elsewhere changes nothing.
``owner_alive(owner, db=)`` judges a registered worker by its ``workers`` row on the database
clock; a crashed step whose processes ran on another host is never retried by itself. Real
SQLite and PostgreSQL, real ``sh`` processes."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from opsbook.db import Database, open_database
from opsbook.engine import _journal as journal
from opsbook.engine._base import epoch_now_sql, owner_alive, owner_token
from opsbook.engine.states import State
from opsbook.errors import ConflictError
from opsbook.runbooks.catalogue import load_catalogue
from opsbook.workspace import load_environment
from tests.engine.conftest import Harness, make_workspace

ME = "host-a:100:1"
STALE = "host-b:200:2"
NOW = "2026-12-04T10:00:00.000000Z"


def new_run(db: Database, *, eid: str = "guard1", owner: str = ME, **row: Any) -> str:
    fields: dict[str, Any] = {
        "id": eid,
        "parent_id": None,
        "runbook_id": "rb",
        "runbook_path": "rb.md",
        "runbook_hash": "h",
        "procedure_id": "p",
        "environment": "sandbox",
        "params": {},
        "digest": "d",
        "state": State.PENDING,
        "state_name": "Pending",
        "reason": None,
        "cursor": 0,
        "dry_run": False,
        "started_by": "alice",
        "owner": None,
        "created_at": NOW,
        "updated_at": NOW,
        "finished_at": None,
        **row,
    }
    journal.create_execution(db=db, execution=journal.ExecutionRow(**fields), actor="alice")
    journal.transition_execution(
        db=db, execution_id=eid, to=State.RUNNING, actor="alice", owner=owner
    )
    journal.start_step_run(
        db=db,
        execution_id=eid,
        seq=1,
        step_id="one",
        step_index=0,
        kind="sh",
        state=State.RUNNING,
        name="Running",
        actor="alice",
        driver=owner,
    )
    return eid


def snapshot(db: Database, eid: str) -> tuple[Any, ...]:
    return (
        db.one("SELECT state, state_name, owner, cursor FROM executions WHERE id = ?", (eid,)),
        db.query("SELECT seq, state, result FROM step_runs WHERE execution_id = ?", (eid,)),
        db.one("SELECT COUNT(*) AS n FROM events WHERE execution_id = ?", (eid,)),
    )


WRITES: dict[str, Callable[[Database, str, str], None]] = {
    "transition_step": lambda db, eid, driver: journal.transition_step(
        db=db, execution_id=eid, seq=1, to=State.SUCCEEDED, actor="w", cursor=1, driver=driver
    ),
    "start_step_run": lambda db, eid, driver: journal.start_step_run(
        db=db,
        execution_id=eid,
        seq=2,
        step_id="two",
        step_index=1,
        kind="sh",
        state=State.RUNNING,
        name="Running",
        actor="w",
        driver=driver,
    ),
    "transition_execution": lambda db, eid, driver: journal.transition_execution(
        db=db, execution_id=eid, to=State.FAILED, actor="w", reason="boom", driver=driver
    ),
    "set_cursor": lambda db, eid, driver: journal.set_cursor(
        db=db, execution_id=eid, cursor=5, driver=driver
    ),
}


@pytest.mark.parametrize("write", sorted(WRITES))
def test_a_stale_drivers_writes_are_refused_and_change_nothing(
    any_db: Database, write: str
) -> None:
    eid = new_run(any_db)
    before = snapshot(any_db, eid)
    with pytest.raises(journal.OwnershipLost) as info:
        WRITES[write](any_db, eid, STALE)
    assert isinstance(info.value, ConflictError) and info.value.exit_code == 2
    assert STALE in info.value.message and ME in info.value.message
    assert snapshot(any_db, eid) == before
    WRITES[write](any_db, eid, ME)  # the driver that holds it may
    assert snapshot(any_db, eid) != before


@pytest.mark.parametrize("write", sorted(WRITES))
def test_the_owner_may_not_drive_a_run_that_is_no_longer_running(
    any_db: Database, write: str
) -> None:
    eid = new_run(any_db)
    with any_db.transaction():  # what a reaper's recovery does: the run is crashed now
        journal.transition_execution(db=any_db, execution_id=eid, to=State.CRASHED, actor="r")
        journal.transition_step(db=any_db, execution_id=eid, seq=1, to=State.CRASHED, actor="r")
    before = snapshot(any_db, eid)
    with pytest.raises(journal.OwnershipLost, match="crashed"):
        WRITES[write](any_db, eid, ME)
    assert snapshot(any_db, eid) == before


@pytest.fixture
def harness(any_db: Database, tmp_path: Path) -> Iterator[Harness]:
    ws = make_workspace(tmp_path / "ws")
    yield Harness(ws, any_db)


async def _wait_for(check: Callable[[], bool], what: str, deadline: float = 30.0) -> None:
    until = time.monotonic() + deadline
    while not check():
        if time.monotonic() > until:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def test_a_frozen_engine_that_wakes_after_a_recovery_writes_nothing(
    harness: Harness, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    harness.write(
        "slow.md",
        f"""
        ---
        id: slow
        title: Slow
        ---

        # Slow

        ## Run

        ```yaml procedure
        permissions: [operator]
        ```

        ### Wait

        ```sh
        while [ ! -e {go} ]; do sleep 0.05; done
        ```

        ### After

        ```sh
        echo after
        ```
        """,
    )
    other = open_database(harness.db.url)
    stale = harness.engine()

    def step_running() -> bool:
        return other.one("SELECT COUNT(*) AS n FROM step_runs WHERE state = 'running'") == {"n": 1}

    async def scenario() -> tuple[str, BaseException | None]:
        rb, proc = load_catalogue(harness.ws.runbooks_dir).resolve("slow#run")
        task = asyncio.create_task(
            stale.start(
                runbook=rb,
                procedure=proc,
                environment=load_environment(harness.ws, "sandbox"),
                params={},
                started_by="alice",
            )
        )
        await _wait_for(step_running, "the step to run")
        row = other.one("SELECT id FROM executions")
        assert row is not None
        eid = str(row["id"])
        # meanwhile the worker was declared dead and another one recovered the run
        with other.transaction():
            journal.transition_execution(
                db=other, execution_id=eid, to=State.CRASHED, actor="system:reaper"
            )
            journal.transition_step(
                db=other, execution_id=eid, seq=1, to=State.CRASHED, actor="system:reaper"
            )
            journal.transition_step(
                db=other,
                execution_id=eid,
                seq=1,
                to=State.FAILED,
                name="Crashed",
                actor="system:worker",
                cursor=0,
            )
            journal.transition_execution(
                db=other,
                execution_id=eid,
                to=State.RUNNING,
                owner="elsewhere:1:1",
                actor="system:worker",
                verb="resumed",
            )
        go.touch()  # the frozen engine wakes: its step "finishes"
        try:
            await task
        except BaseException as exc:  # the test inspects what the stale engine raised
            return eid, exc
        return eid, None

    try:
        eid, error = asyncio.run(scenario())
        assert isinstance(error, journal.OwnershipLost), error
        row = journal.get_execution(db=other, execution_id=eid)
        assert (row.state, row.owner, row.cursor) == (State.RUNNING, "elsewhere:1:1", 0)
        runs = journal.step_runs(db=other, execution_id=eid)
        assert [(r.seq, r.state, r.state_name) for r in runs] == [(1, State.FAILED, "Crashed")]
        actions = [e["action"] for e in journal.events(db=other, execution_id=eid)]
        assert "execution.failed" not in actions and "execution.step.succeeded" not in actions
        assert actions[-1] == "execution.resumed"
    finally:
        other.close()


# -- owner_alive with the workers table -------------------------------------------------------
def register(
    db: Database, worker_id: str, *, state: str = "alive", age: float = 0.0, lease: float = 60.0
) -> None:
    host, pid, _ = worker_id.rsplit(":", 2)
    db.execute(
        "INSERT INTO workers (id, name, kind, host, pid, queues, concurrency, version,"
        " started_at, heartbeat_at, lease_seconds, state)"
        f" VALUES (?, ?, 'worker', ?, ?, '[]', 1, '', ?, {epoch_now_sql(db)} - ?, ?, ?)",
        (worker_id, worker_id, host, int(pid), NOW, age, lease, state),
    )


def test_owner_alive_without_a_workers_row_is_todays_rule(any_db: Database) -> None:
    me = owner_token()
    assert owner_alive(me, db=any_db) and owner_alive(me)
    assert not owner_alive(f"{socket.gethostname()}:999999999:1", db=any_db)  # no such pid
    assert owner_alive("elsewhere.example:1:1", db=any_db)  # cannot tell: assumed alive
    assert not owner_alive(None, db=any_db) and not owner_alive("garbage", db=any_db)


@pytest.mark.parametrize(
    ("state", "age", "alive"),
    [
        ("alive", 0.0, True),
        ("draining", 5.0, True),
        ("alive", 61.0, False),  # the lease (60 s) ran out on the database clock
        ("dead", 0.0, False),
        ("stopped", 0.0, False),
    ],
)
def test_a_registered_owner_on_another_host_is_judged_by_its_row(
    any_db: Database, state: str, age: float, alive: bool
) -> None:
    worker = "elsewhere.example:4242:1700000000"
    register(any_db, worker, state=state, age=age)
    assert owner_alive(worker, db=any_db) is alive
    assert owner_alive(worker) is True  # without the database: today's rule


def test_a_registered_owner_on_this_host_is_dead_when_its_pid_is_gone(any_db: Database) -> None:
    gone = f"{socket.gethostname()}:999999999:1"
    register(any_db, gone)
    assert not owner_alive(gone, db=any_db)
    me = owner_token()
    register(any_db, me)
    assert owner_alive(me, db=any_db)


# -- a crashed step on another host -----------------------------------------------------------
CRASHY = """
---
id: crashy
title: Crashy
---

# Crashy

## Run

```yaml procedure
permissions: [operator]
```

### One

```sh {idempotent}
echo again
```
"""


def crashed_run(harness: Harness, *, owner: str, pid: int | None) -> str:
    harness.write("crashy.md", CRASHY)
    rb, proc = load_catalogue(harness.ws.runbooks_dir).resolve("crashy#run")
    eid = new_run(
        harness.db,
        eid=f"crash{pid}",
        owner=owner,
        runbook_id=rb.id,
        runbook_path=str(rb.path),
        runbook_hash=rb.content_hash,
        procedure_id=proc.id,
    )
    if pid is not None:
        harness.db.execute("UPDATE step_runs SET pid = ? WHERE execution_id = ?", (pid, eid))
    return eid


def test_a_crashed_step_whose_processes_ran_on_another_host_waits_for_a_person(
    harness: Harness,
) -> None:
    dead = "far-host.example:4242:1700000000"
    register(harness.db, dead, state="dead")
    # a pid that exists here (this test's own) must not be mistaken for the far host's process
    eid = crashed_run(harness, owner=dead, pid=os.getpid())
    out = asyncio.run(harness.engine().resume(execution_id=eid, actor="system:worker"))
    assert (out.state, out.state_name) == (State.WAITING, "AwaitingRecoveryDecision")
    row = journal.get_execution(db=harness.db, execution_id=eid)
    assert row.reason is not None and "far-host.example" in row.reason
    assert "could not be checked" in row.reason
    actions = [e["action"] for e in journal.events(db=harness.db, execution_id=eid)]
    assert "execution.step.leftovers_stopped" not in actions
    # resuming it again without a decision still does not retry it by itself
    out = asyncio.run(harness.engine().resume(execution_id=eid, actor="alice"))
    assert out.state_name == "AwaitingRecoveryDecision"
    out = asyncio.run(harness.engine().resume(execution_id=eid, actor="alice", decision="retry"))
    assert out.state is State.SUCCEEDED


@pytest.mark.parametrize("where", ["far-host.example", "here"])
def test_an_idempotent_crashed_step_without_a_process_is_retried(
    harness: Harness, where: str
) -> None:
    host = socket.gethostname() if where == "here" else where
    dead = f"{host}:999999999:1700000000"
    register(harness.db, dead, state="dead")
    eid = crashed_run(harness, owner=dead, pid=None)
    out = asyncio.run(harness.engine().resume(execution_id=eid, actor="system:worker"))
    assert out.state is State.SUCCEEDED
    runs = journal.step_runs(db=harness.db, execution_id=eid)
    assert [(r.state, r.state_name) for r in runs] == [
        (State.FAILED, "Crashed"),
        (State.SUCCEEDED, "Succeeded"),
    ]
