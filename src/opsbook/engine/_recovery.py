"""After a crash: mark the run and its open step crashed, stop what the step left running,
then retry, skip or abort that step (by itself when it is idempotent, else by a person's
decision). Functions of the engine (:class:`~opsbook.engine._protocol.EngineLike`)."""

from __future__ import annotations

import socket

from opsbook.engine import _journal as journal
from opsbook.engine._base import Outcome, owner_host
from opsbook.engine._context import ExecutionContext
from opsbook.engine._leftovers import stop_leftovers
from opsbook.engine._protocol import EngineLike
from opsbook.engine.states import State
from opsbook.errors import UsageError
from opsbook.runbooks.model import Procedure, Runbook, Step


def unchecked_host(row: journal.ExecutionRow, run: journal.StepRunRow) -> str | None:
    """The host whose processes a crashed step may have left running when that is not this
    host (they cannot be checked or stopped from here), else None. The step run has a pid only
    once its process ran a moment; the run's owner (the dead process) names the host."""
    if run.pid is None:
        return None
    host = owner_host(row.owner)
    return host if host is not None and host != socket.gethostname() else None


def mark_crashed(
    engine: EngineLike,
    row: journal.ExecutionRow,
    open_run: journal.StepRunRow | None,
    *,
    actor: str,
) -> None:
    """The process driving ``row`` is gone: the run and its running step become ``CRASHED``
    (one transaction), then the step's leftover processes are stopped when they are on this
    host."""
    eid = row.id
    running = open_run is not None and open_run.state is State.RUNNING
    with engine.db.transaction():
        journal.transition_execution(
            db=engine.db,
            execution_id=eid,
            to=State.CRASHED,
            name="Crashed",
            reason=f"owner process {row.owner} is gone",
            actor=actor,
        )
        if open_run is not None and running:
            journal.transition_step(
                db=engine.db,
                execution_id=eid,
                seq=open_run.seq,
                to=State.CRASHED,
                name="Crashed",
                actor=actor,
                reason="the process running this step died",
            )
    if open_run is None or not running or unchecked_host(row, open_run) is not None:
        return
    stopped = stop_leftovers(db=engine.db, execution_id=eid, seq=open_run.seq)
    if stopped:
        journal.note_event(
            db=engine.db,
            execution_id=eid,
            action="execution.step.leftovers_stopped",
            actor=actor,
            subject=f"execution:{eid}/step:{open_run.step_id}",
            payload={"seq": open_run.seq, "pids": stopped},
        )


async def resume_crashed(
    engine: EngineLike,
    ctx: ExecutionContext,
    runbook: Runbook,
    procedure: Procedure,
    row: journal.ExecutionRow,
    open_run: journal.StepRunRow,
    *,
    decision: str | None,
    actor: str,
    depth: int,
) -> Outcome:
    """A run whose step crashed: apply ``decision``; without one, retry an idempotent step
    whose processes could be checked, ask the interaction, or park for a person
    (``AwaitingRecoveryDecision``)."""
    eid = row.id
    step = procedure.steps[open_run.step_index]
    host = unchecked_host(row, open_run)
    choice = decision
    if choice is None and step.options.idempotent and host is None:
        choice = "retry"
    if choice is None and engine.interaction is not None:
        choice = engine.interaction.recovery_decision(step=step, execution_id=eid)
    if choice is None:
        if row.state is State.CRASHED:
            reason = (
                f"step {step.id!r} was running on host {host} when its process died; "
                f"its processes on host {host} could not be checked"
                if host is not None
                else f"step {step.id!r} was running when the process died and is not idempotent"
            )
            journal.transition_execution(
                db=engine.db,
                execution_id=eid,
                to=State.WAITING,
                name="AwaitingRecoveryDecision",
                actor=actor,
                reason=reason,
            )
        engine.reporter.step_waiting(step=step, seq=open_run.seq, execution_id=eid, why="recovery")
        return Outcome(eid, State.WAITING, "AwaitingRecoveryDecision", waiting_step=step.id)
    return await recover(
        engine, ctx, runbook, procedure, row, open_run, step, choice, actor=actor, depth=depth
    )


async def recover(
    engine: EngineLike,
    ctx: ExecutionContext,
    runbook: Runbook,
    procedure: Procedure,
    row: journal.ExecutionRow,
    open_run: journal.StepRunRow,
    step: Step,
    choice: str,
    *,
    actor: str,
    depth: int,
) -> Outcome:
    if choice not in ("retry", "skip", "abort"):
        raise UsageError(f"unknown recovery decision {choice!r}", hint="retry, skip or abort")
    eid = row.id
    with engine.db.transaction():
        if choice == "abort":
            journal.transition_step(
                db=engine.db,
                execution_id=eid,
                seq=open_run.seq,
                to=State.ABORTED,
                actor=actor,
                reason="aborted after crash",
            )
            journal.transition_execution(
                db=engine.db,
                execution_id=eid,
                to=State.ABORTED,
                actor=actor,
                reason=f"aborted by {actor} after a crash",
            )
        elif choice == "skip":
            journal.transition_step(
                db=engine.db,
                execution_id=eid,
                seq=open_run.seq,
                to=State.SKIPPED,
                actor=actor,
                reason=f"skipped by {actor} after a crash",
                cursor=open_run.step_index + 1,
            )
        else:
            journal.transition_step(
                db=engine.db,
                execution_id=eid,
                seq=open_run.seq,
                to=State.FAILED,
                name="Crashed",
                actor=actor,
                reason="process died; the step is run again",
                cursor=open_run.step_index,
            )
        if choice != "abort":
            journal.transition_execution(
                db=engine.db,
                execution_id=eid,
                to=State.RUNNING,
                name="Running",
                actor=actor,
                owner=engine.owner,
                verb="resumed",
                payload={"decision": choice},
            )
    if choice == "abort":
        engine.reporter.execution_finished(execution_id=eid, state=State.ABORTED, reason=None)
        return Outcome(eid, State.ABORTED, "Aborted", reason="aborted after a crash")
    engine.reporter.execution_started(execution_id=eid, procedure=procedure, resumed=True)
    return await engine._drive(ctx, runbook, procedure, actor=actor, depth=depth)
