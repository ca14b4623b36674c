"""The leader lock: exactly one holder on PostgreSQL (advisory lock) and on SQLite (lock file),
takeover after the holder's session ends (closed, terminated, kill -9), each acquisition
audited, and while_leader running a loop only on the holder."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from opsbook.cluster.leader import LEADER_KEY, LeaderLock, while_leader
from opsbook.db import Database
from tests.cluster.conftest import events_of, wait_until


@pytest.fixture
def locks() -> Iterator[list[LeaderLock]]:
    made: list[LeaderLock] = []
    yield made
    for lock in made:
        lock.release()


def holders(db: Database) -> list[str]:
    return [str(e["payload"]["holder"]) for e in events_of(db, "cluster.leader.acquired")]


def terminate_holder(db: Database) -> int:
    """End the lock's session from the server side (what a lost connection does)."""
    rows = db.query(
        "SELECT pg_terminate_backend(pid) AS ok FROM pg_locks"
        " WHERE locktype = 'advisory' AND granted AND objid = ?",
        (LEADER_KEY,),
    )
    return len(rows)


@pytest.mark.postgres
def test_one_leader_on_postgresql_and_takeover_when_released(
    pg_db: Database, locks: list[LeaderLock]
) -> None:
    a = LeaderLock(pg_db.url, poll=0.1, loops=("monitoring",), holder="replica-a")
    b = LeaderLock(pg_db.url, poll=0.1, loops=("monitoring",), holder="replica-b")
    locks += [a, b]
    assert a.is_leader()
    assert not b.is_leader()
    assert a.is_leader()  # confirmed on its connection: still the leader
    assert (a.held, b.held) == (True, False)
    (event,) = events_of(pg_db, "cluster.leader.acquired")
    assert event["actor"] == "system:cluster"
    assert event["payload"] == {"loops": ["monitoring"], "holder": "replica-a", "key": LEADER_KEY}
    a.release()
    assert b.is_leader()
    assert not a.is_leader()
    assert holders(pg_db) == ["replica-a", "replica-b"]


@pytest.mark.postgres
def test_a_lost_connection_is_no_longer_the_leader(
    pg_db: Database, locks: list[LeaderLock]
) -> None:
    a = LeaderLock(pg_db.url, holder="replica-a")
    b = LeaderLock(pg_db.url, holder="replica-b")
    locks += [a, b]
    assert a.is_leader()
    assert terminate_holder(pg_db) == 1
    wait_until(lambda: b.is_leader(), what="the other replica to take the lock")
    assert not a.is_leader()  # its SELECT 1 failed: it knows it lost, and cannot retake it
    assert holders(pg_db) == ["replica-a", "replica-b"]


HOLDER = textwrap.dedent(
    """
    import sys, time
    from opsbook.cluster.leader import LeaderLock
    lock = LeaderLock(sys.argv[1], holder="killed-replica")
    assert lock.is_leader()
    print("leading", flush=True)
    time.sleep(600)
    """
)


@pytest.mark.postgres
def test_a_killed_holder_loses_the_lock_at_once(pg_db: Database, locks: list[LeaderLock]) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, pg_db.url], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "leading"
        mine = LeaderLock(pg_db.url, holder="survivor")
        locks.append(mine)
        assert not mine.is_leader()
        proc.kill()
        proc.wait(timeout=10)
        wait_until(mine.is_leader, what="the survivor to take the lock")
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
    assert holders(pg_db) == ["killed-replica", "survivor"]


@pytest.mark.parametrize("any_db", ["sqlite"], indirect=True)
def test_one_leader_on_sqlite_by_a_lock_file(any_db: Database, locks: list[LeaderLock]) -> None:
    a = LeaderLock(any_db.url, holder="server-a")
    b = LeaderLock(any_db.url, holder="server-b")
    locks += [a, b]
    assert a.lock_path is not None
    assert a.lock_path.parent == Path(any_db.url.removeprefix("sqlite:///")).parent
    assert a.is_leader()
    assert a.lock_path.exists()
    assert not b.is_leader()
    assert a.is_leader()
    a.release()
    assert b.is_leader()
    assert not a.is_leader()
    assert holders(any_db) == ["server-a", "server-b"]


@pytest.mark.postgres
async def test_while_leader_runs_the_loop_only_on_the_holder_and_moves_it(
    pg_db: Database, locks: list[LeaderLock]
) -> None:
    a = LeaderLock(pg_db.url, poll=0.05, holder="replica-a")
    b = LeaderLock(pg_db.url, poll=0.05, holder="replica-b")
    locks += [a, b]
    running: dict[str, int] = {"a": 0, "b": 0}
    stopped: list[str] = []

    def loop(name: str) -> Callable[[], Awaitable[None]]:
        async def body() -> None:
            running[name] += 1
            try:
                await asyncio.Event().wait()  # a loop that runs until cancelled
            finally:
                running[name] -= 1
                stopped.append(name)

        return body

    async def until(check: Callable[[], bool], what: str) -> None:
        for _ in range(400):
            if check():
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}")

    task_a = asyncio.create_task(while_leader(a, "monitoring", loop("a")))
    await until(lambda: running["a"] == 1, "replica a to run the loop")
    task_b = asyncio.create_task(while_leader(b, "monitoring", loop("b")))
    try:
        await asyncio.sleep(0.3)  # b polls several times meanwhile
        assert running == {"a": 1, "b": 0}
        assert terminate_holder(pg_db) == 1
        await until(lambda: running == {"a": 0, "b": 1}, "the loop to move to replica b")
        assert stopped == ["a"]
        assert holders(pg_db) == ["replica-a", "replica-b"]
    finally:
        for task in (task_a, task_b):
            task.cancel()
        await asyncio.gather(task_a, task_b, return_exceptions=True)
    assert running == {"a": 0, "b": 0}
    events = events_of(pg_db, "cluster.leader.acquired")
    assert all(e["payload"]["loops"] == ["monitoring"] for e in events)


@pytest.mark.postgres
async def test_while_leader_returns_when_the_body_returns(
    pg_db: Database, locks: list[LeaderLock]
) -> None:
    lock = LeaderLock(pg_db.url, poll=0.05, holder="replica-a")
    locks.append(lock)
    ran: list[int] = []

    async def body() -> None:
        ran.append(1)

    await asyncio.wait_for(while_leader(lock, "backups", body), timeout=30)
    assert ran == [1]
    assert lock.held
