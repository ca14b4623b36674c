"""The workers table: registration, heartbeats on the database clock, the declare-dead CAS, the
dead by lease and dead by pid rules, the listing with running executions, pruning."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator

import pytest

from opsbook.cluster.registry import (
    beat,
    db_now,
    dead_candidates,
    declare_dead,
    get_worker,
    list_workers,
    prune,
    register,
    set_state,
    why_dead,
)
from opsbook.db import Database, open_database
from opsbook.engine._base import owner_token
from opsbook.engine.states import State
from opsbook.errors import ConflictError, UsageError
from tests.cluster.conftest import (
    child_process,
    events_of,
    open_step,
    run_row,
    token_of,
    wait_until,
)

HOST = socket.gethostname()


def add(db: Database, worker_id: str, *, lease: float = 60.0, kind: str = "worker") -> str:
    register(
        db=db,
        kind=kind,
        name=f"w-{worker_id[-6:]}",
        queues=["eastus", f"host.{HOST}"],
        concurrency=4,
        version="0.1.0",
        lease_seconds=lease,
        worker_id=worker_id,
    )
    return worker_id


def foreign(n: int) -> str:
    """The owner token of a process on another host (only its lease can tell it is dead)."""
    return f"elsewhere-{n}.example:{1000 + n}:1700000000"


def state_of(db: Database, worker_id: str) -> str:
    worker = get_worker(db=db, worker_id=worker_id)
    assert worker is not None
    return worker.state


@pytest.fixture
def second(any_db: Database) -> Iterator[Database]:
    db = open_database(any_db.url)
    yield db
    db.close()


def test_register_beat_and_list_with_the_runs_a_worker_owns(any_db: Database) -> None:
    me = register(
        db=any_db,
        kind="worker",
        name="east-1",
        queues=["eastus"],
        concurrency=2,
        version="0.1.0",
        lease_seconds=60,
    )
    assert me.id == owner_token()
    assert (me.host, me.pid, me.state) == (HOST, int(me.id.split(":")[1]), "alive")
    assert me.heartbeat_at <= db_now(any_db)
    run_row(any_db, "run1", owner=me.id, queue="eastus")
    open_step(any_db, "run1", step_id="restart")
    run_row(any_db, "run2", owner=foreign(1))  # another worker's
    first = me.heartbeat_at
    assert beat(db=any_db, worker_id=me.id)
    listed = list_workers(db=any_db)
    assert [w.id for w in listed] == [me.id]
    worker = listed[0]
    assert worker.heartbeat_at >= first
    assert 0 <= worker.heartbeat_age_s < 60
    assert [(r.execution_id, r.step) for r in worker.running] == [("run1", "restart")]
    shown = json.loads(json.dumps(worker.to_dict()))
    assert shown["queues"] == ["eastus"]
    assert shown["running"] == [
        {
            "execution_id": "run1",
            "runbook": "rb",
            "procedure": "p",
            "ref": "rb#p",
            "environment": "sandbox",
            "queue": "eastus",
            "step": "restart",
            "seq": 1,
        }
    ]
    assert isinstance(shown["heartbeat_age_s"], float)


def test_own_states_stopped_rows_are_listed_only_with_ended_ones(any_db: Database) -> None:
    wid = add(any_db, foreign(1))
    assert set_state(db=any_db, worker_id=wid, state="draining")
    assert state_of(any_db, wid) == "draining"
    assert beat(db=any_db, worker_id=wid)  # a draining worker still beats
    assert set_state(db=any_db, worker_id=wid, state="stopped")
    assert not beat(db=any_db, worker_id=wid)  # stopped: the caller fences
    assert list_workers(db=any_db) == []
    (ended,) = list_workers(db=any_db, include_ended=True)
    assert (ended.state, ended.ended_by) == ("stopped", wid)
    assert ended.ended_at is not None
    with pytest.raises(UsageError) as err:
        set_state(db=any_db, worker_id=wid, state="dead")
    assert err.value.field == "state"
    # a stopped row is revived by registering again (a server app started twice in a process)
    add(any_db, wid)
    assert state_of(any_db, wid) == "alive"


def test_bad_registration_input_is_a_usage_error(any_db: Database) -> None:
    with pytest.raises(UsageError) as err:
        register(
            db=any_db,
            kind="robot",
            name="x",
            queues=[],
            concurrency=1,
            version="",
            lease_seconds=60,
        )
    assert err.value.field == "kind"
    with pytest.raises(UsageError) as err:
        add(any_db, "not-a-token")
    assert err.value.field == "worker_id"


def test_declare_dead_race_has_exactly_one_winner_and_one_audit_record(
    any_db: Database, second: Database
) -> None:
    wid = add(any_db, foreign(1))
    run_row(any_db, "run1", owner=wid)
    run_row(any_db, "done", owner=wid, state=State.SUCCEEDED)
    results: dict[str, bool] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def race(name: str, db: Database) -> None:
        try:
            start.wait(timeout=10)
            results[name] = declare_dead(db=db, worker_id=wid, by=f"reaper-{name}")
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [
        threading.Thread(target=race, args=(n, d)) for n, d in (("a", any_db), ("b", second))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors
    assert sorted(results.values()) == [False, True]
    winner = next(n for n, won in results.items() if won)
    (event,) = events_of(any_db, "cluster.worker.dead")
    assert event["actor"] == f"reaper-{winner}"
    assert event["subject"] == f"worker:{wid}"
    assert event["payload"]["executions"] == ["run1"]  # RUNNING ones only
    row = get_worker(db=any_db, worker_id=wid)
    assert row is not None
    assert (row.state, row.ended_by) == ("dead", f"reaper-{winner}")
    assert not beat(db=any_db, worker_id=wid)  # the worker fences at its next beat
    assert not declare_dead(db=any_db, worker_id=wid, by="late")
    with pytest.raises(ConflictError):
        add(any_db, wid)  # a dead worker's process may not come back


def test_dead_by_lease_on_the_database_clock(any_db: Database) -> None:
    short = add(any_db, foreign(1), lease=0.3)
    long = add(any_db, foreign(2), lease=3600)
    wait_until(
        lambda: short in {w.id for w in dead_candidates(db=any_db)},
        what="the 0.3 s lease to run out",
    )
    found = {w.id: w for w in dead_candidates(db=any_db)}
    assert long not in found  # other hosts are judged by lease only
    assert found[short].lease_expired
    assert "no heartbeat for" in why_dead(found[short])
    # a worker that beat since it was found late is left alive by the expiry-checking CAS
    assert not declare_dead(db=any_db, worker_id=long, by="reaper", expired_only=True)
    assert declare_dead(db=any_db, worker_id=short, by="reaper", expired_only=True)


def test_dead_by_pid_on_this_host(any_db: Database) -> None:
    with child_process() as proc:
        wid = add(any_db, token_of(proc.pid), lease=3600)
        assert wid not in {w.id for w in dead_candidates(db=any_db)}
        proc.kill()
        proc.wait(timeout=10)
        (found,) = [w for w in dead_candidates(db=any_db) if w.id == wid]
    assert not found.lease_expired
    assert why_dead(found) == f"process {proc.pid} on {HOST} is gone"
    assert declare_dead(db=any_db, worker_id=wid, by="reaper")
    assert dead_candidates(db=any_db) == []


def test_prune_removes_only_long_ended_rows(any_db: Database) -> None:
    old, recent, live = add(any_db, foreign(1)), add(any_db, foreign(2)), add(any_db, foreign(3))
    assert declare_dead(db=any_db, worker_id=old, by="reaper")
    assert set_state(db=any_db, worker_id=recent, state="stopped")
    any_db.execute(
        "UPDATE workers SET ended_at = '2020-01-01T00:00:00.000000Z' WHERE id = ?", (old,)
    )
    assert prune(db=any_db, older_than_days=7) == 1
    assert {w.id for w in list_workers(db=any_db, include_ended=True)} == {recent, live}
