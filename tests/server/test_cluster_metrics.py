"""``/metrics`` of a replica shows the cluster (ADR 0017 §8): workers by kind and state, their
heartbeat ages and running executions, each queue's unclaimed dispatches and the age of the
oldest, which loops this process leads, and its own dispatch counters. Real PostgreSQL, real
redis-server (stopped for a moment to make a send fail), real child processes as workers."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from opsbook.cluster import registry
from opsbook.cluster.dispatch import claim, redispatch_unclaimed
from opsbook.cluster.leader import LeaderLock
from opsbook.config import Settings
from opsbook.db import Database, open_database
from opsbook.engine.states import State
from opsbook.executions.context import AppContext, build_context
from opsbook.executions.settings import ServerSettings
from opsbook.server.app import LEADER_LOOPS, create_app
from tests.api.harness import make_workspace
from tests.cluster.conftest import (
    RedisServer,
    child_process,
    redis_outage,
    redis_server,
    redis_url,
    run_row,
    token_of,
)

__all__ = ["redis_outage", "redis_server", "redis_url"]  # fixtures, found by name

pytestmark = pytest.mark.postgres

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(ctx: AppContext) -> Samples:
    """GET /metrics of an app on ``ctx``, as {(sample name, sorted labels): value}."""
    transport = httpx.ASGITransport(app=create_app(ctx, background=False))
    async with httpx.AsyncClient(transport=transport, base_url="http://replica") as client:
        answer = await client.get("/metrics")
    assert answer.status_code == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(answer.text)
        for s in family.samples
    }


def of(samples: Samples, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: value for (n, labels), value in samples.items() if n == name}


@pytest.fixture
def contexts(
    tmp_path: Path, pg_db: Database, pg_url: str, redis_url: str
) -> Iterator[list[AppContext]]:
    """Two replicas' contexts on one PostgreSQL and one broker."""
    ws = make_workspace(tmp_path / "ws")
    made: list[AppContext] = []
    dbs: list[Database] = []
    try:
        for n in range(2):
            db = pg_db if n == 0 else open_database(pg_url)
            if n:
                dbs.append(db)
            made.append(
                build_context(
                    settings=Settings(database_url=pg_url, broker_url=redis_url),
                    server=ServerSettings(),
                    workspace=ws,
                    db=db,
                )
            )
        yield made
    finally:
        for ctx in made:
            if ctx.leader is not None:
                ctx.leader.release()
            ctx.close_dispatcher()
        for db in dbs:
            db.close()


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


async def test_metrics_show_workers_queues_leader_and_dispatches(
    contexts: list[AppContext], redis_outage: RedisServer
) -> None:
    ctx, other = contexts
    db = ctx.db

    def register(kind: str, worker_id: str) -> str:
        return registry.register(
            db=db,
            kind=kind,
            name=f"{kind}-{worker_id.rsplit(':', 2)[1]}",
            queues=["eastus"] if kind == "worker" else [],
            concurrency=4,
            version="test",
            lease_seconds=60,
            worker_id=worker_id,
        ).id

    with contextlib.ExitStack() as stack:
        procs = [stack.enter_context(child_process()) for _ in range(4)]
        busy, stopped, dead, serve = (token_of(p.pid) for p in procs)
        for kind, wid in (
            ("worker", busy),
            ("worker", stopped),
            ("worker", dead),
            ("serve", serve),
        ):
            register(kind, wid)
        assert registry.set_state(db=db, worker_id=stopped, state="stopped")
        assert registry.declare_dead(db=db, worker_id=dead, by="test", reason="test")
        run_row(db, "run-1", owner=busy)
        run_row(db, "run-2", owner=busy)

        # Four dispatches to eastus: two wait (one for two minutes), one was claimed, one
        # belongs to a finished run; one waits on westus.
        dispatcher = ctx.dispatcher
        assert dispatcher is not None
        for eid, queue in (
            ("q-old", "eastus"),
            ("q-new", "eastus"),
            ("q-claimed", "eastus"),
            ("q-done", "eastus"),
            ("q-west", "westus"),
        ):
            run_row(db, eid, owner=None, state=State.PENDING)
            dispatcher.enqueue(db=db, execution_id=eid, queue=queue, actor="alice")
        old = _iso(datetime.now(UTC) - timedelta(seconds=120))
        db.execute("UPDATE executions SET dispatched_at = ? WHERE id = 'q-old'", (old,))
        assert claim(db=db, execution_id="q-claimed", dispatch=1, worker_id=busy)
        db.execute("UPDATE executions SET state = 'succeeded' WHERE id = 'q-done'")

        # This process leads; the other replica does not.
        ctx.leader = LeaderLock(ctx.db.url, poll=0.2, loops=LEADER_LOOPS, holder=serve)
        other.leader = LeaderLock(other.db.url, poll=0.2, loops=LEADER_LOOPS)
        assert ctx.leader.is_leader() and not other.leader.is_leader()

        # Sends: one taken by redis, one re-sent by the sweeper, one refused (redis down).
        assert dispatcher.send(execution_id="q-new", dispatch=1, queue="eastus", actor="alice")
        assert redispatch_unclaimed(db=db, dispatcher=dispatcher, older_than=60) == 1  # q-old
        redis_outage.stop()
        assert not dispatcher.send(execution_id="q-west", dispatch=1, queue="westus", actor="alice")
        redis_outage.start()

        samples = await scrape(ctx)

    assert of(samples, "opsbook_workers") == {
        (("kind", "serve"), ("state", "alive")): 1.0,
        (("kind", "worker"), ("state", "alive")): 1.0,
        (("kind", "worker"), ("state", "dead")): 1.0,
        (("kind", "worker"), ("state", "stopped")): 1.0,
    }
    ages = of(samples, "opsbook_worker_heartbeat_age_seconds")
    assert set(ages) == {
        (("kind", "worker"), ("worker", busy)),
        (("kind", "serve"), ("worker", serve)),
    }
    assert all(0 <= age < 60 for age in ages.values())
    assert of(samples, "opsbook_worker_running_executions") == {
        (("worker", busy),): 2.0,
        (("worker", serve),): 0.0,
    }
    # q-old was re-sent but is still unclaimed: the sweeper moved its dispatched_at
    assert of(samples, "opsbook_queue_waiting_executions") == {
        (("queue", "eastus"),): 2.0,
        (("queue", "westus"),): 1.0,
    }
    oldest = of(samples, "opsbook_queue_oldest_waiting_seconds")
    assert set(oldest) == {(("queue", "eastus"),), (("queue", "westus"),)}
    assert all(0 <= age < 60 for age in oldest.values())
    assert of(samples, "opsbook_background_leader") == {
        (("loop", loop),): 1.0 for loop in LEADER_LOOPS
    }
    assert of(samples, "opsbook_dispatch_sent_total") == {(("queue", "eastus"),): 2.0}
    assert of(samples, "opsbook_dispatch_resent_total") == {(("queue", "eastus"),): 1.0}
    assert of(samples, "opsbook_dispatch_send_failures_total") == {(("queue", "westus"),): 1.0}

    theirs = await scrape(other)
    assert of(theirs, "opsbook_background_leader") == {
        (("loop", loop),): 0.0 for loop in LEADER_LOOPS
    }
    assert of(theirs, "opsbook_dispatch_sent_total") == {}  # counters are per process
    assert of(theirs, "opsbook_workers") == of(samples, "opsbook_workers")  # same database


async def test_the_oldest_wait_grows_while_nobody_claims(contexts: list[AppContext]) -> None:
    ctx = contexts[0]
    dispatcher = ctx.dispatcher
    assert dispatcher is not None
    run_row(ctx.db, "stuck", owner=None, state=State.PENDING)
    dispatcher.enqueue(db=ctx.db, execution_id="stuck", queue="westus2-db", actor="alice")
    old = _iso(datetime.now(UTC) - timedelta(minutes=10))
    ctx.db.execute("UPDATE executions SET dispatched_at = ? WHERE id = 'stuck'", (old,))
    samples = await scrape(ctx)
    (age,) = of(samples, "opsbook_queue_oldest_waiting_seconds").values()
    assert 600 <= age < 700
    assert of(samples, "opsbook_background_leader") == {}  # no lifespan: no leader lock
