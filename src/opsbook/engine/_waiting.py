"""Steps that wait for people: manual steps (attestation), approvals, and `decide` branches
whose child procedure waits (AwaitingChild). Functions of the engine
(:class:`~opsbook.engine._protocol.EngineLike`)."""

from __future__ import annotations

import asyncio
from typing import Any

from opsbook.engine import _failure, approvals
from opsbook.engine import _journal as journal
from opsbook.engine._base import APPROVAL_POLL, Outcome
from opsbook.engine._context import ExecutionContext
from opsbook.engine._dry import step_entry
from opsbook.engine._hooks import StepReport
from opsbook.engine._protocol import EngineLike
from opsbook.engine.states import TERMINAL_STATES, State
from opsbook.runbooks.model import ApprovalSpec, Procedure, Runbook, Step, StepKind


async def wait_for_person(
    engine: EngineLike,
    ctx: ExecutionContext,
    runbook: Runbook,
    procedure: Procedure,
    row: journal.ExecutionRow,
    step: Step,
    index: int,
    seq: int,
    *,
    actor: str,
    depth: int,
) -> int | Outcome:
    """A manual or approval step reached: park the run for a person (then continue at once if
    the interaction answers). A dry run only notes it would wait and returns the next index."""
    eid = ctx.execution_id
    name = "AwaitingInput" if step.kind is StepKind.MANUAL else "AwaitingApproval"
    payload: dict[str, Any] = {}
    if step.kind is StepKind.APPROVAL and step.approval:
        payload = {
            "quorum": step.approval.quorum,
            "roles": list(step.approval.roles),
            "expires": step.approval.expires,
            "digest": row.digest,
        }
    if ctx.dry_run:
        journal.open_step_run(
            db=engine.db,
            execution_id=eid,
            seq=seq,
            step=step,
            index=index,
            state=State.SKIPPED,
            name="DryRun",
            actor=actor,
            reason=f"dry run: would wait ({name})",
            driver=engine.owner,
        )
        engine._set_cursor(eid, index + 1)
        ctx.steps[step.id] = step_entry(step.id)
        engine.reporter.step_finished(
            StepReport(step, seq, State.SKIPPED, "DryRun", 0.0, f"would wait: {name}")
        )
        return index + 1
    with engine.db.transaction():
        journal.open_step_run(
            db=engine.db,
            execution_id=eid,
            seq=seq,
            step=step,
            index=index,
            state=State.WAITING,
            name=name,
            actor=actor,
            payload=payload,
            driver=engine.owner,
        )
        journal.transition_execution(
            db=engine.db,
            execution_id=eid,
            to=State.WAITING,
            name=name,
            actor=actor,
            reason=f"step {step.id!r} waits for a person",
            driver=engine.owner,
        )
    return await continue_waiting(
        engine, ctx, runbook, procedure, row, seq, step, actor=actor, depth=depth, resumed=False
    )


def await_child(
    engine: EngineLike,
    ctx: ExecutionContext,
    step: Step,
    seq: int,
    record: dict[str, Any],
    child: Outcome,
    *,
    actor: str,
) -> Outcome:
    """A decide branch ran a procedure that now waits for a person, or was handed to another
    workers' queue: park this execution too (``AwaitingChild``); finishing the child continues
    it (the child's worker resumes this parent)."""
    eid = ctx.execution_id
    why = f"waiting for {record['run']} (execution {child.execution_id}: {child.state_name})"
    with engine.db.transaction():
        journal.transition_step(
            db=engine.db,
            execution_id=eid,
            seq=seq,
            to=State.WAITING,
            name="AwaitingChild",
            actor=actor,
            result=record,
            reason=why,
            driver=engine.owner,
        )
        journal.transition_execution(
            db=engine.db,
            execution_id=eid,
            to=State.WAITING,
            name="AwaitingChild",
            actor=actor,
            reason=why,
            driver=engine.owner,
        )
    engine.reporter.step_waiting(step=step, seq=seq, execution_id=child.execution_id, why="child")
    return Outcome(eid, State.WAITING, "AwaitingChild", waiting_step=step.id)


async def continue_child(
    engine: EngineLike,
    ctx: ExecutionContext,
    runbook: Runbook,
    procedure: Procedure,
    seq: int,
    step: Step,
    *,
    actor: str,
    depth: int,
) -> Outcome | None:
    """Continue a parent parked at a decide step whose child procedure waited. Returns an
    Outcome when the parent stays parked or finishes, None to carry on driving."""
    eid = ctx.execution_id
    run = next(r for r in journal.step_runs(db=engine.db, execution_id=eid) if r.seq == seq)
    record: dict[str, Any] = dict(run.result or {})
    child_id = str(record.get("child", ""))
    child = journal.get_execution(db=engine.db, execution_id=child_id)
    state = child.state
    # a queued child (handed to another queue) is its workers' to drive, never this slice's
    if state not in TERMINAL_STATES and state is not State.PENDING:
        out = await engine.resume(
            execution_id=child_id, actor=actor, depth=depth + 1, continue_parent=False
        )
        state = out.state
    if state not in TERMINAL_STATES:
        engine.reporter.step_waiting(step=step, seq=seq, execution_id=child_id, why="child")
        return Outcome(eid, State.WAITING, "AwaitingChild", waiting_step=step.id)
    record["child_state"] = str(state)
    index = procedure.steps.index(step)
    ok = state is State.SUCCEEDED
    finish_waiting(
        engine,
        eid,
        seq,
        ok=ok,
        result=record,
        reason=None if ok else f"{record.get('run')} ended {state}",
        cursor=int(record.get("next_index", index + 1)) if ok else None,
        actor=actor,
    )
    ctx.steps[step.id] = {"result": record, "state": str(state), "ok": ok}
    engine.reporter.step_finished(
        StepReport(
            step,
            seq,
            State.SUCCEEDED if ok else State.FAILED,
            "Succeeded" if ok else "Failed",
            None,
            f"{record.get('run')} ended {state}",
            record,
        )
    )
    if not ok:
        nxt = await _failure.after_failure(
            engine,
            ctx,
            runbook,
            procedure,
            step,
            index,
            actor=actor,
            depth=depth,
            reason=f"{record.get('run')} ended {state}",
        )
        if isinstance(nxt, Outcome):
            return nxt
        engine._set_cursor(eid, nxt)
    return None


def finish_waiting(
    engine: EngineLike,
    eid: str,
    seq: int,
    *,
    ok: bool,
    result: Any,
    reason: str | None,
    cursor: int | None,
    actor: str,
) -> None:
    """A waiting step got its answer (attested, approved or rejected, its child ended):
    the run is ours again and the step ends, in one transaction."""
    with engine.db.transaction():
        journal.transition_execution(
            db=engine.db,
            execution_id=eid,
            to=State.RUNNING,
            name="Running",
            actor=actor,
            owner=engine.owner,
            verb="resumed",
        )
        journal.transition_step(
            db=engine.db,
            execution_id=eid,
            seq=seq,
            to=State.SUCCEEDED if ok else State.FAILED,
            actor=actor,
            result=result,
            reason=reason,
            cursor=cursor,
            driver=engine.owner,
        )


async def continue_waiting(
    engine: EngineLike,
    ctx: ExecutionContext,
    runbook: Runbook,
    procedure: Procedure,
    row: journal.ExecutionRow,
    seq: int,
    step: Step,
    *,
    actor: str,
    depth: int,
    resumed: bool,
) -> Outcome:
    eid = ctx.execution_id
    index = procedure.steps.index(step)
    if step.kind is StepKind.DECIDE:
        parked = await continue_child(
            engine, ctx, runbook, procedure, seq, step, actor=actor, depth=depth
        )
        if parked is not None:
            return parked
    elif step.kind is StepKind.MANUAL:
        attested = attestation(engine, eid, seq)
        if attested is None and engine.interaction is not None:
            engine.reporter.step_waiting(step=step, seq=seq, execution_id=eid, why="input")
            answer = engine.interaction.confirm_manual(step=step, execution_id=eid)
            if answer is not None:
                engine.attest(
                    execution_id=eid,
                    actor=answer.actor,
                    items=answer.items,
                    note=answer.note,
                    _seq=seq,
                    _step=step,
                )
                attested = {"actor": answer.actor}
        if attested is None:
            engine.reporter.step_waiting(step=step, seq=seq, execution_id=eid, why="parked")
            return Outcome(eid, State.WAITING, "AwaitingInput", waiting_step=step.id)
        finish_waiting(
            engine,
            eid,
            seq,
            ok=True,
            result={"attested_by": attested.get("actor")},
            reason=None,
            cursor=index + 1,
            actor=actor,
        )
        engine.reporter.step_finished(
            StepReport(
                step,
                seq,
                State.SUCCEEDED,
                "Attested",
                None,
                f"attested by {attested.get('actor')}",
            )
        )
    else:
        assert step.approval is not None or step.kind is StepKind.APPROVAL
        spec = step.approval or ApprovalSpec()
        requested = requested_at(engine, eid, seq)
        digest = approvals.compute_digest(
            runbook_hash=runbook.content_hash,
            procedure_id=procedure.id,
            params=row.params,
            environment=row.environment,
        )
        st = approvals.status(
            db=engine.db,
            execution_id=eid,
            step_seq=seq,
            spec=spec,
            digest=digest,
            requested_at=requested,
        )
        if st.verdict == "pending":
            engine.reporter.step_waiting(step=step, seq=seq, execution_id=eid, why="approval")
            while (
                st.verdict == "pending"
                and engine.interaction is not None
                and engine.interaction.wait_for_approval
            ):
                await asyncio.sleep(APPROVAL_POLL)
                st = approvals.status(
                    db=engine.db,
                    execution_id=eid,
                    step_seq=seq,
                    spec=spec,
                    digest=digest,
                    requested_at=requested,
                )
            if st.verdict == "pending":
                return Outcome(eid, State.WAITING, "AwaitingApproval", waiting_step=step.id)
        ok = st.verdict == "approved"
        reason = (
            None
            if ok
            else (f"rejected by {st.rejected_by}" if st.rejected_by else "approval expired")
        )
        finish_waiting(
            engine,
            eid,
            seq,
            ok=ok,
            result={"approved_by": list(st.approvers)},
            reason=reason,
            cursor=index + 1 if ok else index,
            actor=actor,
        )
        ctx.steps[step.id] = {
            "result": {"approved_by": list(st.approvers)},
            "state": "succeeded" if ok else "failed",
            "ok": ok,
        }
        engine.reporter.step_finished(
            StepReport(
                step,
                seq,
                State.SUCCEEDED if ok else State.FAILED,
                "Approved" if ok else "Rejected",
                None,
                reason or f"approved by {', '.join(st.approvers)}",
            )
        )
        if not ok:
            nxt = await _failure.after_failure(
                engine,
                ctx,
                runbook,
                procedure,
                step,
                index,
                actor=actor,
                depth=depth,
                reason=reason,
            )
            if isinstance(nxt, Outcome):
                return nxt
            engine._set_cursor(eid, nxt)
    if resumed:
        engine.reporter.execution_started(execution_id=eid, procedure=procedure, resumed=True)
    return await engine._drive(ctx, runbook, procedure, actor=actor, depth=depth)


def attestation(engine: EngineLike, eid: str, seq: int) -> dict[str, Any] | None:
    for ev in reversed(journal.events(db=engine.db, execution_id=eid)):
        if ev["action"] == "execution.step.attested" and ev["payload"].get("seq") == seq:
            return {"actor": ev["actor"], **ev["payload"]}
    return None


def requested_at(engine: EngineLike, eid: str, seq: int) -> str | None:
    r = engine.db.one(
        "SELECT started_at FROM step_runs WHERE execution_id = ? AND seq = ?", (eid, seq)
    )
    return str(r["started_at"]) if r else None
