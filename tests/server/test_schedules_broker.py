"""Scheduled procedures with a broker (ADR 0017 §6): the due time's claim, the ``Queued`` run
and its dispatch commit in one transaction and the message is sent after it; two replicas
start a due time once; a start that fails keeps its time claimed. Real PostgreSQL and
redis-server."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from opsbook.config import Settings
from opsbook.db import Database, open_database
from opsbook.executions.context import AppContext, build_context
from opsbook.executions.settings import ServerSettings
from opsbook.server.schedules import tick
from opsbook.users.access import SCHEDULER
from opsbook.workspace import Workspace
from tests.api.harness import make_workspace
from tests.cluster.conftest import events_of, redis_server, redis_url
from tests.server.test_schedules import SCHEDULED

__all__ = ["redis_server", "redis_url"]  # fixtures, found by name

pytestmark = pytest.mark.postgres


@dataclass
class Replicas:
    contexts: list[AppContext]
    queue: str
    redis: Any

    def waiting(self) -> list[list[Any]]:
        """The arguments of the drive messages waiting in the sandbox queue."""
        return [
            json.loads(base64.b64decode(json.loads(m)["body"]))[0]
            for m in self.redis.lrange(self.queue, 0, -1)
        ]


@pytest.fixture
def replicas(tmp_path: Path, pg_db: Database, pg_url: str, redis_url: str) -> Iterator[Replicas]:
    """Two replicas' contexts (one connection each) on one PostgreSQL and broker, whose
    sandbox environment has a queue of its own."""
    import redis

    made = make_workspace(tmp_path / "ws")
    (made.runbooks_dir / "timed.md").write_text(SCHEDULED)
    queue = f"sched-{uuid.uuid4().hex[:8]}"
    env = made.root / "environments" / "sandbox.yaml"
    env.write_text(env.read_text() + f"queue: {queue}\n")
    ws = Workspace.load(made.root)
    contexts = [
        build_context(
            settings=Settings(database_url=pg_url, broker_url=redis_url),
            server=ServerSettings(),
            workspace=ws,
            db=pg_db if n == 0 else open_database(pg_url),
        )
        for n in range(2)
    ]
    client = redis.Redis.from_url(redis_url)
    try:
        yield Replicas(contexts, queue, client)
    finally:
        pg_db.execute("DELETE FROM schedule_claims")  # pg_db empties the journal, not these
        client.delete(queue)
        client.close()
        for ctx in contexts:
            ctx.close_dispatcher()
        contexts[1].db.close()


async def test_two_replicas_queue_a_due_procedure_once(replicas: Replicas) -> None:
    first, second = replicas.contexts
    now = datetime.now(UTC).replace(second=5, microsecond=0)
    started = [*await tick(first, now), *await tick(second, now)]
    assert len(started) == 1
    (eid,) = started
    row = first.db.one(
        "SELECT state, state_name, queue, dispatch, claimed_dispatch, started_by, procedure_id"
        " FROM executions WHERE id = ?",
        (eid,),
    )
    assert row == {
        "state": "pending",
        "state_name": "Queued",
        "queue": replicas.queue,
        "dispatch": 1,
        "claimed_dispatch": 0,
        "started_by": SCHEDULER,
        "procedure_id": "every-minute",
    }
    claims = first.db.query("SELECT due_at, execution_id FROM schedule_claims")
    assert claims == [{"due_at": now.replace(second=0).isoformat(), "execution_id": eid}]
    assert replicas.waiting() == [[eid, 1, SCHEDULER, None]]
    assert not first.tasks and not second.tasks  # the servers drive nothing

    # The next minute: the queued run has not finished, so that time is skipped.
    later = now + timedelta(minutes=1)
    assert await tick(second, later) == []
    skipped = events_of(first.db, "schedule.run.skipped")
    assert [e["payload"]["previous_execution"] for e in skipped] == [eid]
    assert len(replicas.waiting()) == 1


async def test_a_start_that_fails_keeps_its_time_claimed_and_queues_nothing(
    replicas: Replicas,
) -> None:
    first, second = replicas.contexts
    (first.workspace.root / "environments" / "sandbox.yaml").unlink()  # the default env
    now = datetime.now(UTC).replace(second=5, microsecond=0)
    assert await tick(first, now) == []
    assert await tick(second, now) == []  # claimed: not tried again
    assert first.db.query("SELECT execution_id FROM schedule_claims") == [{"execution_id": None}]
    assert first.db.one("SELECT COUNT(*) AS n FROM executions") == {"n": 0}
    assert replicas.waiting() == []
