"""The durable journal: every execution and step state change is an event in the audit log,
committed together with the projection rows (``executions``, ``step_runs``) it updates.

All functions take the database and join the caller's transaction when there is one.

Concurrency (ADR 0017 §3): on PostgreSQL the transitions read the current state ``FOR UPDATE``,
the execution row first and then the step run (one lock order), so two writers can never both
move a run from one state; SQLite's ``BEGIN IMMEDIATE`` serialises writers already. The writes of
an engine driving a run pass ``driver=`` (its owner token): they are refused with
:class:`OwnershipLost` unless the run is still ``running`` and owned by that driver, so a frozen
process that wakes after its run was declared crashed (or recovered elsewhere) changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from opsbook import audit
from opsbook.audit._log import utcnow
from opsbook.db import Database
from opsbook.engine.states import (
    EXECUTION_TRANSITIONS,
    STEP_TRANSITIONS,
    VERBS,
    State,
    check_transition,
)
from opsbook.errors import ConflictError, NotFoundError

if TYPE_CHECKING:
    from opsbook.runbooks.model import Step


class OwnershipLost(ConflictError):
    """A driving engine's write was refused: the run is no longer ``running`` under its owner
    token (it was declared crashed, recovered or taken by another process). The engine stops
    driving it and writes nothing more (exit code 2, HTTP 409, as every conflict)."""


@dataclass(frozen=True)
class ExecutionRow:
    id: str
    parent_id: str | None
    runbook_id: str
    runbook_path: str
    runbook_hash: str
    procedure_id: str
    environment: str
    params: Mapping[str, Any]
    digest: str
    state: State
    state_name: str
    reason: str | None
    cursor: int
    dry_run: bool
    started_by: str
    owner: str | None
    created_at: str
    updated_at: str
    finished_at: str | None
    queue: str | None = None  # queue of the last dispatch; None: driven in-process

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "parent_id": self.parent_id,
            "runbook": self.runbook_id,
            "procedure": self.procedure_id,
            "ref": f"{self.runbook_id}#{self.procedure_id}",
            "environment": self.environment,
            "params": dict(self.params),
            "state": str(self.state),
            "state_name": self.state_name,
            "reason": self.reason,
            "dry_run": self.dry_run,
            "started_by": self.started_by,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "finished_at": self.finished_at,
            "queue": self.queue,
        }


@dataclass(frozen=True)
class StepRunRow:
    id: int
    execution_id: str
    seq: int
    step_id: str
    step_index: int
    kind: str
    state: State
    state_name: str
    attempts: int
    started_at: str | None
    finished_at: str | None
    duration: float | None
    result: Any
    reason: str | None
    pid: int | None = None  # leader of the step's process group, once it ran a moment

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "step": self.step_id,
            "kind": self.kind,
            "state": str(self.state),
            "state_name": self.state_name,
            "attempts": self.attempts,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "duration": self.duration,
            "result": self.result,
            "reason": self.reason,
        }


def _execution(row: Mapping[str, Any]) -> ExecutionRow:
    return ExecutionRow(
        id=row["id"],
        parent_id=row["parent_id"],
        runbook_id=row["runbook_id"],
        runbook_path=row["runbook_path"],
        runbook_hash=row["runbook_hash"],
        procedure_id=row["procedure_id"],
        environment=row["environment"],
        params=json.loads(row["params"]),
        digest=row["digest"],
        state=State(row["state"]),
        state_name=row["state_name"],
        reason=row["reason"],
        cursor=int(row["cursor"]),
        dry_run=bool(row["dry_run"]),
        started_by=row["started_by"],
        owner=row["owner"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        finished_at=row["finished_at"],
        queue=row.get("queue"),
    )


def _step_run(row: Mapping[str, Any]) -> StepRunRow:
    return StepRunRow(
        id=int(row["id"]),
        execution_id=row["execution_id"],
        seq=int(row["seq"]),
        step_id=row["step_id"],
        step_index=int(row["step_index"]),
        kind=row["kind"],
        state=State(row["state"]),
        state_name=row["state_name"],
        attempts=int(row["attempts"]),
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        duration=row["duration"],
        result=json.loads(row["result"]) if row["result"] else None,
        reason=row["reason"],
        pid=int(row["pid"]) if row.get("pid") is not None else None,
    )


def get_execution(*, db: Database, execution_id: str) -> ExecutionRow:
    row = db.one("SELECT * FROM executions WHERE id = ?", (execution_id,))
    if row is None:
        # Accept a unique prefix, as people type short ids.
        rows = db.query(
            "SELECT * FROM executions WHERE id LIKE ? ORDER BY created_at DESC LIMIT 2",
            (execution_id + "%",),
        )
        if len(rows) == 1:
            return _execution(rows[0])
        raise NotFoundError(
            f"no execution {execution_id!r}",
            hint="list executions with `opsbook executions list`",
        )
    return _execution(row)


def list_executions(
    *, db: Database, state: str | None = None, limit: int = 50
) -> list[ExecutionRow]:
    if state:
        rows = db.query(
            "SELECT * FROM executions WHERE state = ? ORDER BY created_at DESC LIMIT ?",
            (state, limit),
        )
    else:
        rows = db.query("SELECT * FROM executions ORDER BY created_at DESC LIMIT ?", (limit,))
    return [_execution(r) for r in rows]


def step_runs(*, db: Database, execution_id: str) -> list[StepRunRow]:
    rows = db.query("SELECT * FROM step_runs WHERE execution_id = ? ORDER BY seq", (execution_id,))
    return [_step_run(r) for r in rows]


def events(*, db: Database, execution_id: str) -> list[dict[str, Any]]:
    rows = db.query(
        "SELECT id, ts, actor, action, subject, payload FROM events WHERE execution_id = ?"
        " ORDER BY id",
        (execution_id,),
    )
    for r in rows:
        r["payload"] = json.loads(r["payload"])
    return rows


def create_execution(
    *,
    db: Database,
    execution: ExecutionRow,
    actor: str,
) -> None:
    with db.transaction():
        db.execute(
            "INSERT INTO executions (id, parent_id, runbook_id, runbook_path, runbook_hash,"
            " procedure_id, environment, params, digest, state, state_name, reason, cursor,"
            " dry_run, started_by, owner, created_at, updated_at, finished_at, queue)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                execution.id,
                execution.parent_id,
                execution.runbook_id,
                execution.runbook_path,
                execution.runbook_hash,
                execution.procedure_id,
                execution.environment,
                audit.canonical_json(dict(execution.params)),
                execution.digest,
                str(execution.state),
                execution.state_name,
                execution.reason,
                execution.cursor,
                int(execution.dry_run),
                execution.started_by,
                execution.owner,
                execution.created_at,
                execution.updated_at,
                execution.finished_at,
                execution.queue,
            ),
        )
        audit.record(
            db=db,
            actor=actor,
            action="execution.created",
            subject=f"execution:{execution.id}",
            execution_id=execution.id,
            ts=execution.created_at,
            payload={
                "runbook": execution.runbook_id,
                "runbook_hash": execution.runbook_hash,
                "procedure": execution.procedure_id,
                "environment": execution.environment,
                "params": dict(execution.params),
                "digest": execution.digest,
                "dry_run": execution.dry_run,
                "parent_id": execution.parent_id,
                **({"queue": execution.queue} if execution.queue is not None else {}),
            },
        )


def _locked_execution(
    db: Database, execution_id: str, *, driver: str | None, columns: str = "state, owner"
) -> dict[str, Any]:
    """The execution's row, read ``FOR UPDATE`` on PostgreSQL (inside the caller's
    transaction); with ``driver``, refused unless the run is running under that owner."""
    lock = " FOR UPDATE" if db.dialect == "postgresql" else ""
    row = db.one(f"SELECT {columns} FROM executions WHERE id = ?{lock}", (execution_id,))  # noqa: S608
    if row is None:
        raise NotFoundError(f"no execution {execution_id!r}")
    if driver is not None and (row["state"] != State.RUNNING or row["owner"] != driver):
        raise OwnershipLost(
            f"execution {execution_id} is no longer driven by {driver} "
            f"(it is {row['state']}, owner {row['owner'] or 'none'})",
            hint="another process recovered or took it: this one stops driving it; "
            "`opsbook executions show ID` shows its journal",
        )
    return row


def _update_execution(
    db: Database, execution_id: str, sets: str, params: tuple[Any, ...], *, driver: str | None
) -> None:
    """``UPDATE executions SET <sets>``; with ``driver``, only while the run is running under
    that driver (else :class:`OwnershipLost`, and the caller's transaction rolls back). The
    guard rides on an UPDATE the caller makes anyway, so it costs no statement of its own; on
    PostgreSQL the UPDATE also takes the execution's row lock first (the journal's lock order)."""
    guard = " AND state = ? AND owner = ?" if driver is not None else ""
    extra = (str(State.RUNNING), driver) if driver is not None else ()
    count = db.execute(
        f"UPDATE executions SET {sets} WHERE id = ?{guard}",  # noqa: S608
        (*params, execution_id, *extra),
    )
    if count == 0 and driver is not None:
        _locked_execution(db, execution_id, driver=driver)  # raises, saying whose it is now
        raise OwnershipLost(f"execution {execution_id} is no longer driven by {driver}")


def set_cursor(*, db: Database, execution_id: str, cursor: int, driver: str | None = None) -> None:
    """Move the execution's cursor (the next step index); ``driver`` as for the transitions."""
    with db.transaction():
        _update_execution(db, execution_id, "cursor = ?", (cursor,), driver=driver)


def transition_execution(
    *,
    db: Database,
    execution_id: str,
    to: State,
    name: str | None = None,
    reason: str | None = None,
    actor: str,
    payload: Mapping[str, Any] | None = None,
    cursor: int | None = None,
    owner: str | None = None,
    verb: str | None = None,
    driver: str | None = None,
) -> None:
    """Move the execution to ``to`` (checked against the transition table). ``driver``: the
    owner token of the engine driving the run, which must still hold it (:class:`OwnershipLost`
    otherwise)."""
    with db.transaction():
        # PostgreSQL: lock the row, so two concurrent transitions (two resumes of one parked
        # run) cannot both read the old state; SQLite's BEGIN IMMEDIATE serialises them already
        row = _locked_execution(db, execution_id, driver=driver)
        current = State(row["state"])
        check_transition(EXECUTION_TRANSITIONS, current, to, what=f"execution {execution_id}")
        now = utcnow()
        finished = now if to in (State.SUCCEEDED, State.FAILED, State.ABORTED) else None
        sets = "state = ?, state_name = ?, reason = ?, updated_at = ?, finished_at = ?"
        params: list[Any] = [str(to), name or to.title(), reason, now, finished]
        if cursor is not None:
            sets += ", cursor = ?"
            params.append(cursor)
        if owner is not None:
            sets += ", owner = ?"
            params.append(owner)
        db.execute(f"UPDATE executions SET {sets} WHERE id = ?", (*params, execution_id))  # noqa: S608
        body = {"from": str(current), "to": str(to), "name": name or to.title()}
        if reason:
            body["reason"] = reason
        body.update(payload or {})
        audit.record(
            db=db,
            actor=actor,
            action=f"execution.{verb or VERBS[to]}",
            subject=f"execution:{execution_id}",
            execution_id=execution_id,
            ts=now,
            payload=body,
        )


def open_step_run(
    *,
    db: Database,
    execution_id: str,
    seq: int,
    step: Step,
    index: int,
    actor: str,
    state: State = State.RUNNING,
    name: str = "Running",
    reason: str | None = None,
    payload: Mapping[str, Any] | None = None,
    driver: str | None = None,
) -> None:
    """:func:`start_step_run` for ``step`` (the ``index``-th of its procedure)."""
    start_step_run(
        db=db,
        execution_id=execution_id,
        seq=seq,
        step_id=step.id,
        step_index=index,
        kind=str(step.kind),
        state=state,
        name=name,
        actor=actor,
        reason=reason,
        payload=payload,
        driver=driver,
    )


def start_step_run(
    *,
    db: Database,
    execution_id: str,
    seq: int,
    step_id: str,
    step_index: int,
    kind: str,
    state: State,
    name: str,
    actor: str,
    reason: str | None = None,
    result: Any = None,
    payload: Mapping[str, Any] | None = None,
    driver: str | None = None,
) -> None:
    """Create a step run directly in its first state (running, waiting or skipped) and move
    the execution's cursor to it, in one transaction (``driver`` as for the transitions)."""
    check_transition(STEP_TRANSITIONS, State.PENDING, state, what=f"step {step_id}")
    now = utcnow()
    with db.transaction():
        # the execution row first (the lock order; the driver guard)
        _update_execution(
            db, execution_id, "cursor = ?, updated_at = ?", (step_index, now), driver=driver
        )
        db.execute(
            "INSERT INTO step_runs (execution_id, seq, step_id, step_index, kind, state,"
            " state_name, attempts, started_at, finished_at, duration, result, reason)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                execution_id,
                seq,
                step_id,
                step_index,
                kind,
                str(state),
                name,
                1 if state is State.RUNNING else 0,
                now,
                now if state is State.SKIPPED else None,
                0.0 if state is State.SKIPPED else None,
                audit.canonical_json(result) if result is not None else None,
                reason,
            ),
        )
        body: dict[str, Any] = {"seq": seq, "step": step_id, "kind": kind, "name": name}
        if reason:
            body["reason"] = reason
        body.update(payload or {})
        audit.record(
            db=db,
            actor=actor,
            action=f"execution.step.{VERBS[state]}",
            subject=f"execution:{execution_id}/step:{step_id}",
            execution_id=execution_id,
            ts=now,
            payload=body,
        )


def transition_step(
    *,
    db: Database,
    execution_id: str,
    seq: int,
    to: State,
    name: str | None = None,
    actor: str,
    reason: str | None = None,
    result: Any = None,
    duration: float | None = None,
    attempts: int | None = None,
    payload: Mapping[str, Any] | None = None,
    verb: str | None = None,
    cursor: int | None = None,
    driver: str | None = None,
) -> None:
    """Move a step run to ``to``; ``cursor`` (the next step index) commits with it so a crash
    right after a step finishes never re-runs that step. ``driver`` as for
    :func:`transition_execution`."""
    now = utcnow()
    with db.transaction():
        # the execution row first (the lock order; the driver guard), then the step run
        if cursor is not None:
            _update_execution(
                db, execution_id, "updated_at = ?, cursor = ?", (now, cursor), driver=driver
            )
        else:
            _update_execution(db, execution_id, "updated_at = ?", (now,), driver=driver)
        lock = " FOR UPDATE" if db.dialect == "postgresql" else ""
        row = db.one(
            f"SELECT step_id, state FROM step_runs WHERE execution_id = ? AND seq = ?{lock}",  # noqa: S608
            (execution_id, seq),
        )
        if row is None:
            raise NotFoundError(f"no step run {seq} in execution {execution_id}")
        current = State(row["state"])
        step_id = str(row["step_id"])
        if to is not current:
            check_transition(STEP_TRANSITIONS, current, to, what=f"step {step_id}")
        finished = (
            now if to in (State.SUCCEEDED, State.FAILED, State.SKIPPED, State.ABORTED) else None
        )
        sets = "state = ?, state_name = ?, reason = ?, finished_at = ?"
        params: list[Any] = [str(to), name or to.title(), reason, finished]
        if result is not None:
            sets += ", result = ?"
            params.append(audit.canonical_json(result))
        if duration is not None:
            sets += ", duration = ?"
            params.append(duration)
        if attempts is not None:
            sets += ", attempts = ?"
            params.append(attempts)
        db.execute(
            f"UPDATE step_runs SET {sets} WHERE execution_id = ? AND seq = ?",  # noqa: S608
            (*params, execution_id, seq),
        )
        body: dict[str, Any] = {"seq": seq, "step": step_id, "from": str(current), "to": str(to)}
        if name:
            body["name"] = name
        if reason:
            body["reason"] = reason
        if duration is not None:
            body["duration"] = round(duration, 6)
        body.update(payload or {})
        audit.record(
            db=db,
            actor=actor,
            action=f"execution.step.{verb or VERBS[to]}",
            subject=f"execution:{execution_id}/step:{step_id}",
            execution_id=execution_id,
            ts=now,
            payload=body,
        )


def note_event(
    *,
    db: Database,
    execution_id: str,
    action: str,
    actor: str,
    subject: str | None = None,
    payload: Mapping[str, Any] | None = None,
) -> None:
    """An event that changes no projection (a retry, an attestation, an approval request)."""
    audit.record(
        db=db,
        actor=actor,
        action=action,
        subject=subject or f"execution:{execution_id}",
        execution_id=execution_id,
        payload=dict(payload or {}),
    )
