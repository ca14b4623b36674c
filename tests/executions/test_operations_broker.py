"""The execution operations with a broker (ADR 0017 §2, C1): a start answers with a ``Queued``
row dispatched to its environment's queue and leaves the driving to a worker; a person's
attestation, approval or resume dispatches the run in the transaction that records it. Without
a broker nothing changes. Real PostgreSQL, real redis-server, a real `opsbook worker`."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from opsbook.config import Settings
from opsbook.db import Database
from opsbook.engine.states import State
from opsbook.errors import ConflictError, UsageError, ValidationError
from opsbook.executions import operations
from opsbook.executions.context import AppContext, build_context
from opsbook.executions.settings import ServerSettings
from opsbook.users import accounts
from opsbook.users.access import Principal
from opsbook.workspace import Workspace
from tests.api.harness import make_workspace
from tests.cluster.conftest import events_of, run_row, token_of, wait_until

pytestmark = pytest.mark.postgres

OPSBOOK = [sys.executable, "-m", "opsbook.cli.main"]
# "legacy" has the operator role in the harness workspace's opsbook.toml
OPERATOR = Principal(
    "legacy", ("operator",), frozenset({"executions:run", "executions:read"}), "token"
)
APPROVER = Principal("ann", ("approver",), frozenset({"executions:approve"}), "token")


class Broker:
    """A workspace whose sandbox environment has a queue of its own, the server's context
    on it (``ctx``), the redis holding its messages and the workers started for it."""

    def __init__(self, root: Path, db: Database, pg_url: str, redis_url: str) -> None:
        import redis

        self.queue = f"ops-{uuid.uuid4().hex[:8]}"
        made = make_workspace(root / "ws")
        env = made.root / "environments" / "sandbox.yaml"
        env.write_text(env.read_text() + f"queue: {self.queue}\n")
        self.ws = Workspace.load(made.root)
        self.root = root
        self.db = db
        self.pg_url = pg_url
        self.redis_url = redis_url
        self.redis = redis.Redis.from_url(redis_url)
        self.ctx = build_context(
            settings=Settings(database_url=pg_url, broker_url=redis_url),
            server=ServerSettings(),
            workspace=self.ws,
            db=db,
        )
        self.procs: list[subprocess.Popen[bytes]] = []
        self.log = root / "worker.log"

    def messages(self) -> list[dict[str, Any]]:
        """The drive messages waiting in this queue: the task name and its arguments."""
        out = []
        for raw in self.redis.lrange(self.queue, 0, -1):
            message = json.loads(raw)
            args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
            out.append({"task": message["headers"]["task"], "args": args})
        return out

    def row(self, eid: str) -> dict[str, Any]:
        found = self.db.one(
            "SELECT state, state_name, queue, dispatch, claimed_dispatch, claimed_by, owner"
            " FROM executions WHERE id = ?",
            (eid,),
        )
        assert found is not None
        return found

    def wait(self, eid: str, state_name: str) -> dict[str, Any]:
        try:
            wait_until(lambda: self.row(eid)["state_name"] == state_name, timeout=60, what=eid)
        except AssertionError:
            tail = self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""
            raise AssertionError(f"{self.row(eid)}\n{tail}") from None
        return self.row(eid)

    def worker(self) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "OPSBOOK_WORKSPACE": str(self.ws.root),
            "OPSBOOK_DATABASE_URL": self.pg_url,
            "OPSBOOK_BROKER_URL": self.redis_url,
            "OPSBOOK_WORKER_HEARTBEAT": "0.25",
            "OPSBOOK_WORKER_LEASE": "5",
            "OPSBOOK_REDISPATCH_AFTER": "600",  # a lost message stays lost in these tests
        }
        with self.log.open("ab") as out:
            proc = subprocess.Popen(
                [*OPSBOOK, "worker", "-q", self.queue, "-c", "2"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.procs.append(proc)
        wait_until(
            lambda: (
                self.db.one("SELECT 1 FROM workers WHERE pid = ?", (proc.pid,))
                or proc.poll() is not None
            ),
            what="the worker's registration",
        )
        assert proc.poll() is None, self.log.read_text(errors="replace")
        return proc

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        self.redis.delete(self.queue)
        self.redis.close()
        self.ctx.close_dispatcher()


@pytest.fixture
def broker(tmp_path: Path, pg_db: Database, pg_url: str, redis_url: str) -> Iterator[Broker]:
    made = Broker(tmp_path, pg_db, pg_url, redis_url)
    try:
        yield made
    finally:
        made.close()


async def test_a_start_answers_queued_and_its_message_waits_in_redis(broker: Broker) -> None:
    row = await operations.start_execution(
        ctx=broker.ctx, principal=OPERATOR, ref="checks#quick", environment=None, params={}
    )
    assert (row.state, row.state_name, row.queue) == (State.PENDING, "Queued", broker.queue)
    assert row.owner is None and not broker.ctx.tasks  # nothing runs in the server
    stored = broker.row(row.id)
    assert (stored["dispatch"], stored["claimed_dispatch"], stored["claimed_by"]) == (1, 0, None)
    assert broker.messages() == [{"task": "opsbook.drive", "args": [row.id, 1, "legacy", None]}]
    metrics = broker.ctx.dispatch_metrics
    assert metrics is not None and metrics.snapshot()["sent"] == {broker.queue: 1}
    created = events_of(broker.db, "execution.created")
    assert [e["subject"] for e in created] == [f"execution:{row.id}"]


async def test_a_bad_start_is_refused_before_anything_is_queued(broker: Broker) -> None:
    with pytest.raises(ValidationError, match="needs confirmation"):
        await operations.start_execution(
            ctx=broker.ctx, principal=OPERATOR, ref="checks#change", environment=None, params={}
        )
    assert broker.db.one("SELECT COUNT(*) AS n FROM executions") == {"n": 0}
    assert broker.messages() == []


async def test_a_worker_drives_what_the_operations_dispatch(broker: Broker) -> None:
    accounts.create_account(
        db=broker.db,
        actor="test",
        username="ann",
        roles=["approver"],
        known=accounts.known_roles(extra=("approver",)),
    )
    ctx = broker.ctx
    # A start whose message is lost (the broker restarted empty) before any worker runs.
    lost = await operations.start_execution(
        ctx=ctx, principal=OPERATOR, ref="checks#quick", environment=None, params={}
    )
    broker.redis.delete(broker.queue)
    worker = broker.worker()
    worker_id = token_of(worker.pid)

    quick = await operations.start_execution(
        ctx=ctx, principal=OPERATOR, ref="checks#quick", environment=None, params={}
    )
    done = broker.wait(quick.id, "Succeeded")
    assert (done["dispatch"], done["claimed_dispatch"], done["claimed_by"]) == (1, 1, worker_id)
    claimed = [e for e in events_of(broker.db, "execution.claimed") if quick.id in e["subject"]]
    assert [e["payload"]["worker"] for e in claimed] == [worker_id]
    assert broker.row(lost.id)["state_name"] == "Queued"  # nobody was told about it

    # A manual step parks the run; the attestation dispatches it again.
    manual = await operations.start_execution(
        ctx=ctx, principal=OPERATOR, ref="checks#manual", environment=None, params={}
    )
    assert broker.wait(manual.id, "AwaitingInput")["dispatch"] == 1
    await operations.attest_step(
        ctx=ctx, principal=OPERATOR, execution_id=manual.id, items=None, note="checked"
    )
    assert broker.wait(manual.id, "Succeeded")["dispatch"] == 2

    # The deciding approval dispatches the run.
    change = await operations.start_execution(
        ctx=ctx,
        principal=OPERATOR,
        ref="checks#change",
        environment=None,
        params={},
        confirm=True,
    )
    broker.wait(change.id, "AwaitingApproval")
    status = await operations.decide_approval(
        ctx=ctx, principal=APPROVER, execution_id=change.id, decision="approve", comment=None
    )
    assert status.verdict == "approved"
    assert broker.wait(change.id, "Succeeded")["dispatch"] == 2

    # A resume sends the lost run again: a new dispatch, claimed by the worker.
    resumed = await operations.resume_execution(
        ctx=ctx, principal=OPERATOR, execution_id=lost.id, decision=None
    )
    assert resumed.id == lost.id
    done = broker.wait(lost.id, "Succeeded")
    assert (done["dispatch"], done["claimed_dispatch"]) == (2, 2)
    assert not ctx.tasks  # the server drove none of them


async def test_a_resume_of_a_run_a_live_process_drives_is_refused(broker: Broker) -> None:
    eid = run_row(broker.db, "live-run", owner=token_of(os.getpid()), environment="sandbox")
    with pytest.raises(ConflictError, match="running in another process"):
        await operations.resume_execution(
            ctx=broker.ctx, principal=OPERATOR, execution_id=eid, decision=None
        )
    assert broker.row(eid)["dispatch"] == 0
    assert broker.messages() == []


async def test_without_a_broker_runs_are_driven_in_the_server(
    tmp_path: Path, pg_db: Database, pg_url: str
) -> None:
    ctx: AppContext = build_context(
        settings=Settings(database_url=pg_url),
        server=ServerSettings(),
        workspace=make_workspace(tmp_path / "ws"),
        db=pg_db,
    )
    assert ctx.dispatcher is None and ctx.dispatch_metrics is None
    row = await operations.start_execution(
        ctx=ctx, principal=OPERATOR, ref="checks#quick", environment=None, params={}
    )
    assert row.queue is None
    task = ctx.tasks.get(row.id)
    if task is not None:
        await task
    stored = pg_db.one(
        "SELECT state, owner, queue, dispatch FROM executions WHERE id = ?", (row.id,)
    )
    assert stored == {
        "state": "succeeded",
        "owner": token_of(os.getpid()),
        "queue": None,
        "dispatch": 0,
    }


def test_the_broker_url_is_checked_where_it_is_read() -> None:
    assert Settings.from_env({"OPSBOOK_BROKER_URL": "redis://r:6379/0"}).broker_url == (
        "redis://r:6379/0"
    )
    assert Settings.from_env({}).broker_url is None
    with pytest.raises(UsageError) as caught:
        Settings.from_env({"OPSBOOK_BROKER_URL": "http://r:6379"})
    assert caught.value.field == "OPSBOOK_BROKER_URL"
    assert "redis://" in (caught.value.hint or "")
