"""Dispatch, claim and the sweeper (ADR 0017 §3) on real SQLite and PostgreSQL, and the
Celery dispatcher against a real redis-server: a dispatch is committed before it is sent, a
worker claims each dispatch once, duplicates and stale messages are dropped, and dispatches
nobody claimed are re-sent once however many sweepers run."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from opsbook.cluster.celery_app import make_app
from opsbook.cluster.dispatch import (
    CeleryDispatcher,
    DispatchMetrics,
    claim,
    drop_reason,
    enqueue,
    home_queue,
    host_queue,
    redispatch_unclaimed,
    step_queue,
)
from opsbook.db import Database, open_database
from opsbook.engine._journal import ExecutionRow, create_execution, transition_execution
from opsbook.engine.states import State
from opsbook.sandbox.config import free_port

NOW = "2026-12-04T10:00:00.000000Z"
LONG_AGO = "2026-01-01T00:00:00.000000Z"


def new_run(db: Database, eid: str, *, environment: str = "sandbox") -> str:
    create_execution(
        db=db,
        execution=ExecutionRow(
            id=eid,
            parent_id=None,
            runbook_id="rb",
            runbook_path="rb.md",
            runbook_hash="h",
            procedure_id="p",
            environment=environment,
            params={},
            digest="d",
            state=State.PENDING,
            state_name="Queued",
            reason=None,
            cursor=0,
            dry_run=False,
            started_by="alice",
            owner=None,
            created_at=NOW,
            updated_at=NOW,
            finished_at=None,
        ),
        actor="alice",
    )
    return eid


def row(db: Database, eid: str) -> dict[str, Any]:
    found = db.one(
        "SELECT queue, dispatch, claimed_dispatch, claimed_by, dispatched_at FROM executions"
        " WHERE id = ?",
        (eid,),
    )
    assert found is not None
    return found


@pytest.fixture
def second(any_db: Database) -> Iterator[Database]:
    """Another connection to the same database (another worker)."""
    db = open_database(any_db.url)
    yield db
    db.close()


# -- queues -----------------------------------------------------------------------------------
def test_queues_of_an_environment_and_a_step(tmp_path: Path) -> None:
    from opsbook.runbooks.model import StepOptions
    from opsbook.workspace import Environment

    east = Environment(name="east", path=tmp_path / "east.yaml", data={"queue": "eastus"})
    plain = Environment(name="sandbox", path=tmp_path / "sandbox.yaml", data={})
    assert home_queue(east) == "eastus"
    assert home_queue(plain) == "default"

    def step(queue: str | None) -> Any:  # step_queue reads only the step's options
        return SimpleNamespace(options=StepOptions(queue=queue))

    dr = Environment(
        name="dr",
        path=tmp_path / "dr.yaml",
        data={"queue": "westus2", "queues": {"db": "westus2-db"}},
    )
    assert step_queue(step("db"), dr) == "westus2-db"
    assert step_queue(step(None), dr) == "westus2"
    assert step_queue(step("gpu"), dr) == "gpu"  # not mapped: the name as written
    assert host_queue("Worker-1.Example") == "host.worker-1.example"
    assert host_queue().startswith("host.")


# -- enqueue and claim ------------------------------------------------------------------------
def test_enqueue_bumps_the_dispatch_number_inside_the_callers_transaction(
    any_db: Database, second: Database
) -> None:
    eid = new_run(any_db, "enq1")
    assert row(any_db, eid)["dispatch"] == 0
    with any_db.transaction():
        assert enqueue(db=any_db, execution_id=eid, queue="eastus", actor="alice") == 1
        if any_db.dialect == "postgresql":  # not visible to others before the commit
            assert row(second, eid)["dispatch"] == 0
    seen = row(second, eid)
    assert (seen["dispatch"], seen["queue"], seen["claimed_dispatch"]) == (1, "eastus", 0)
    assert seen["dispatched_at"]
    assert enqueue(db=any_db, execution_id=eid, queue="westus2", actor="bob") == 2
    assert row(any_db, eid)["queue"] == "westus2"


def test_a_rolled_back_transaction_takes_its_dispatch_with_it(any_db: Database) -> None:
    eid = new_run(any_db, "enq2")
    with pytest.raises(RuntimeError), any_db.transaction():
        enqueue(db=any_db, execution_id=eid, queue="default", actor="alice")
        raise RuntimeError("the state change failed")
    assert row(any_db, eid)["dispatch"] == 0


def test_each_dispatch_is_claimed_exactly_once_across_two_connections(
    any_db: Database, second: Database
) -> None:
    eid = new_run(any_db, "claim1")
    wins: dict[str, list[int]] = {"a": [], "b": []}
    for _ in range(30):
        n = enqueue(db=any_db, execution_id=eid, queue="default", actor="alice")
        start = threading.Barrier(2)

        def take(db: Database, who: str, n: int = n, start: threading.Barrier = start) -> None:
            start.wait(10)
            if claim(db=db, execution_id=eid, dispatch=n, worker_id=who):
                wins[who].append(n)

        threads = [
            threading.Thread(target=take, args=(any_db, "a")),
            threading.Thread(target=take, args=(second, "b")),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    claimed = sorted(wins["a"] + wins["b"])
    assert claimed == list(range(1, 31))  # every dispatch once, never twice
    final = row(any_db, eid)
    assert final["claimed_dispatch"] == 30
    assert final["claimed_by"] == ("a" if 30 in wins["a"] else "b")


def test_duplicate_stale_and_finished_deliveries_are_dropped(
    any_db: Database, second: Database
) -> None:
    eid = new_run(any_db, "drop1")
    one = enqueue(db=any_db, execution_id=eid, queue="default", actor="alice")
    assert claim(db=any_db, execution_id=eid, dispatch=one, worker_id="w1")
    # the broker delivers the same message again (redelivery, or two at once)
    assert not claim(db=second, execution_id=eid, dispatch=one, worker_id="w2")
    assert drop_reason(db=second, execution_id=eid, dispatch=one) == "duplicate"
    assert row(any_db, eid)["claimed_by"] == "w1"

    two = enqueue(db=any_db, execution_id=eid, queue="default", actor="alice")
    three = enqueue(db=any_db, execution_id=eid, queue="default", actor="alice")
    # an old message arrives after a newer dispatch: stale, whoever takes it
    assert not claim(db=second, execution_id=eid, dispatch=two, worker_id="w2")
    assert drop_reason(db=second, execution_id=eid, dispatch=two) == "stale"
    assert claim(db=second, execution_id=eid, dispatch=three, worker_id="w2")

    transition_execution(db=any_db, execution_id=eid, to=State.RUNNING, actor="w2", owner="w2")
    transition_execution(db=any_db, execution_id=eid, to=State.SUCCEEDED, actor="w2")
    four = enqueue(db=any_db, execution_id=eid, queue="default", actor="alice")
    assert not claim(db=any_db, execution_id=eid, dispatch=four, worker_id="w1")
    assert drop_reason(db=any_db, execution_id=eid, dispatch=four) == "finished"
    assert drop_reason(db=any_db, execution_id="nosuch", dispatch=1) == "missing"
    assert not claim(db=any_db, execution_id="nosuch", dispatch=1, worker_id="w1")


# -- the Celery dispatcher and the sweeper (real redis-server) ---------------------------------
def queued(redis_url: str, queue: str) -> list[list[Any]]:
    """The ``opsbook.drive`` arguments waiting in a Redis queue, oldest first."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        raw = client.lrange(queue, 0, -1)
    finally:
        client.close()
    out = []
    for item in reversed(raw):  # kombu pushes on the left
        message = json.loads(item)
        assert message["headers"]["task"] == "opsbook.drive"
        args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        out.append(args)
    return out


@pytest.fixture
def fresh_queues(redis_url: str) -> Iterator[str]:
    """The session's redis, emptied before and after the test."""
    import redis

    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield redis_url
    client.flushdb()
    client.close()


def test_send_publishes_one_drive_message_to_the_queue(fresh_queues: str) -> None:
    dispatcher = CeleryDispatcher(make_app(fresh_queues))
    assert dispatcher.send(execution_id="e1", dispatch=3, queue="eastus", actor="alice")
    assert dispatcher.send(
        execution_id="e1", dispatch=4, queue="eastus", actor="bob", decision="retry"
    )
    assert queued(fresh_queues, "eastus") == [["e1", 3, "alice", None], ["e1", 4, "bob", "retry"]]
    assert dispatcher.metrics.snapshot()["sent"] == {"eastus": 2}


def test_send_to_a_broker_that_is_down_fails_at_once_and_counts_it() -> None:
    dispatcher = CeleryDispatcher(make_app(f"redis://127.0.0.1:{free_port()}/0"))
    assert not dispatcher.send(execution_id="e1", dispatch=1, queue="eastus", actor="alice")
    assert not dispatcher.send(execution_id="e1", dispatch=2, queue="eastus", actor="alice")
    counts = dispatcher.metrics.snapshot()
    assert counts["send_failures"] == {"eastus": 2} and counts["sent"] == {}


def test_the_sweeper_resends_only_old_unclaimed_dispatches(
    any_db: Database, fresh_queues: str
) -> None:
    old = new_run(any_db, "old1")
    young = new_run(any_db, "young1")
    taken = new_run(any_db, "taken1")
    on_host = new_run(any_db, "host1", environment="east")
    ended = new_run(any_db, "ended1")
    for eid, queue in (
        (old, "eastus"),
        (young, "eastus"),
        (taken, "eastus"),
        (on_host, "host.deadbox"),
        (ended, "eastus"),
    ):
        enqueue(db=any_db, execution_id=eid, queue=queue, actor="alice")
    assert claim(db=any_db, execution_id=taken, dispatch=1, worker_id="w1")
    any_db.execute("UPDATE executions SET state = 'aborted' WHERE id = ?", (ended,))
    any_db.execute(
        "UPDATE executions SET dispatched_at = ? WHERE id IN (?, ?, ?, ?)",
        (LONG_AGO, old, taken, on_host, ended),
    )
    metrics = DispatchMetrics()
    dispatcher = CeleryDispatcher(make_app(fresh_queues), metrics=metrics)

    sent = redispatch_unclaimed(
        db=any_db,
        dispatcher=dispatcher,
        older_than=30,
        home_queue_of=lambda env: {"east": "eastus"}.get(env, "default"),
    )
    assert sent == 2
    assert sorted(queued(fresh_queues, "eastus")) == [
        [on_host, 1, "system:cluster", None],
        [old, 1, "system:cluster", None],
    ]
    assert queued(fresh_queues, "host.deadbox") == []
    assert row(any_db, on_host)["queue"] == "eastus"  # nobody on that host took it
    assert row(any_db, old)["dispatched_at"] > LONG_AGO  # sent again now: not again at once
    assert metrics.snapshot()["resent"] == {"eastus": 2}
    assert redispatch_unclaimed(db=any_db, dispatcher=dispatcher, older_than=30) == 0


def test_two_sweepers_send_each_lost_dispatch_once(
    any_db: Database, second: Database, fresh_queues: str
) -> None:
    lost = [new_run(any_db, f"lost{i}") for i in range(20)]
    for eid in lost:
        enqueue(db=any_db, execution_id=eid, queue="eastus", actor="alice")
    any_db.execute("UPDATE executions SET dispatched_at = ?", (LONG_AGO,))
    start = threading.Barrier(2)
    sent: dict[str, int] = {}

    def sweep(db: Database, who: str) -> None:
        dispatcher = CeleryDispatcher(make_app(fresh_queues))
        start.wait(10)
        sent[who] = redispatch_unclaimed(db=db, dispatcher=dispatcher, older_than=30)

    threads = [
        threading.Thread(target=sweep, args=(any_db, "a")),
        threading.Thread(target=sweep, args=(second, "b")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sent["a"] + sent["b"] == 20
    messages = queued(fresh_queues, "eastus")
    assert sorted(m[0] for m in messages) == sorted(lost)  # each once
