"""Execution operations shared by the REST API, the console, the scheduler and alert-driven
runs: start, attest, approve or reject, abort, resume. Each checks the caller's permission
first (audited 403), then goes through the engine (and ``engine.approvals`` for four-eyes).

Without a broker, runs continue as asyncio tasks of the server. With one (``ctx.dispatcher``,
ADR 0017) the server drives nothing: a start creates a ``Queued`` run and dispatches it in one
transaction, and whatever makes a parked run drivable again (an attestation, the last
approval, a resume) dispatches it in the transaction that records it; the message is sent
after the commit, and a worker of the queue claims and drives it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from opsbook.engine import _journal as journal
from opsbook.engine import approvals
from opsbook.engine._base import owner_alive
from opsbook.engine._hooks import Reporter, StepReport
from opsbook.engine.states import TERMINAL_STATES, State
from opsbook.errors import (
    ConflictError,
    PermissionDenied,
    ValidationError,
)
from opsbook.executions.context import AppContext
from opsbook.executions.dispatching import (
    Queued,
    checked_start,
    create_queued,
    enqueue_continuation,
    send_queued,
)
from opsbook.logs import get_logger
from opsbook.runbooks.model import ApprovalSpec, Procedure, Runbook, Step
from opsbook.users.access import Principal, require

if TYPE_CHECKING:
    pass

RECOVERY_DECISIONS = ("retry", "skip", "abort")


class _Reporter(Reporter):
    """Wakes live-event streams on every change; resolves ``first`` with the execution id the
    first time the engine reports anything (so a start can answer with the new id)."""

    def __init__(self, ctx: AppContext, first: asyncio.Future[str] | None = None) -> None:
        self.ctx = ctx
        self.first = first

    def _seen(self, execution_id: str | None) -> None:
        if self.first is not None and not self.first.done() and execution_id:
            self.first.set_result(execution_id)
        self.ctx.changes.notify()

    def execution_started(self, *, execution_id: str, procedure: Procedure, resumed: bool) -> None:
        self._seen(execution_id)

    def step_started(self, *, step: Step, seq: int, detail: dict[str, Any]) -> None:
        self.ctx.changes.notify()

    def step_finished(self, report: StepReport) -> None:
        self.ctx.changes.notify()

    def step_waiting(self, *, step: Step, seq: int, execution_id: str, why: str) -> None:
        self._seen(execution_id)

    def execution_finished(self, *, execution_id: str, state: State, reason: str | None) -> None:
        self._seen(execution_id)


def _spawn(ctx: AppContext, key: str, coro: Awaitable[Any]) -> asyncio.Task[Any]:
    task: asyncio.Task[Any] = asyncio.ensure_future(coro)
    log = get_logger(execution_id=key)

    def done(t: asyncio.Task[Any]) -> None:
        for k in [k for k, v in ctx.tasks.items() if v is t]:
            del ctx.tasks[k]
        ctx.changes.notify()
        if t.cancelled():
            return
        exc = t.exception()
        if exc is not None:
            log.warning("server.run.failed", fields={"error": str(exc)})

    task.add_done_callback(done)
    return task


async def _first_report(
    ctx: AppContext, make: Callable[[Reporter], Awaitable[Any]], key: str | None
) -> str:
    """Run ``make(reporter)`` as a background task; return the execution id as soon as the
    engine reports it, or raise what the engine raised before reporting anything."""
    loop = asyncio.get_running_loop()
    first: asyncio.Future[str] = loop.create_future()
    task = _spawn(ctx, key or "starting", make(_Reporter(ctx, first)))
    await asyncio.wait({first, task}, return_when=asyncio.FIRST_COMPLETED)
    if not first.done():
        exc = task.exception()
        if exc is not None:
            raise exc
        first.set_result(getattr(task.result(), "execution_id", key or ""))
    execution_id = first.result()
    if not task.done():
        ctx.tasks[execution_id] = task
    return execution_id


def _reload(ctx: AppContext, row: journal.ExecutionRow) -> tuple[Runbook, Procedure]:
    return ctx.engine()._reload(row)


async def start_execution(
    *,
    ctx: AppContext,
    principal: Principal,
    ref: str,
    environment: str | None,
    params: Mapping[str, Any],
    dry_run: bool = False,
    confirm: bool = False,
) -> journal.ExecutionRow:
    """Start ``ref`` (RUNBOOK#PROCEDURE); returns as soon as the execution exists (with a
    broker: the ``Queued`` row, dispatched to its environment's queue)."""
    dispatcher = ctx.dispatcher
    if dispatcher is not None:
        queued = create_queued(
            ctx=ctx,
            principal=principal,
            ref=ref,
            environment=environment,
            params=params,
            dry_run=dry_run,
            confirm=confirm,
        )
        row = journal.get_execution(db=ctx.db, execution_id=queued.row.id)  # as committed
        await send_queued(ctx, dispatcher, queued, actor=principal.username)
        return row
    runbook, procedure, env, values = checked_start(
        ctx=ctx,
        principal=principal,
        ref=ref,
        environment=environment,
        params=params,
        dry_run=dry_run,
        confirm=confirm,
    )

    def make(reporter: Reporter) -> Awaitable[Any]:
        return ctx.engine(reporter=reporter).start(
            runbook=runbook,
            procedure=procedure,
            environment=env,
            params=values,
            started_by=principal.username,
            dry_run=dry_run,
        )

    execution_id = await _first_report(ctx, make, None)
    return journal.get_execution(db=ctx.db, execution_id=execution_id)


def _waiting_run(ctx: AppContext, row: journal.ExecutionRow, kind: str) -> journal.StepRunRow:
    runs = journal.step_runs(db=ctx.db, execution_id=row.id)
    if row.state is not State.WAITING or not runs or runs[-1].state is not State.WAITING:
        raise ConflictError(
            f"execution {row.id} is not waiting for a person ({row.state_name})",
            hint="reload the execution to see what it is doing",
        )
    if runs[-1].kind != kind:
        what = "a manual step" if kind == "manual" else "an approval"
        raise ConflictError(
            f"execution {row.id} is not waiting at {what} ({row.state_name})",
            hint="reload the execution to see what it waits for",
        )
    return runs[-1]


async def _continue(
    ctx: AppContext,
    execution_id: str,
    actor: str,
    dispatched: Queued | None = None,
    decision: str | None = None,
) -> None:
    """Continue a run after a person acted: send its committed dispatch (``dispatched``, with
    a broker), else drive it here as a background task."""
    dispatcher = ctx.dispatcher
    if dispatcher is not None and dispatched is not None:
        await send_queued(ctx, dispatcher, dispatched, actor=actor, decision=decision)
        return

    def make(reporter: Reporter) -> Awaitable[Any]:
        return ctx.engine(reporter=reporter).resume(
            execution_id=execution_id, actor=actor, decision=decision
        )

    await _first_report(ctx, make, execution_id)


async def attest_step(
    *,
    ctx: AppContext,
    principal: Principal,
    execution_id: str,
    items: list[int] | None,
    note: str | None,
) -> journal.ExecutionRow:
    """Attest the manual step the run waits at (every checklist item) and continue it."""
    row = journal.get_execution(db=ctx.db, execution_id=execution_id)
    require(
        db=ctx.db, principal=principal, permission="executions:run", subject=f"execution:{row.id}"
    )
    run = _waiting_run(ctx, row, "manual")
    _, procedure = _reload(ctx, row)
    step = procedure.steps[run.step_index]
    expected = list(range(len(step.checklist)))
    chosen = expected if items is None else sorted(set(items))
    if chosen != expected:
        missing = [step.checklist[i].text for i in expected if i not in chosen]
        raise ValidationError(
            "every checklist item must be attested"
            + (f": missing {'; '.join(missing)}" if missing else ": unknown item numbers"),
            field="items",
            hint=f"items are numbered 0-{len(expected) - 1}" if expected else "send no items",
        )
    if note is not None and len(note) > 2000:
        raise ValidationError("the note is too long", field="note", hint="at most 2000 characters")
    dispatcher = ctx.dispatcher
    dispatched: Queued | None = None
    with ctx.db.transaction():  # the attestation and the run's dispatch commit together
        ctx.engine().attest(
            execution_id=row.id, actor=principal.username, items=tuple(chosen), note=note or None
        )
        if dispatcher is not None:
            dispatched = enqueue_continuation(ctx, dispatcher, row.id, principal.username)
    ctx.changes.notify()
    await _continue(ctx, row.id, principal.username, dispatched)
    return journal.get_execution(db=ctx.db, execution_id=row.id)


def approval_context(
    ctx: AppContext, row: journal.ExecutionRow, run: journal.StepRunRow
) -> tuple[Step, ApprovalSpec, str]:
    runbook, procedure = _reload(ctx, row)
    step = procedure.steps[run.step_index]
    digest = approvals.compute_digest(
        runbook_hash=runbook.content_hash,
        procedure_id=procedure.id,
        params=row.params,
        environment=row.environment,
    )
    return step, step.approval or ApprovalSpec(), digest


def may_approve(
    ctx: AppContext, principal: Principal, row: journal.ExecutionRow, spec: ApprovalSpec
) -> bool:
    """Whether to offer Approve/Reject to this person (the engine decides for real)."""
    if not principal.can("executions:approve") or principal.username == row.started_by:
        return False
    return not spec.roles or bool(set(spec.roles) & set(ctx.roles_of()(principal.username)))


async def decide_approval(
    *,
    ctx: AppContext,
    principal: Principal,
    execution_id: str,
    decision: str,
    comment: str | None,
) -> approvals.ApprovalStatus:
    """Approve or reject the approval step the run waits at. Four-eyes and the step's roles
    are enforced by ``engine.approvals.decide``; its refusal is audited and kept."""
    if decision not in ("approve", "reject"):
        raise ValidationError(
            f"decision must be approve or reject, not {str(decision)[:20]!r}",
            field="decision",
            hint="approve or reject",
        )
    if comment is not None and len(comment) > 2000:
        raise ValidationError("the comment is too long", field="comment", hint="2000 characters")
    row = journal.get_execution(db=ctx.db, execution_id=execution_id)
    require(
        db=ctx.db,
        principal=principal,
        permission="executions:approve",
        subject=f"execution:{row.id}",
    )
    run = _waiting_run(ctx, row, "approval")
    step, spec, digest = approval_context(ctx, row, run)
    denied: PermissionDenied | None = None
    dispatcher = ctx.dispatcher
    dispatched: Queued | None = None
    with ctx.db.transaction():
        try:
            approvals.decide(
                db=ctx.db,
                execution=row,
                step_seq=run.seq,
                step_id=step.id,
                step_state=run.state,
                spec=spec,
                approver=principal.username,
                approver_roles=ctx.roles_of()(principal.username),
                decision="approved" if decision == "approve" else "rejected",
                digest=digest,
                comment=ctx.redactor.redact(comment) if comment else None,
                requested_at=run.started_at,
            )
        except PermissionDenied as exc:
            denied = exc  # commit the refusal's audit record, then refuse
        else:
            status = approvals.status(
                db=ctx.db,
                execution_id=row.id,
                step_seq=run.seq,
                spec=spec,
                digest=digest,
                requested_at=run.started_at,
            )
            if status.verdict != "pending" and dispatcher is not None:
                # the deciding answer and the run's dispatch commit together
                dispatched = enqueue_continuation(ctx, dispatcher, row.id, principal.username)
    if denied is not None:
        raise denied
    ctx.changes.notify()
    if status.verdict != "pending":
        await _continue(ctx, row.id, principal.username, dispatched)
    return status


def abort_execution(
    *, ctx: AppContext, principal: Principal, execution_id: str, reason: str | None
) -> journal.ExecutionRow:
    row = journal.get_execution(db=ctx.db, execution_id=execution_id)
    require(
        db=ctx.db, principal=principal, permission="executions:abort", subject=f"execution:{row.id}"
    )
    if reason is not None and len(reason) > 2000:
        raise ValidationError("the reason is too long", field="reason", hint="2000 characters")
    if row.state in TERMINAL_STATES:
        raise ConflictError(f"execution {row.id} has already finished ({row.state})")
    why = reason or f"aborted by {principal.username}"
    # A run driven by a live process (this one included) is asked to stop; the engine decides.
    ctx.engine().abort(execution_id=row.id, actor=principal.username, reason=why)
    ctx.changes.notify()
    return journal.get_execution(db=ctx.db, execution_id=row.id)


async def resume_execution(
    *, ctx: AppContext, principal: Principal, execution_id: str, decision: str | None
) -> journal.ExecutionRow:
    """Continue a parked or crashed run (``decision`` for a crashed step that is not
    idempotent: retry, skip or abort)."""
    if decision is not None and decision not in RECOVERY_DECISIONS:
        raise ValidationError(
            f"decision must be one of {', '.join(RECOVERY_DECISIONS)}",
            field="decision",
            hint="retry runs the step again, skip moves on, abort stops the run",
        )
    row = journal.get_execution(db=ctx.db, execution_id=execution_id)
    require(
        db=ctx.db, principal=principal, permission="executions:run", subject=f"execution:{row.id}"
    )
    if row.state in TERMINAL_STATES:
        raise ConflictError(
            f"execution {row.id} has already finished ({row.state})", hint="start a new run"
        )
    if row.id in ctx.tasks:
        raise ConflictError(f"execution {row.id} is running", hint="wait for it, or abort it")
    dispatcher = ctx.dispatcher
    dispatched: Queued | None = None
    if dispatcher is not None:
        # what the worker's engine would refuse, refused here where the person sees it
        if row.state is State.RUNNING and owner_alive(row.owner, db=ctx.db):
            raise ConflictError(
                f"execution {row.id} is running in another process ({row.owner})",
                hint="wait for it, or abort it",
            )
        _reload(ctx, row)  # a runbook changed since the run started: ConflictError
        with ctx.db.transaction():
            dispatched = enqueue_continuation(ctx, dispatcher, row.id, principal.username)
    await _continue(ctx, row.id, principal.username, dispatched, decision)
    return journal.get_execution(db=ctx.db, execution_id=row.id)


async def drain(ctx: AppContext, timeout: float) -> None:
    """On shutdown: let running steps finish for ``timeout`` seconds, then cancel (the engine
    records an interrupted run as aborted)."""
    tasks = [t for t in ctx.tasks.values() if not t.done()]
    if not tasks:
        return
    _, pending = await asyncio.wait(tasks, timeout=timeout)
    for t in pending:
        t.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
