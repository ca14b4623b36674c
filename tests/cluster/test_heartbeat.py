"""The heartbeat thread: it beats on its own connection and fences once when its row is no
longer alive or no beat could be written for fence_after seconds."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from opsbook.cluster.heartbeat import Heartbeat
from opsbook.cluster.registry import declare_dead, get_worker, register, set_state
from opsbook.db import Database
from opsbook.sandbox.config import free_port
from tests.cluster.conftest import wait_until

WORKER = "elsewhere.example:4242:1700000000"


class Fences:
    """Records on_fence calls (the real callback stops the steps and exits 70)."""

    def __init__(self) -> None:
        self.reasons: list[str] = []
        self.called = threading.Event()

    def __call__(self, reason: str) -> None:
        self.reasons.append(reason)
        self.called.set()


@pytest.fixture
def worker(any_db: Database) -> str:
    register(
        db=any_db,
        kind="worker",
        name="w",
        queues=["default"],
        concurrency=1,
        version="",
        lease_seconds=60,
        worker_id=WORKER,
    )
    return WORKER


@pytest.fixture
def fences() -> Fences:
    return Fences()


@pytest.fixture
def heartbeats() -> Iterator[list[Heartbeat]]:
    started: list[Heartbeat] = []
    yield started
    for hb in started:
        hb.stop()


def test_it_beats_and_fences_once_when_its_row_is_declared_dead(
    any_db: Database, worker: str, fences: Fences, heartbeats: list[Heartbeat]
) -> None:
    hb = Heartbeat(
        database_url=any_db.url,
        worker_id=worker,
        interval=0.05,
        fence_after=30,
        on_fence=fences,
    ).start()
    heartbeats.append(hb)
    before = get_worker(db=any_db, worker_id=worker)
    assert before is not None
    wait_until(lambda: hb.beats >= 3, what="three heartbeats")
    after = get_worker(db=any_db, worker_id=worker)
    assert after is not None
    assert after.heartbeat_at > before.heartbeat_at
    assert declare_dead(db=any_db, worker_id=worker, by="reaper")
    assert fences.called.wait(20)
    hb.stop()
    assert len(fences.reasons) == 1
    assert "no longer alive" in fences.reasons[0]
    assert hb.fenced == fences.reasons[0]


def test_it_fences_when_no_beat_can_be_written(fences: Fences, heartbeats: list[Heartbeat]) -> None:
    nobody_listens = f"postgresql://opsbook@127.0.0.1:{free_port()}/opsbook"
    hb = Heartbeat(
        database_url=nobody_listens,
        worker_id=WORKER,
        interval=0.05,
        fence_after=0.5,
        on_fence=fences,
    ).start()
    heartbeats.append(hb)
    assert fences.called.wait(20)
    hb.stop()
    assert len(fences.reasons) == 1
    assert "no heartbeat could be written" in fences.reasons[0]
    assert hb.beats == 0


def test_a_stopped_heartbeat_never_fences(
    any_db: Database, worker: str, fences: Fences, heartbeats: list[Heartbeat]
) -> None:
    hb = Heartbeat(
        database_url=any_db.url,
        worker_id=worker,
        interval=0.05,
        fence_after=0.3,
        on_fence=fences,
    ).start()
    heartbeats.append(hb)
    wait_until(lambda: hb.beats >= 1, what="a heartbeat")
    hb.stop()  # a clean exit: stop beating, then mark the row stopped
    assert set_state(db=any_db, worker_id=worker, state="stopped")
    assert not hb.beat_once()
    assert not fences.called.wait(0.6)  # longer than fence_after: nothing fenced
    assert fences.reasons == []
