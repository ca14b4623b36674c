"""After a crash: retry, skip or abort the step that was running. A function of the engine
(:class:`~opsbook.engine._protocol.EngineLike`)."""

from __future__ import annotations

from opsbook.engine import _journal as journal
from opsbook.engine._base import Outcome
from opsbook.engine._context import ExecutionContext
from opsbook.engine._protocol import EngineLike
from opsbook.engine.states import State
from opsbook.errors import UsageError
from opsbook.runbooks.model import Procedure, Runbook, Step


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
