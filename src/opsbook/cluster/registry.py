"""The ``workers`` table (ADR 0017 §3, §4): every ``opsbook worker`` and replicated ``opsbook
serve`` registers a row, beats on the DATABASE clock (no host clock skew), and is declared dead
by whoever first sees its lease run out (or, on its own host, its process gone).

Rows move ``alive → draining → stopped`` by the process itself and ``alive|draining → dead`` by
another one, with a compare-and-set on the state, so exactly one declarer wins and writes the
``cluster.worker.dead`` audit record. A worker's id is its owner token (``host:pid:start``, see
:func:`opsbook.engine._base.owner_token`): the value ``executions.owner`` holds for the runs it
drives, which is how :func:`list_workers` shows them.

Services join the caller's transaction (``beat`` and ``register`` are single statements).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from opsbook import audit
from opsbook.audit._log import utcnow
from opsbook.db import Database
from opsbook.engine._base import owner_alive, owner_token
from opsbook.errors import ConflictError, UsageError

KINDS = ("worker", "serve")
LIVE_STATES = ("alive", "draining")
ENDED_STATES = ("stopped", "dead")
_LIVE = "state IN ('alive', 'draining')"

_NOW_SQL = {
    "postgresql": "CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS DOUBLE PRECISION)",
    "sqlite": "((julianday('now') - 2440587.5) * 86400.0)",
}


def now_sql(db: Database) -> str:
    """An SQL expression for the database's clock in epoch seconds (float)."""
    return _NOW_SQL["postgresql" if db.dialect == "postgresql" else "sqlite"]


def db_now(db: Database) -> float:
    """The database's clock, epoch seconds: the one clock every host agrees on."""
    row = db.one(f"SELECT {now_sql(db)} AS now")
    assert row is not None
    return float(row["now"])


@dataclass(frozen=True)
class RunningExecution:
    """A RUNNING execution a worker owns, and the step it is at."""

    execution_id: str
    owner: str
    runbook: str
    procedure: str
    environment: str
    queue: str | None
    step: str | None  # id of the newest step run, None before the first step
    seq: int | None
    pid: int | None  # process group of that step, when it runs one

    def to_dict(self) -> dict[str, Any]:
        return {
            "execution_id": self.execution_id,
            "runbook": self.runbook,
            "procedure": self.procedure,
            "ref": f"{self.runbook}#{self.procedure}",
            "environment": self.environment,
            "queue": self.queue,
            "step": self.step,
            "seq": self.seq,
        }


@dataclass(frozen=True)
class WorkerRow:
    id: str
    name: str
    kind: str
    host: str
    pid: int
    queues: tuple[str, ...]
    concurrency: int
    version: str
    started_at: str
    heartbeat_at: float
    lease_seconds: float
    state: str
    ended_at: str | None
    ended_by: str | None
    heartbeat_age_s: float  # database clock now - heartbeat_at, when the row was read
    running: tuple[RunningExecution, ...] = ()

    @property
    def lease_expired(self) -> bool:
        return self.heartbeat_age_s > self.lease_seconds

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "kind": self.kind,
            "host": self.host,
            "pid": self.pid,
            "queues": list(self.queues),
            "concurrency": self.concurrency,
            "version": self.version,
            "started_at": self.started_at,
            "heartbeat_age_s": round(self.heartbeat_age_s, 3),
            "lease_seconds": self.lease_seconds,
            "state": self.state,
            "ended_at": self.ended_at,
            "ended_by": self.ended_by,
            "running": [r.to_dict() for r in self.running],
        }


def _columns(db: Database) -> str:
    return f"w.*, {now_sql(db)} - w.heartbeat_at AS heartbeat_age_s"


def _worker(row: Mapping[str, Any], running: Sequence[RunningExecution] = ()) -> WorkerRow:
    return WorkerRow(
        id=str(row["id"]),
        name=str(row["name"]),
        kind=str(row["kind"]),
        host=str(row["host"]),
        pid=int(row["pid"]),
        queues=tuple(json.loads(row["queues"] or "[]")),
        concurrency=int(row["concurrency"]),
        version=str(row["version"]),
        started_at=str(row["started_at"]),
        heartbeat_at=float(row["heartbeat_at"]),
        lease_seconds=float(row["lease_seconds"]),
        state=str(row["state"]),
        ended_at=row["ended_at"],
        ended_by=row["ended_by"],
        heartbeat_age_s=float(row["heartbeat_age_s"]),
        running=tuple(running),
    )


def get_worker(*, db: Database, worker_id: str) -> WorkerRow | None:
    row = db.one(f"SELECT {_columns(db)} FROM workers w WHERE w.id = ?", (worker_id,))  # noqa: S608
    return _worker(row, running_owned(db=db, worker_ids=[worker_id])) if row else None


def register(
    *,
    db: Database,
    kind: str,
    name: str,
    queues: Sequence[str],
    concurrency: int,
    version: str,
    lease_seconds: float,
    worker_id: str | None = None,
) -> WorkerRow:
    """Register this process (``worker_id``: its owner token, the default) as alive, with a
    first heartbeat. Registering again (a server app started twice in one process) revives a
    stopped row; a row declared dead stays dead (:class:`ConflictError`): that process must
    not work any more."""
    if kind not in KINDS:
        raise UsageError(
            f"worker kind must be one of {', '.join(KINDS)}, not {kind!r}", field="kind"
        )
    if lease_seconds <= 0:
        raise UsageError("lease_seconds must be positive", field="lease_seconds")
    wid = worker_id or owner_token()
    host, pid = _host_pid(wid)
    now = utcnow()
    clock = now_sql(db)
    with db.transaction():
        changed = db.execute(
            "INSERT INTO workers (id, name, kind, host, pid, queues, concurrency, version,"  # noqa: S608
            " started_at, heartbeat_at, lease_seconds, state, ended_at, ended_by)"
            f" VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, {clock}, ?, 'alive', NULL, NULL)"
            " ON CONFLICT (id) DO UPDATE SET name = excluded.name, kind = excluded.kind,"
            " queues = excluded.queues, concurrency = excluded.concurrency,"
            " version = excluded.version, started_at = excluded.started_at,"
            " heartbeat_at = excluded.heartbeat_at, lease_seconds = excluded.lease_seconds,"
            " state = 'alive', ended_at = NULL, ended_by = NULL"
            " WHERE workers.state <> 'dead'",
            (
                wid,
                name,
                kind,
                host,
                pid,
                json.dumps(list(queues)),
                int(concurrency),
                version,
                now,
                float(lease_seconds),
            ),
        )
        if changed != 1:
            raise ConflictError(
                f"worker {wid} was declared dead: this process may not work any more",
                hint="start a new process (it gets a new worker id)",
            )
        found = get_worker(db=db, worker_id=wid)
    assert found is not None
    return found


def _host_pid(worker_id: str) -> tuple[str, int]:
    try:
        host, pid, _started = worker_id.rsplit(":", 2)
        return host, int(pid)
    except ValueError as exc:
        raise UsageError(
            f"worker id {worker_id!r} is not an owner token host:pid:start",
            field="worker_id",
            hint="leave worker_id unset: the process's owner token is used",
        ) from exc


def beat(*, db: Database, worker_id: str) -> bool:
    """One heartbeat on the database clock. False when the row is gone, stopped or dead: the
    caller must fence itself (stop its steps, exit)."""
    return (
        db.execute(
            f"UPDATE workers SET heartbeat_at = {now_sql(db)} WHERE id = ? AND {_LIVE}",  # noqa: S608
            (worker_id,),
        )
        == 1
    )


def set_state(*, db: Database, worker_id: str, state: str) -> bool:
    """The process's own moves: ``draining`` (SIGTERM: no new work) or ``stopped`` (clean
    exit, with ``ended_at``). False when the row is no longer alive or draining (declared dead
    meanwhile)."""
    if state == "draining":
        return (
            db.execute(
                f"UPDATE workers SET state = 'draining' WHERE id = ? AND {_LIVE}",  # noqa: S608
                (worker_id,),
            )
            == 1
        )
    if state == "stopped":
        return (
            db.execute(
                "UPDATE workers SET state = 'stopped', ended_at = ?, ended_by = ?"  # noqa: S608
                f" WHERE id = ? AND {_LIVE}",
                (utcnow(), worker_id, worker_id),
            )
            == 1
        )
    raise UsageError(
        f"a worker sets its own state to draining or stopped, not {state!r}",
        field="state",
        hint="other processes end a worker with declare_dead",
    )


def dead_candidates(*, db: Database) -> list[WorkerRow]:
    """Alive or draining rows whose lease ran out on the database clock, or whose process on
    this host is gone (a pid check is instant; other hosts can only be judged by lease)."""
    rows = db.query(f"SELECT {_columns(db)} FROM workers w WHERE w.{_LIVE} ORDER BY w.id")  # noqa: S608
    return [w for w in map(_worker, rows) if w.lease_expired or process_gone(w)]


def process_gone(worker: WorkerRow) -> bool:
    """The worker runs on this host and its process is gone (or is another process now)."""
    return worker.host == socket.gethostname() and not owner_alive(worker.id)


def why_dead(worker: WorkerRow) -> str:
    if worker.lease_expired:
        return f"no heartbeat for {worker.heartbeat_age_s:.1f} s (lease {worker.lease_seconds:g} s)"
    return f"process {worker.pid} on {worker.host} is gone"


def declare_dead(
    *,
    db: Database,
    worker_id: str,
    by: str,
    reason: str | None = None,
    expired_only: bool = False,
) -> bool:
    """Mark a worker dead (compare-and-set on its state): True for the one caller that won,
    which also writes ``cluster.worker.dead`` with the RUNNING executions the worker owned.
    ``expired_only`` re-checks the lease in the same statement, so a worker that beat since
    it was found late is left alive. The RUNNING executions are locked first (PostgreSQL),
    then the worker row: the order of every journal transition, which reads the execution."""
    clock = now_sql(db)
    expired = f" AND heartbeat_at + lease_seconds < {clock}" if expired_only else ""
    with db.transaction():
        owned = running_owned(db=db, worker_ids=[worker_id], lock=True)
        won = db.execute(
            "UPDATE workers SET state = 'dead', ended_at = ?, ended_by = ?"  # noqa: S608
            f" WHERE id = ? AND {_LIVE}{expired}",
            (utcnow(), by, worker_id),
        )
        if won != 1:
            return False
        worker = get_worker(db=db, worker_id=worker_id)
        assert worker is not None
        audit.record(
            db=db,
            actor=by,
            action="cluster.worker.dead",
            subject=f"worker:{worker_id}",
            payload={
                "name": worker.name,
                "kind": worker.kind,
                "host": worker.host,
                "pid": worker.pid,
                "heartbeat_age_s": round(worker.heartbeat_age_s, 3),
                "lease_seconds": worker.lease_seconds,
                "reason": reason or why_dead(worker),
                "executions": [r.execution_id for r in owned],
            },
        )
    return True


def running_owned(
    *, db: Database, worker_ids: Sequence[str], lock: bool = False
) -> list[RunningExecution]:
    """The RUNNING executions owned by these workers, each with its newest step run.
    ``lock``: ``FOR UPDATE`` of those executions rows on PostgreSQL (inside a transaction)."""
    if not worker_ids:
        return []
    marks = ", ".join("?" for _ in worker_ids)
    where = f"e.owner IN ({marks}) AND e.state = 'running'"
    if lock and db.dialect == "postgresql":
        lock_sql = f"SELECT e.id FROM executions e WHERE {where} ORDER BY e.id FOR UPDATE"  # noqa: S608
        db.query(lock_sql, worker_ids)
    rows = db.query(
        "SELECT e.id, e.owner, e.runbook_id, e.procedure_id, e.environment, e.queue,"  # noqa: S608
        " s.step_id, s.seq, s.pid FROM executions e"
        " LEFT JOIN step_runs s ON s.execution_id = e.id"
        " AND s.seq = (SELECT MAX(seq) FROM step_runs m WHERE m.execution_id = e.id)"
        f" WHERE {where} ORDER BY e.created_at, e.id",
        worker_ids,
    )
    return [
        RunningExecution(
            execution_id=str(r["id"]),
            owner=str(r["owner"]),
            runbook=str(r["runbook_id"]),
            procedure=str(r["procedure_id"]),
            environment=str(r["environment"]),
            queue=r["queue"],
            step=r["step_id"],
            seq=None if r["seq"] is None else int(r["seq"]),
            pid=None if r["pid"] is None else int(r["pid"]),
        )
        for r in rows
    ]


def list_workers(*, db: Database, include_ended: bool = False) -> list[WorkerRow]:
    """Live workers (with ``include_ended``, stopped and dead ones too), each with the RUNNING
    executions it owns; newest first within a state."""
    where = "" if include_ended else f" WHERE w.{_LIVE}"
    rows = db.query(
        f"SELECT {_columns(db)} FROM workers w{where}"  # noqa: S608
        " ORDER BY CASE w.state WHEN 'alive' THEN 0 WHEN 'draining' THEN 1"
        " WHEN 'dead' THEN 2 ELSE 3 END, w.started_at DESC, w.id"
    )
    by_owner: dict[str, list[RunningExecution]] = {}
    for run in running_owned(db=db, worker_ids=[str(r["id"]) for r in rows]):
        by_owner.setdefault(run.owner, []).append(run)
    return [_worker(r, by_owner.get(str(r["id"]), ())) for r in rows]


def prune(*, db: Database, older_than_days: float = 7) -> int:
    """Delete stopped and dead rows that ended more than ``older_than_days`` ago; how many."""
    cutoff = (datetime.now(UTC) - timedelta(days=older_than_days)).isoformat(
        timespec="microseconds"
    )
    return db.execute(
        "DELETE FROM workers WHERE state IN ('stopped', 'dead') AND ended_at < ?",
        (cutoff.replace("+00:00", "Z"),),
    )
