"""The reaper: dead workers declared dead once, their RUNNING runs dispatched once (host queue
when a step process is left, else the run's queue or its home queue), nothing else touched;
and the background pass that runs it."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from opsbook.cluster import dispatch
from opsbook.cluster.background import run_background
from opsbook.cluster.reaper import ReapResult, reap
from opsbook.cluster.registry import get_worker, list_workers, register
from opsbook.cluster.settings import ClusterSettings
from opsbook.db import Database, open_database
from opsbook.engine.states import State
from tests.cluster.conftest import child_process, events_of, open_step, run_row, token_of

HOST = socket.gethostname()


@dataclass
class RecordingDispatcher:
    """The real enqueue (the dispatch columns in the caller's transaction); sends recorded."""

    sent: list[tuple[str, int, str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def enqueue(self, *, db: Database, execution_id: str, queue: str, actor: str) -> int:
        assert db.in_transaction  # it joins the reaper's transaction
        return dispatch.enqueue(db=db, execution_id=execution_id, queue=queue, actor=actor)

    def send(
        self,
        *,
        execution_id: str,
        dispatch: int,
        queue: str,
        actor: str,
        decision: str | None = None,
    ) -> bool:
        with self.lock:
            self.sent.append((execution_id, dispatch, queue, actor))
        return True


def add(db: Database, worker_id: str, *, lease: float = 3600) -> str:
    register(
        db=db,
        kind="worker",
        name="w",
        queues=["eastus"],
        concurrency=2,
        version="",
        lease_seconds=lease,
        worker_id=worker_id,
    )
    return worker_id


def dispatch_of(db: Database, eid: str) -> tuple[int, str | None]:
    row = db.one("SELECT dispatch, queue FROM executions WHERE id = ?", (eid,))
    assert row is not None
    return int(row["dispatch"]), row["queue"]


@pytest.fixture
def dead_worker(any_db: Database) -> Iterator[str]:
    """A worker on this host whose process was killed (kill -9), owning three RUNNING runs."""
    with child_process() as proc:
        wid = add(any_db, token_of(proc.pid))
        proc.kill()
        proc.wait(timeout=10)
    run_row(any_db, "mid-step", owner=wid, queue="eastus")
    open_step(any_db, "mid-step", pid=proc.pid)  # its step's process group may be left
    run_row(any_db, "routed", owner=wid, queue="westus2")
    run_row(any_db, "inproc", owner=wid, environment="dr")  # no queue: its home queue
    run_row(any_db, "parked", owner=wid, state=State.WAITING)
    yield wid


def test_a_dead_workers_running_runs_are_dispatched_once(
    any_db: Database, dead_worker: str
) -> None:
    live = add(any_db, "elsewhere.example:77:1700000000")
    run_row(any_db, "healthy", owner=live, queue="eastus")
    recorder = RecordingDispatcher()
    result = reap(
        db=any_db,
        dispatcher=recorder,
        actor="system:reaper:test",
        home_queue_of={"dr": "westus2"}.__getitem__,
    )
    assert result.declared == (dead_worker,)
    queues = {r.execution_id: (r.dispatch, r.queue, r.sent) for r in result.recoveries}
    assert queues == {
        "mid-step": (1, dispatch.host_queue(HOST), True),
        "routed": (1, "westus2", True),
        "inproc": (1, "westus2", True),
    }
    assert sorted(recorder.sent) == sorted(
        (eid, n, q, "system:reaper:test") for eid, (n, q, _) in queues.items()
    )
    assert dispatch_of(any_db, "mid-step") == (1, dispatch.host_queue(HOST))
    assert dispatch_of(any_db, "parked") == (0, None)  # not RUNNING: a person resumes it
    assert dispatch_of(any_db, "healthy") == (0, "eastus")  # a live worker's run
    (event,) = events_of(any_db, "cluster.worker.dead")
    assert event["actor"] == "system:reaper:test"
    assert sorted(event["payload"]["executions"]) == ["inproc", "mid-step", "routed"]
    assert "is gone" in event["payload"]["reason"]
    # the run keeps its dead owner: the claiming worker's resume finds it dead and recovers
    row = any_db.one("SELECT owner, state FROM executions WHERE id = 'mid-step'")
    assert row == {"owner": dead_worker, "state": "running"}
    # a second pass finds nothing to do
    again = reap(db=any_db, dispatcher=recorder, actor="system:reaper:test")
    assert (again.declared, again.recoveries) == ((), ())
    assert [w.id for w in list_workers(db=any_db)] == [live]


def test_without_a_dispatcher_the_reaper_only_declares_dead(
    any_db: Database, dead_worker: str
) -> None:
    result = reap(db=any_db, dispatcher=None, actor="system:reaper:test")
    assert (result.declared, result.recoveries) == ((dead_worker,), ())
    worker = get_worker(db=any_db, worker_id=dead_worker)
    assert worker is not None
    assert worker.state == "dead"
    assert dispatch_of(any_db, "mid-step") == (0, "eastus")


def test_two_reapers_racing_dispatch_each_run_once(any_db: Database, dead_worker: str) -> None:
    other = open_database(any_db.url)
    recorder = RecordingDispatcher()
    results: list[object] = []
    start = threading.Barrier(2)

    def run(db: Database, name: str) -> None:
        start.wait(timeout=10)
        try:
            results.append(reap(db=db, dispatcher=recorder, actor=f"system:reaper:{name}"))
        except BaseException as exc:  # reported below
            results.append(exc)

    threads = [
        threading.Thread(target=run, args=(db, name)) for db, name in ((any_db, "a"), (other, "b"))
    ]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    finally:
        other.close()
    assert not [r for r in results if isinstance(r, BaseException)]
    assert sum(len(r.declared) for r in results if isinstance(r, ReapResult)) == 1
    assert sorted(eid for eid, *_ in recorder.sent) == ["inproc", "mid-step", "routed"]
    assert len(events_of(any_db, "cluster.worker.dead")) == 1
    assert {dispatch_of(any_db, e)[0] for e in ("inproc", "mid-step", "routed")} == {1}


def test_a_worker_never_reaps_itself(any_db: Database) -> None:
    me = add(any_db, "elsewhere.example:5:1700000000", lease=0.01)
    any_db.execute("UPDATE workers SET heartbeat_at = heartbeat_at - 100 WHERE id = ?", (me,))
    assert reap(db=any_db, dispatcher=None, actor="x", skip=(me,)).declared == ()
    assert reap(db=any_db, dispatcher=None, actor="x").declared == (me,)


async def test_the_background_pass_reaps_resends_and_prunes(any_db: Database) -> None:
    gone = add(any_db, "elsewhere.example:9:1700000000", lease=0.2)
    run_row(any_db, "orphan", owner=gone, queue="eastus")
    old = add(any_db, "elsewhere.example:10:1700000000")
    any_db.execute(
        "UPDATE workers SET state = 'stopped', ended_at = '2020-01-01T00:00:00.000000Z'"
        " WHERE id = ?",
        (old,),
    )
    # a dispatch the broker lost long ago: the sweeper re-sends it
    run_row(any_db, "lost", owner=None, queue="eastus")
    with any_db.transaction():
        dispatch.enqueue(db=any_db, execution_id="lost", queue="eastus", actor="alice")
    any_db.execute(
        "UPDATE executions SET dispatched_at = '2020-01-01T00:00:00.000000Z' WHERE id = 'lost'"
    )
    recorder = RecordingDispatcher()
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_background(
            database_url=any_db.url,
            worker_id="elsewhere.example:1:1700000000",
            dispatcher=recorder,
            settings=ClusterSettings(heartbeat=0.05, lease=2, redispatch_after=1),
            stop=stop,
        )
    )
    try:
        for _ in range(400):
            with recorder.lock:
                sent = {eid for eid, *_ in recorder.sent}
            if sent == {"orphan", "lost"}:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError(f"timed out: sent {recorder.sent}")
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    worker = get_worker(db=any_db, worker_id=gone)
    assert worker is not None
    assert worker.state == "dead"
    assert get_worker(db=any_db, worker_id=old) is None  # pruned
    assert dispatch_of(any_db, "orphan") == (1, "eastus")
