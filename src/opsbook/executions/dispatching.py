"""Starting runs for the workers (ADR 0017): the checks a start makes, the ``Queued`` run
created and dispatched in the caller's transaction, its message sent after the commit, and
the queue a parked or crashed run continues on. Used by :mod:`opsbook.executions.operations`
and the scheduler."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from opsbook.engine import _journal as journal
from opsbook.engine._hooks import Dispatcher
from opsbook.engine.states import State
from opsbook.errors import NotFoundError, ParameterError, ValidationError
from opsbook.executions.context import AppContext
from opsbook.runbooks.model import Procedure, Runbook
from opsbook.users.access import Principal, require

if TYPE_CHECKING:
    from opsbook.workspace import Environment


def json_param(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    raise ParameterError(
        f"parameter {name!r} must be a string, number or boolean",
        field=f"params.{name}",
        hint="send scalar values; lists and objects are not parameters",
    )


def checked_start(
    *,
    ctx: AppContext,
    principal: Principal,
    ref: str,
    environment: str | None,
    params: Mapping[str, Any],
    dry_run: bool,
    confirm: bool,
) -> tuple[Runbook, Procedure, Environment, dict[str, Any]]:
    """What a start needs, checked: the permission, the procedure, the environment, the
    parameters and the confirmation of a risky run."""
    from opsbook.runbooks.params import validate_params  # noqa: PLC0415
    from opsbook.workspace import load_environment  # noqa: PLC0415

    require(db=ctx.db, principal=principal, permission="executions:run", subject=f"runbook:{ref}")
    try:
        runbook, procedure = ctx.catalogue().resolve(ref)
    except NotFoundError as exc:
        raise ValidationError(exc.message, field="ref", hint=exc.hint) from exc
    try:
        env = load_environment(ctx.workspace, environment or ctx.workspace.default_environment)
    except NotFoundError as exc:
        raise ValidationError(exc.message, field="environment", hint=exc.hint) from exc
    raw = {str(k): json_param(str(k), v) for k, v in params.items()}
    ctx.resolver.refresh()  # secrets added since the server started count too
    try:
        values = validate_params(
            procedure,
            raw,
            path=runbook.path.name,
            max_bytes=ctx.settings.param_max_bytes_for(ctx.workspace.config),
            secret_in=ctx.resolver.secret_in,
        )
    except ParameterError as exc:
        raise ParameterError(exc.message, field=f"params.{exc.field}", hint=exc.hint) from exc
    risky = procedure.risk == "high" or env.name == "production"
    if risky and not dry_run and not confirm:
        raise ValidationError(
            f"{runbook.id}#{procedure.id} (risk: {procedure.risk}) on {env.name} needs"
            " confirmation",
            field="confirm",
            hint="send confirm: true (the console asks with a checkbox), or dry_run: true",
        )
    return runbook, procedure, env, dict(values)


@dataclass(frozen=True)
class Queued:
    """A run created for the workers (its row as created, dispatch number and queue); send
    it with :func:`send_queued` once the transaction that created it has committed."""

    row: journal.ExecutionRow
    dispatch: int
    queue: str


def create_queued(
    *,
    ctx: AppContext,
    principal: Principal,
    ref: str,
    environment: str | None,
    params: Mapping[str, Any],
    dry_run: bool = False,
    confirm: bool = False,
) -> Queued:
    """Check a start as :func:`start_execution` does, then create the run ``Queued`` on its
    environment's home queue and dispatch it with ``ctx.dispatcher`` (``Engine.create``;
    UsageError without a broker), joining the caller's transaction when one is open (the
    scheduler's claim commits with it)."""
    from opsbook.cluster.dispatch import home_queue  # noqa: PLC0415

    runbook, procedure, env, values = checked_start(
        ctx=ctx,
        principal=principal,
        ref=ref,
        environment=environment,
        params=params,
        dry_run=dry_run,
        confirm=confirm,
    )
    queue = home_queue(env)
    row, dispatch = ctx.engine().create(
        runbook=runbook,
        procedure=procedure,
        environment=env,
        params=values,
        started_by=principal.username,
        queue=queue,
        dry_run=dry_run,
    )
    return Queued(row=row, dispatch=dispatch, queue=queue)


async def send_queued(
    ctx: AppContext,
    dispatcher: Dispatcher,
    queued: Queued,
    *,
    actor: str,
    decision: str | None = None,
) -> bool:
    """Publish a committed dispatch (from a thread: the event loop never waits on the
    broker). False when the broker did not take it: the sweeper re-sends it."""
    sent = await asyncio.to_thread(
        dispatcher.send,
        execution_id=queued.row.id,
        dispatch=queued.dispatch,
        queue=queued.queue,
        actor=actor,
        decision=decision,
    )
    ctx.changes.notify()
    return sent


def continuation_queue(ctx: AppContext, row: journal.ExecutionRow) -> str:
    """Where a parked or crashed run goes on: the dead owner's host queue when its open step
    ran a process there (only that host can stop the leftovers; the sweeper moves it home if
    nobody there takes it, as for the reaper's dispatches), else its environment's home
    queue (a worker there hands the run on if its next step runs elsewhere)."""
    from opsbook.cluster.dispatch import home_queue_in, host_queue  # noqa: PLC0415

    if row.state is State.RUNNING and row.owner:
        runs = journal.step_runs(db=ctx.db, execution_id=row.id)
        if runs and runs[-1].state is State.RUNNING and runs[-1].pid is not None:
            return host_queue(row.owner.rsplit(":", 2)[0])
    return home_queue_in(ctx.workspace)(row.environment)


def enqueue_continuation(
    ctx: AppContext, dispatcher: Dispatcher, execution_id: str, actor: str
) -> Queued:
    """Dispatch a run that can go on, in the caller's transaction."""
    row = journal.get_execution(db=ctx.db, execution_id=execution_id)
    queue = continuation_queue(ctx, row)
    number = dispatcher.enqueue(db=ctx.db, execution_id=row.id, queue=queue, actor=actor)
    return Queued(row=row, dispatch=number, queue=queue)
