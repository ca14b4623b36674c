"""`opsbook worker` end to end: real redis-server, real PostgreSQL, real worker subprocesses
driving real `sh` steps (ADR 0017 §1-§4, §8). Waits poll the database with a deadline."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from opsbook.cluster.celery_app import make_app, settings
from opsbook.cluster.dispatch import CeleryDispatcher
from opsbook.db import Database
from opsbook.engine._executor import Engine
from opsbook.engine.secrets import EnvSecretProvider, Redactor, SecretResolver
from opsbook.runbooks.catalogue import load_catalogue
from opsbook.runbooks.parser import parse_file
from opsbook.sandbox.config import free_port
from opsbook.workspace import Workspace, load_environment
from tests.engine.conftest import make_workspace

from .conftest import events_of, wait_until

pytestmark = pytest.mark.postgres

OPSBOOK = [sys.executable, "-m", "opsbook.cli.main"]

THREE_STEPS = """
---
id: three
title: Three steps
---

# Three

## Go

```yaml procedure
permissions: [operator]
```

### One

```sh
echo one >> {log}
```

### Two

```sh
sleep {pause}; echo two >> {log}
```

### Three

```sh
echo three >> {log}
```
"""


def test_the_celery_settings_are_the_adr_ones() -> None:
    conf = settings("redis://127.0.0.1:6379/0")
    assert conf["task_acks_late"] is True
    assert conf["worker_prefetch_multiplier"] == 1
    assert conf["task_ignore_result"] is True and conf["result_backend"] is None
    assert conf["task_publish_retry_policy"] == {"max_retries": 0}
    assert conf["accept_content"] == ["json"] and conf["task_serializer"] == "json"
    assert conf["broker_connection_retry_on_startup"] is True
    assert conf["broker_connection_max_retries"] is None
    assert conf["worker_cancel_long_running_tasks_on_connection_loss"] is False
    assert conf["task_create_missing_queues"] is True
    assert conf["broker_transport_options"] == {
        "visibility_timeout": 3600,
        "unacked_restore_interval": 1,
        "unacked_restore_throttle": 1,
    }
    assert "broker_transport_options" not in settings("amqp://opsbook@rabbit//")
    app = make_app("redis://127.0.0.1:6379/0")
    assert "opsbook.drive" in app.tasks
    assert app.conf.task_acks_late is True and app.conf.result_backend is None


# -- a workspace, a run, a worker ---------------------------------------------------------------
class Cluster:
    """A workspace on disk sharing ``pg_url`` and ``redis_url`` with the workers it starts."""

    def __init__(self, root: Path, db: Database, pg_url: str, redis_url: str) -> None:
        self.root = root
        self.ws: Workspace = make_workspace(root / "ws")
        self.db = db
        self.pg_url = pg_url
        self.redis_url = redis_url
        self.dispatcher = CeleryDispatcher(make_app(redis_url))
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "OPSBOOK_WORKSPACE": str(self.ws.root),
            "OPSBOOK_DATABASE_URL": self.pg_url,
            "OPSBOOK_BROKER_URL": self.redis_url,
            "OPSBOOK_WORKER_HEARTBEAT": "0.25",
            "OPSBOOK_WORKER_LEASE": "2",
            "OPSBOOK_REDISPATCH_AFTER": "1",
        }

    def write(self, name: str, text: str) -> None:
        (self.ws.runbooks_dir / name).write_text(textwrap.dedent(text).lstrip())

    def engine(self) -> Engine:
        redactor = Redactor()
        return Engine(
            db=self.db,
            workspace=self.ws,
            resolver=SecretResolver([EnvSecretProvider()], redactor),
            redactor=redactor,
            load_runbook=parse_file,
            resolve_ref=lambda ref: load_catalogue(self.ws.runbooks_dir).resolve(ref),
            dispatcher=self.dispatcher,
        )

    def start_run(self, ref: str, *, queue: str = "default") -> str:
        """Create a queued run and send its message (as a server would)."""
        runbook, procedure = load_catalogue(self.ws.runbooks_dir).resolve(ref)
        row, dispatch = self.engine().create(
            runbook=runbook,
            procedure=procedure,
            environment=load_environment(self.ws, "sandbox"),
            params={},
            started_by="alice",
            queue=queue,
        )
        assert self.dispatcher.send(
            execution_id=row.id, dispatch=dispatch, queue=queue, actor="alice"
        )
        return row.id

    def worker(self, *args: str) -> subprocess.Popen[bytes]:
        log = self.root / f"worker-{len(self.procs)}.log"
        with log.open("wb") as out:  # the child keeps its own copy of the descriptor
            proc = subprocess.Popen(
                [*OPSBOOK, "worker", *args],
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.procs.append(proc)
        self.logs.append(log)
        return proc

    def worker_row(self, proc: subprocess.Popen[bytes]) -> dict[str, Any] | None:
        return self.db.one("SELECT * FROM workers WHERE pid = ?", (proc.pid,))

    def alive(self, proc: subprocess.Popen[bytes]) -> dict[str, Any]:
        wait_until(
            lambda: (
                (self.worker_row(proc) or {}).get("state") == "alive" or proc.poll() is not None
            ),
            what="the worker's registration",
        )
        row = self.worker_row(proc)
        assert row is not None and proc.poll() is None, self.output()
        return row

    def execution(self, eid: str) -> dict[str, Any]:
        row = self.db.one("SELECT * FROM executions WHERE id = ?", (eid,))
        assert row is not None
        return row

    def wait_state(self, eid: str, state: str, timeout: float = 60) -> dict[str, Any]:
        try:
            wait_until(
                lambda: self.execution(eid)["state"] == state,
                timeout=timeout,
                what=f"{eid} {state}",
            )
        except AssertionError:
            raise AssertionError(f"{self.execution(eid)}\n{self.output()}") from None
        return self.execution(eid)

    def terminate(self, proc: subprocess.Popen[bytes], timeout: float = 60) -> int:
        proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout)

    def ob(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*OPSBOOK, *args], env=self.env(), capture_output=True, text=True, timeout=60
        )

    def output(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}" for p in self.logs
        )

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


@pytest.fixture
def cluster(tmp_path: Path, pg_db: Database, pg_url: str, redis_url: str) -> Iterator[Cluster]:
    import redis

    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    made = Cluster(tmp_path, pg_db, pg_url, redis_url)
    try:
        yield made
    finally:
        made.close()
        client.flushdb()
        client.close()


def lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def metrics_of(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


def until(check: Callable[[], object], what: str, timeout: float = 30) -> None:
    wait_until(check, timeout=timeout, what=what)


# -- end to end ---------------------------------------------------------------------------------
def test_a_worker_drives_a_queued_run_to_the_end_and_stops_on_sigterm(cluster: Cluster) -> None:
    log = cluster.root / "steps.log"
    cluster.write("three.md", THREE_STEPS.format(log=log, pause=0))
    port = free_port()
    eid = cluster.start_run("three#go")
    assert cluster.execution(eid)["state"] == "pending"

    proc = cluster.worker(
        "-q", "default", "-c", "2", "--name", "w-east", "--metrics-port", str(port)
    )
    row = cluster.alive(proc)
    done = cluster.wait_state(eid, "succeeded")
    assert lines(log) == ["one", "two", "three"]
    assert done["claimed_by"] == row["id"] and done["claimed_dispatch"] == done["dispatch"] == 1
    steps = cluster.db.query(
        "SELECT step_id, state FROM step_runs WHERE execution_id = ? ORDER BY seq", (eid,)
    )
    assert [(s["step_id"], s["state"]) for s in steps] == [
        ("one", "succeeded"),
        ("two", "succeeded"),
        ("three", "succeeded"),
    ]
    claimed = [e for e in events_of(cluster.db, "execution.claimed") if eid in e["subject"]]
    assert [e["payload"]["worker"] for e in claimed] == [row["id"]]
    assert [e["payload"]["queue"] for e in claimed] == ["default"]

    # the same message again (a redelivery), then one for the finished run: both dropped
    assert cluster.dispatcher.send(execution_id=eid, dispatch=1, queue="default", actor="alice")
    until(
        lambda: metrics_of(port).get('opsbook_worker_deliveries_total{outcome="finished"}') == 1,
        "the redelivery dropped",
    )
    metrics = metrics_of(port)
    assert metrics['opsbook_worker_deliveries_total{outcome="claimed"}'] == 1
    assert metrics['opsbook_worker_slots{state="idle"}'] == 2
    assert cluster.execution(eid)["state"] == "succeeded" and lines(log) == ["one", "two", "three"]

    listed = cluster.ob("workers", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    (me,) = [w for w in json.loads(listed.stdout)["workers"] if w["id"] == row["id"]]
    assert me["name"] == "w-east" and me["kind"] == "worker" and me["state"] == "alive"
    assert me["queues"][0] == "default" and me["queues"][1].startswith("host.")
    assert me["concurrency"] == 2 and me["heartbeat_age_s"] < 2

    assert cluster.terminate(proc) == 0, cluster.output()
    stopped = cluster.worker_row(proc)
    assert stopped is not None and stopped["state"] == "stopped" and stopped["ended_at"]


def test_sigterm_hands_the_run_back_at_the_next_step_and_another_worker_finishes_it(
    cluster: Cluster,
) -> None:
    log = cluster.root / "steps.log"
    cluster.write("three.md", THREE_STEPS.format(log=log, pause=1.5))
    eid = cluster.start_run("three#go")
    first = cluster.worker("-q", "default")
    cluster.alive(first)
    until(
        lambda: cluster.db.one(
            "SELECT 1 AS x FROM step_runs WHERE execution_id = ? AND step_id = 'two'"
            " AND state = 'running'",
            (eid,),
        ),
        "step two running",
    )
    assert cluster.terminate(first) == 0, cluster.output()  # waits for step two, not three
    handed = cluster.execution(eid)
    assert (handed["state"], handed["state_name"]) == ("pending", "Queued"), cluster.output()
    assert handed["dispatch"] == 2 and handed["claimed_dispatch"] == 1
    assert lines(log) == ["one", "two"]
    assert cluster.worker_row(first)["state"] == "stopped"  # type: ignore[index]

    second = cluster.worker("-q", "default")
    cluster.alive(second)
    done = cluster.wait_state(eid, "succeeded")
    assert lines(log) == ["one", "two", "three"]  # nothing ran twice
    assert done["claimed_by"] == cluster.worker_row(second)["id"]  # type: ignore[index]
    assert cluster.terminate(second) == 0


LONG_STEP = """
---
id: long
title: Long step
---

# Long

## Go

```yaml procedure
permissions: [operator]
```

### Wait

```sh
echo started >> {log}; sleep 60; echo ended >> {log}
```

### After

```sh
echo after >> {log}
```
"""


def step_pid(cluster: Cluster, eid: str) -> int:
    """The process group of the run's running step, once the engine journaled it."""
    found: dict[str, int] = {}

    def journaled() -> bool:
        row = cluster.db.one(
            "SELECT pid FROM step_runs WHERE execution_id = ? AND state = 'running'", (eid,)
        )
        if row and row["pid"]:
            found["pid"] = int(row["pid"])
        return bool(found)

    until(journaled, "the step's pid")
    return found["pid"]


def group_gone(pgid: int) -> bool:
    import psutil

    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                return False
        except (OSError, psutil.Error):
            continue
    return True


def test_a_worker_whose_row_is_declared_dead_fences_stops_its_step_and_exits_70(
    cluster: Cluster,
) -> None:
    log = cluster.root / "steps.log"
    cluster.write("long.md", LONG_STEP.format(log=log))
    eid = cluster.start_run("long#go")
    proc = cluster.worker("-q", "default")
    me = cluster.alive(proc)
    pgid = step_pid(cluster, eid)
    assert not group_gone(pgid)
    cluster.db.execute("UPDATE workers SET state = 'dead' WHERE id = ?", (me["id"],))
    assert proc.wait(30) == 70, cluster.output()
    until(lambda: group_gone(pgid), "the step's process group stopped")
    assert lines(log) == ["started"]


def test_a_drain_that_outlasts_drain_seconds_stops_the_step_and_leaves_the_run_to_recovery(
    cluster: Cluster,
) -> None:
    log = cluster.root / "steps.log"
    cluster.write("long.md", LONG_STEP.format(log=log))
    eid = cluster.start_run("long#go")
    proc = cluster.worker("-q", "default", "--drain-seconds", "0.5")
    me = cluster.alive(proc)
    pgid = step_pid(cluster, eid)
    assert cluster.terminate(proc) == 0, cluster.output()
    until(lambda: group_gone(pgid), "the step's process group stopped")
    assert cluster.worker_row(proc)["state"] == "draining"  # type: ignore[index]
    assert cluster.execution(eid)["state"] == "running"  # its owner is gone: crash rules

    # another worker on this host declares it dead and recovers the run: the step was not
    # idempotent, so it waits for a person's decision instead of running twice
    other = cluster.worker("-q", "default")
    cluster.alive(other)
    parked = cluster.wait_state(eid, "waiting")
    assert parked["state_name"] == "AwaitingRecoveryDecision"
    assert cluster.worker_row(proc)["state"] == "dead"  # type: ignore[index]
    assert me["id"] in [
        e["subject"].removeprefix("worker:") for e in events_of(cluster.db, "cluster.worker.dead")
    ]
    assert lines(log) == ["started"]


def test_a_worker_without_the_runbook_refuses_the_run_and_leaves_it_queued(
    cluster: Cluster,
) -> None:
    log = cluster.root / "steps.log"
    cluster.write("three.md", THREE_STEPS.format(log=log, pause=0))
    eid = cluster.start_run("three#go")
    (cluster.ws.runbooks_dir / "three.md").unlink()  # this worker's checkout lacks it
    port = free_port()
    proc = cluster.worker("-q", "default", "--metrics-port", str(port))
    cluster.alive(proc)
    until(
        lambda: metrics_of(port).get('opsbook_worker_deliveries_total{outcome="refused"}') == 1,
        "the refusal",
    )
    run = cluster.execution(eid)
    assert (run["state"], run["state_name"]) == ("pending", "Queued")
    assert lines(log) == []
    assert cluster.terminate(proc) == 0, cluster.output()
    logged = (cluster.ws.state_dir / "logs" / "opsbook.log").read_text()
    assert "cluster.worker.refused" in logged
