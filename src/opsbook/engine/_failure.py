"""What happens when a step fails: its `on_failure` (continue, goto, run a procedure, or end
the run) and the child procedures that `decide` and `on_failure` run. Functions of the engine
(:class:`~opsbook.engine._protocol.EngineLike`); below `_branching` and `_waiting`, which both
use them."""

from __future__ import annotations

from opsbook.engine._base import MAX_DEPTH, Outcome
from opsbook.engine._context import ExecutionContext
from opsbook.engine._protocol import EngineLike
from opsbook.engine.states import State
from opsbook.errors import UsageError
from opsbook.runbooks.model import Procedure, Runbook, Step
from opsbook.workspace import load_environment


def on_failure_target(
    engine: EngineLike, procedure: Procedure, step: Step, index: int
) -> int | None:
    of = step.options.on_failure
    if of.action == "continue":
        return index + 1
    if of.action == "goto" and of.target:
        return next(i for i, s in enumerate(procedure.steps) if s.id == of.target)
    return None


async def after_failure(
    engine: EngineLike,
    ctx: ExecutionContext,
    runbook: Runbook,
    procedure: Procedure,
    step: Step,
    index: int,
    *,
    actor: str,
    depth: int,
    reason: str | None,
) -> int | Outcome:
    of = step.options.on_failure
    target = on_failure_target(engine, procedure, step, index)
    if target is not None:
        return target
    why = f"step {step.id!r} failed" + (f": {reason}" if reason else "")
    if of.action == "run" and of.target:
        child = await run_child(engine, ctx, of.target, actor=actor, depth=depth)
        why += f"; ran {of.target} (execution {child.execution_id}: {child.state})"
    return engine._finish(ctx.execution_id, State.FAILED, actor, ctx.redactor.redact(why))


async def run_child(
    engine: EngineLike, ctx: ExecutionContext, ref: str, *, actor: str, depth: int
) -> Outcome:
    if depth >= MAX_DEPTH:
        raise UsageError(
            f"procedures nested more than {MAX_DEPTH} deep (at {ref})",
            hint="check decide/on_failure `run:` targets for a cycle",
        )
    runbook, procedure = engine._resolve_ref(ref)
    environment = load_environment(engine.workspace, ctx.environment_name)
    names = {p.name for p in procedure.params if p.type != "secret"}
    params = {k: v for k, v in ctx.params.plain().items() if k in names}
    for p in procedure.params:
        if p.name not in params and p.default is not None and p.type != "secret":
            params[p.name] = p.default
    return await engine.start(
        runbook=runbook,
        procedure=procedure,
        environment=environment,
        params=params,
        started_by=ctx.started_by,
        dry_run=ctx.dry_run,
        parent_id=ctx.execution_id,
        depth=depth + 1,
    )
