"""Hand-offs between workers' queues (ADR 0017 §2, §5): an engine driving a slice for a worker
(``Engine(queue=...)``) hands the run to another queue at an executable step that belongs there
(``RUNNING → PENDING``, a new dispatch, the message sent after the commit); the engine of that
queue claims it (``PENDING → RUNNING``) and carries on. In-process engines ignore queues.

No broker here: a small recording :class:`~opsbook.engine._hooks.Dispatcher` does the dispatch
UPDATE in the caller's transaction and records what is sent, with what a second connection sees
at that moment (so a send before the commit would show). Real SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from opsbook.audit._log import utcnow
from opsbook.db import Database, open_database
from opsbook.engine import _journal as journal
from opsbook.engine._executor import Engine
from opsbook.engine._hooks import Reporter, StepReport
from opsbook.engine.guards import StartRequest
from opsbook.engine.states import State
from opsbook.errors import PermissionDenied, UsageError
from opsbook.runbooks.catalogue import load_catalogue
from opsbook.workspace import load_environment
from tests.engine.conftest import Harness, make_workspace

EAST = "name: east\nplatform: local\nqueue: eastus\nqueues:\n  db: eastus-db\n"

RUNBOOK = """\
---
id: hand
title: Hand-offs
---

# Hand-offs

## Three

```yaml procedure
permissions: [operator]
```

### One

```sh
echo one
```

### Two

```sh {queue=db}
echo two
```

### Three

```sh
echo three
```

## Parent

```yaml procedure
permissions: [operator]
```

### First

```sh
echo first
```

### Pick

```decide
- else: {run: "hand#child"}
```

### Last

```sh
echo last
```

## Child

```yaml procedure
permissions: [operator]
```

### On the database host

```sh {queue=db}
echo db
```
"""

WORKER = "system:worker"


@dataclass
class Sent:
    execution_id: str
    dispatch: int
    queue: str
    seen: dict[str, Any]  # the execution row as another connection saw it when sent


@dataclass
class RecordingDispatcher:
    observer: Database
    enqueued: list[tuple[str, str, int, bool]] = field(default_factory=list)
    sent: list[Sent] = field(default_factory=list)

    def enqueue(self, *, db: Database, execution_id: str, queue: str, actor: str) -> int:
        row = db.one(
            "UPDATE executions SET dispatch = dispatch + 1, queue = ?, dispatched_at = ?"
            " WHERE id = ? RETURNING dispatch",
            (queue, utcnow(), execution_id),
        )
        assert row is not None
        self.enqueued.append((execution_id, queue, int(row["dispatch"]), db.in_transaction))
        return int(row["dispatch"])

    def send(
        self,
        *,
        execution_id: str,
        dispatch: int,
        queue: str,
        actor: str,
        decision: str | None = None,
    ) -> bool:
        seen = self.observer.one(
            "SELECT state, state_name, dispatch, queue FROM executions WHERE id = ?",
            (execution_id,),
        )
        self.sent.append(Sent(execution_id, dispatch, queue, dict(seen or {})))
        return True


@dataclass
class World:
    harness: Harness
    dispatcher: RecordingDispatcher

    @property
    def db(self) -> Database:
        return self.harness.db

    def engine(self, queue: str | None, **kw: Any) -> Engine:
        return self.harness.engine(queue=queue, dispatcher=self.dispatcher, **kw)

    def create(self, ref: str) -> str:
        rb, proc = load_catalogue(self.harness.ws.runbooks_dir).resolve(ref)
        env = load_environment(self.harness.ws, "east")
        row, dispatch = self.engine("eastus").create(
            runbook=rb,
            procedure=proc,
            environment=env,
            params={},
            started_by="alice",
            queue=env.queue,
        )
        self.dispatcher.send(execution_id=row.id, dispatch=dispatch, queue=env.queue, actor="a")
        return row.id


@pytest.fixture
def world(any_db: Database, tmp_path: Any) -> Iterator[World]:
    ws = make_workspace(tmp_path / "ws")
    (ws.environments_dir / "east.yaml").write_text(EAST)
    harness = Harness(ws, any_db)
    harness.write("hand.md", RUNBOOK)
    observer = open_database(any_db.url)
    try:
        yield World(harness, RecordingDispatcher(observer))
    finally:
        observer.close()


def timeline(db: Database, eid: str) -> list[str]:
    out = []
    for ev in journal.events(db=db, execution_id=eid):
        action, p = ev["action"].removeprefix("execution."), ev["payload"]
        if action == "claimed":
            out.append(f"claimed@{p['queue']}" if "queue" in p else "claimed")
        elif action == "queued":
            out.append(f"queued@{p['queue']}#{p['dispatch']}")
        elif action.startswith("step."):
            out.append(f"{action.removeprefix('step.')}:{p['step']}")
        else:
            out.append(action)
    return out


def finished_steps(db: Database, eid: str) -> list[tuple[str, str]]:
    return [(r.step_id, str(r.state)) for r in journal.step_runs(db=db, execution_id=eid)]


def test_a_step_on_another_queue_is_handed_off_and_back(world: World) -> None:
    db, sent = world.db, world.dispatcher.sent
    eid = world.create("hand#three")
    row = journal.get_execution(db=db, execution_id=eid)
    assert (row.state, row.state_name, row.queue) == (State.PENDING, "Queued", "eastus")
    assert sent[-1].dispatch == 1 and sent[-1].seen["state"] == "pending"

    out = asyncio.run(world.engine("eastus").resume(execution_id=eid, actor=WORKER))
    assert (out.state, out.state_name) == (State.PENDING, "Queued")
    assert finished_steps(db, eid) == [("one", "succeeded")]  # step two was not run here
    handed = sent[-1]
    assert (handed.execution_id, handed.dispatch, handed.queue) == (eid, 2, "eastus-db")
    # sent after the commit: another connection already saw the hand-off and its dispatch
    assert handed.seen == {
        "state": "pending",
        "state_name": "Queued",
        "dispatch": 2,
        "queue": "eastus-db",
    }
    assert world.dispatcher.enqueued[-1] == (eid, "eastus-db", 2, True)  # in the transaction

    out = asyncio.run(world.engine("eastus-db").resume(execution_id=eid, actor=WORKER))
    assert (out.state, out.state_name) == (State.PENDING, "Queued")
    assert finished_steps(db, eid) == [("one", "succeeded"), ("two", "succeeded")]
    assert (sent[-1].dispatch, sent[-1].queue, sent[-1].seen["dispatch"]) == (3, "eastus", 3)

    out = asyncio.run(world.engine("eastus").resume(execution_id=eid, actor=WORKER))
    assert out.state is State.SUCCEEDED
    assert finished_steps(db, eid) == [
        ("one", "succeeded"),
        ("two", "succeeded"),
        ("three", "succeeded"),
    ]
    assert timeline(db, eid) == [
        "created",
        "claimed@eastus",
        "started:one",
        "succeeded:one",
        "queued@eastus-db#2",
        "claimed@eastus-db",
        "started:two",
        "succeeded:two",
        "queued@eastus#3",
        "claimed@eastus",
        "started:three",
        "succeeded:three",
        "succeeded",
    ]
    claims = [e for e in journal.events(db=db, execution_id=eid) if e["action"].endswith("claimed")]
    assert all(e["payload"]["worker"] == world.engine(None).owner for e in claims)
    assert len(sent) == 3


@pytest.mark.parametrize("with_dispatcher", [True, False])
def test_in_process_engines_ignore_queues(world: World, with_dispatcher: bool) -> None:
    rb, proc = load_catalogue(world.harness.ws.runbooks_dir).resolve("hand#three")
    engine = world.harness.engine(dispatcher=world.dispatcher if with_dispatcher else None)
    out = asyncio.run(
        engine.start(
            runbook=rb,
            procedure=proc,
            environment=load_environment(world.harness.ws, "east"),
            params={},
            started_by="alice",
        )
    )
    assert out.state is State.SUCCEEDED
    assert [s for s, _ in finished_steps(world.db, out.execution_id)] == ["one", "two", "three"]
    assert world.dispatcher.enqueued == [] and world.dispatcher.sent == []
    row = world.db.one("SELECT queue, dispatch FROM executions WHERE id = ?", (out.execution_id,))
    assert row == {"queue": None, "dispatch": 0}


def test_an_in_process_resume_of_a_queued_run_claims_and_drives_all_of_it(world: World) -> None:
    eid = world.create("hand#three")
    out = asyncio.run(world.harness.engine().resume(execution_id=eid, actor="alice"))
    assert out.state is State.SUCCEEDED
    assert len(finished_steps(world.db, eid)) == 3
    assert timeline(world.db, eid)[:2] == ["created", "claimed"]


class DrainAfterFirstStep(Reporter):
    def __init__(self) -> None:
        self.engine: Engine | None = None

    def step_finished(self, report: StepReport) -> None:
        assert self.engine is not None
        self.engine.draining = True  # what a worker's SIGTERM does, at any moment


def test_a_draining_worker_hands_the_run_back_to_its_queue(world: World) -> None:
    eid = world.create("hand#three")
    reporter = DrainAfterFirstStep()
    engine = world.engine("eastus", reporter=reporter)
    reporter.engine = engine
    out = asyncio.run(engine.resume(execution_id=eid, actor=WORKER))
    assert (out.state, out.state_name) == (State.PENDING, "Queued")
    assert "draining" in (out.reason or "")
    assert finished_steps(world.db, eid) == [("one", "succeeded")]
    assert (world.dispatcher.sent[-1].queue, world.dispatcher.sent[-1].dispatch) == ("eastus", 2)
    assert timeline(world.db, eid)[-1] == "queued@eastus#2"


def test_a_child_handed_off_parks_its_parent_and_its_worker_continues_the_parent(
    world: World,
) -> None:
    db, sent = world.db, world.dispatcher.sent
    parent = world.create("hand#parent")
    out = asyncio.run(world.engine("eastus").resume(execution_id=parent, actor=WORKER))
    assert (out.state, out.state_name) == (State.WAITING, "AwaitingChild")
    child = db.one("SELECT id, state, queue FROM executions WHERE parent_id = ?", (parent,))
    assert child is not None and (child["state"], child["queue"]) == ("pending", "eastus-db")
    assert (sent[-1].execution_id, sent[-1].queue) == (child["id"], "eastus-db")

    # the child's worker runs it, then resumes the parent, which hands itself back home
    out = asyncio.run(world.engine("eastus-db").resume(execution_id=child["id"], actor=WORKER))
    assert out.state is State.SUCCEEDED
    row = journal.get_execution(db=db, execution_id=parent)
    assert (row.state, row.state_name, row.queue) == (State.PENDING, "Queued", "eastus")
    assert (sent[-1].execution_id, sent[-1].queue) == (parent, "eastus")
    assert finished_steps(db, parent) == [("first", "succeeded"), ("pick", "succeeded")]

    out = asyncio.run(world.engine("eastus").resume(execution_id=parent, actor=WORKER))
    assert out.state is State.SUCCEEDED
    assert [s for s, _ in finished_steps(db, parent)] == ["first", "pick", "last"]
    assert finished_steps(db, child["id"]) == [("on-the-database-host", "succeeded")]


def test_a_parent_resumed_while_its_child_is_queued_stays_parked(world: World) -> None:
    parent = world.create("hand#parent")
    asyncio.run(world.engine("eastus").resume(execution_id=parent, actor=WORKER))
    child = world.db.one("SELECT id FROM executions WHERE parent_id = ?", (parent,))
    assert child is not None
    out = asyncio.run(world.engine("eastus").resume(execution_id=parent, actor="alice"))
    assert (out.state, out.state_name) == (State.WAITING, "AwaitingChild")
    # the queued child was not taken by this slice: it waits for its own queue's worker
    assert journal.get_execution(db=world.db, execution_id=child["id"]).state is State.PENDING


def test_a_worker_loads_the_runbook_by_id_when_the_path_is_not_there(world: World) -> None:
    eid = world.create("hand#three")
    world.db.execute(
        "UPDATE executions SET runbook_path = ? WHERE id = ?", ("/elsewhere/hand.md", eid)
    )
    out = asyncio.run(world.engine("eastus").resume(execution_id=eid, actor=WORKER))
    assert out.state is State.PENDING and finished_steps(world.db, eid) == [("one", "succeeded")]


def test_create_needs_a_dispatcher(world: World) -> None:
    rb, proc = load_catalogue(world.harness.ws.runbooks_dir).resolve("hand#three")
    with pytest.raises(UsageError, match="dispatcher"):
        world.harness.engine().create(
            runbook=rb,
            procedure=proc,
            environment=load_environment(world.harness.ws, "east"),
            params={},
            started_by="alice",
            queue="eastus",
        )
    assert world.db.one("SELECT COUNT(*) AS n FROM executions") == {"n": 0}


def test_create_checks_what_start_checks(world: World) -> None:
    def no_friday_changes(request: StartRequest) -> None:
        raise PermissionDenied(f"{request.user} may not start changes today", hint="wait")

    rb, proc = load_catalogue(world.harness.ws.runbooks_dir).resolve("hand#three")
    with pytest.raises(PermissionDenied, match="may not start"):
        world.engine("eastus", start_guards=[no_friday_changes]).create(
            runbook=rb,
            procedure=proc,
            environment=load_environment(world.harness.ws, "east"),
            params={},
            started_by="alice",
            queue="eastus",
        )
    assert world.db.one("SELECT COUNT(*) AS n FROM executions") == {"n": 0}
    assert world.dispatcher.enqueued == []
