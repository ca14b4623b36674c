"""Where a run goes next: `decide` branches and steps that fail before they run. Functions of
the engine (:class:`~opsbook.engine._protocol.EngineLike`)."""

from __future__ import annotations

import time
from typing import Any

from opsbook.engine import _failure, _waiting
from opsbook.engine import _journal as journal
from opsbook.engine._base import Outcome
from opsbook.engine._context import ExecutionContext
from opsbook.engine._dry import needs_results
from opsbook.engine._hooks import StepReport
from opsbook.engine._protocol import EngineLike
from opsbook.engine.states import State
from opsbook.errors import ExpressionError
from opsbook.expressions import evaluate
from opsbook.runbooks.model import DecideRule, Procedure, Runbook, Step


async def fail_unrun(
    engine: EngineLike,
    ctx: ExecutionContext,
    runbook: Runbook,
    procedure: Procedure,
    step: Step,
    index: int,
    seq: int,
    reason: str,
    *,
    actor: str,
    depth: int,
) -> int | Outcome:
    """A step that fails before it runs (its ``when`` cannot be evaluated): journal it as
    failed and apply its ``on_failure``."""
    eid = ctx.execution_id
    with engine.db.transaction():
        journal.open_step_run(
            db=engine.db,
            execution_id=eid,
            seq=seq,
            step=step,
            index=index,
            actor=actor,
            driver=engine.owner,
        )
        journal.transition_step(
            db=engine.db,
            execution_id=eid,
            seq=seq,
            to=State.FAILED,
            actor=actor,
            reason=reason,
            duration=0.0,
            driver=engine.owner,
        )
    ctx.steps[step.id] = {"result": None, "state": "failed", "ok": False}
    engine.reporter.step_finished(StepReport(step, seq, State.FAILED, "Failed", 0.0, reason))
    nxt = await _failure.after_failure(
        engine, ctx, runbook, procedure, step, index, actor=actor, depth=depth, reason=reason
    )
    if isinstance(nxt, int):
        engine._set_cursor(eid, nxt)
    return nxt


def _branch_text(rule: DecideRule) -> str:
    target = f"goto {rule.goto}" if rule.goto else f"run {rule.run}"
    return f"if {rule.condition}: {target}" if rule.condition is not None else f"else: {target}"


def _undecided(
    engine: EngineLike,
    ctx: ExecutionContext,
    step: Step,
    index: int,
    seq: int,
    started: float,
    rule: DecideRule,
    *,
    actor: str,
) -> int:
    """A dry run reaching a condition on earlier results: it cannot choose, so it records the
    branches it could take and shows the following steps in order."""
    record = {
        "dry_run": True,
        "branch": "undecided (no results in a dry run)",
        "branches": [_branch_text(r) for r in step.decide],
    }
    reason = f"dry run: {rule.condition} needs the results of a real run"
    journal.transition_step(
        db=engine.db,
        execution_id=ctx.execution_id,
        seq=seq,
        to=State.SUCCEEDED,
        name="DryRun",
        actor=actor,
        result=record,
        reason=reason,
        cursor=index + 1,
        duration=time.perf_counter() - started,
        driver=engine.owner,
    )
    ctx.steps[step.id] = {"result": record, "state": "succeeded", "ok": True}
    engine.reporter.step_finished(
        StepReport(step, seq, State.SUCCEEDED, "DryRun", 0.0, "undecided", record)
    )
    return index + 1


async def decide(
    engine: EngineLike,
    ctx: ExecutionContext,
    runbook: Runbook,
    procedure: Procedure,
    step: Step,
    index: int,
    seq: int,
    started: float,
    *,
    actor: str,
    depth: int,
) -> int | Outcome:
    eid = ctx.execution_id
    chosen = None
    try:
        variables = ctx.cel_vars()
        for rule in step.decide:
            if ctx.dry_run and rule.condition is not None and needs_results(rule.condition):
                return _undecided(engine, ctx, step, index, seq, started, rule, actor=actor)
            if rule.condition is None or evaluate(rule.condition, variables) is True:
                chosen = rule
                break
    except ExpressionError as exc:
        _fail_step(engine, eid, seq, reason=exc.message, started=started, actor=actor)
        return engine._finish(eid, State.FAILED, actor, f"decide {step.id!r}: {exc.message}")
    if chosen is None:
        _fail_step(
            engine,
            eid,
            seq,
            reason="no branch matched and there is no else",
            started=started,
            actor=actor,
        )
        return await _failure.after_failure(
            engine,
            ctx,
            runbook,
            procedure,
            step,
            index,
            actor=actor,
            depth=depth,
            reason="no branch matched",
        )
    record = {
        "branch": chosen.condition or "else",
        "goto": chosen.goto,
        "run": chosen.run,
        "line": chosen.line,
    }
    next_index = index + 1
    if chosen.goto:
        next_index = next(i for i, s in enumerate(procedure.steps) if s.id == chosen.goto)
    record["next_index"] = next_index
    if chosen.run:
        child = await _failure.run_child(engine, ctx, chosen.run, actor=actor, depth=depth)
        record["child"] = child.execution_id
        record["child_state"] = str(child.state)
        if child.state in (State.WAITING, State.PENDING):  # parked, or queued elsewhere
            return _waiting.await_child(engine, ctx, step, seq, record, child, actor=actor)
        if child.state is not State.SUCCEEDED:
            _fail_step(
                engine,
                eid,
                seq,
                reason=f"{chosen.run} ended {child.state}",
                started=started,
                actor=actor,
                result=record,
            )
            return await _failure.after_failure(
                engine,
                ctx,
                runbook,
                procedure,
                step,
                index,
                actor=actor,
                depth=depth,
                reason=f"{chosen.run} ended {child.state}",
            )
    ctx.steps[step.id] = {"result": record, "state": "succeeded", "ok": True}
    journal.transition_step(
        db=engine.db,
        execution_id=eid,
        seq=seq,
        to=State.SUCCEEDED,
        actor=actor,
        result=record,
        cursor=next_index,
        duration=time.perf_counter() - started,
        driver=engine.owner,
    )
    engine.reporter.step_finished(
        StepReport(
            step,
            seq,
            State.SUCCEEDED,
            "Succeeded",
            time.perf_counter() - started,
            f"branch: {record['branch']}",
            record,
        )
    )
    return next_index


# ------------------------------------------------------------- people: manual, approval


def _fail_step(
    engine: EngineLike,
    eid: str,
    seq: int,
    *,
    reason: str,
    started: float,
    actor: str,
    result: Any = None,
) -> None:
    """End a running decide step as failed (the caller decides what happens next)."""
    journal.transition_step(
        db=engine.db,
        execution_id=eid,
        seq=seq,
        to=State.FAILED,
        actor=actor,
        result=result,
        reason=reason,
        duration=time.perf_counter() - started,
        driver=engine.owner,
    )
