"""One executable step (`sh`, `sql`, an action, ...): journal it, run it with its retries
while watching for an abort requested elsewhere, record its result and apply its
`on_failure`; or, when the step belongs to another workers' queue, hand the run to that queue
(ADR 0017 §5). Functions of the engine (:class:`~opsbook.engine._protocol.EngineLike`)."""

from __future__ import annotations

import asyncio
import time

from opsbook.db import Database
from opsbook.engine import _branching, _failure
from opsbook.engine import _journal as journal
from opsbook.engine._base import ABORT_POLL, RECORD_PID_AFTER, Outcome
from opsbook.engine._context import ExecutionContext
from opsbook.engine._dry import step_entry
from opsbook.engine._hooks import StepReport
from opsbook.engine._leftovers import record_process
from opsbook.engine._live_output import LiveOutput
from opsbook.engine._protocol import EngineLike
from opsbook.engine._steps import StepOutcome, run_executable
from opsbook.engine.states import State
from opsbook.errors import OpsbookError, UsageError
from opsbook.runbooks.model import Procedure, Runbook, Step, StepKind
from opsbook.workspace import Environment


def step_queue(step: Step, env: Environment) -> str:
    """The workers' queue that runs ``step``: its ``{queue=…}`` mapped through the
    environment's ``queues:`` (a name not mapped is used as written), else the environment's
    own ``queue:`` (``default`` when it names none)."""
    logical = step.options.queue
    if not logical:
        return env.queue
    return env.queues.get(logical, logical) or env.queue


def hand_off(engine: EngineLike, eid: str, *, queue: str, actor: str, reason: str) -> Outcome:
    """Give the run to the workers of ``queue``: ``RUNNING → PENDING`` (``Queued``) and a
    dispatch in one transaction, the message sent after the commit (a lost one is re-sent by
    the sweeper). The slice driving it ends here."""
    dispatcher = engine.dispatcher
    if dispatcher is None:
        raise UsageError(
            f"execution {eid} must go to queue {queue!r}, but this engine has no dispatcher",
            hint="build the engine with Engine(queue=..., dispatcher=...) (opsbook worker does)",
        )
    with engine.db.transaction():
        dispatch = dispatcher.enqueue(db=engine.db, execution_id=eid, queue=queue, actor=actor)
        journal.transition_execution(
            db=engine.db,
            execution_id=eid,
            to=State.PENDING,
            name="Queued",
            reason=reason,
            actor=actor,
            verb="queued",
            payload={"queue": queue, "dispatch": dispatch},
            driver=engine.owner,
        )
    dispatcher.send(execution_id=eid, dispatch=dispatch, queue=queue, actor=actor)
    engine.log.bind(execution_id=eid).info(
        "execution.queued", fields={"queue": queue, "dispatch": dispatch, "reason": reason}
    )
    return Outcome(eid, State.PENDING, "Queued", reason=reason)


def abort_requested(db: Database, eid: str) -> bool:
    """Whether someone asked (``opsbook executions abort``) for this execution to stop."""
    r = db.one("SELECT abort_requested FROM executions WHERE id = ?", (eid,))
    return bool(r and r["abort_requested"])


async def run_step(
    engine: EngineLike,
    ctx: ExecutionContext,
    runbook: Runbook,
    procedure: Procedure,
    step: Step,
    index: int,
    seq: int,
    *,
    actor: str,
    depth: int,
) -> int | Outcome:
    """Run one non-waiting step; return the next index, or an Outcome when the run ends."""
    eid = ctx.execution_id
    journal.open_step_run(
        db=engine.db,
        execution_id=eid,
        seq=seq,
        step=step,
        index=index,
        actor=actor,
        driver=engine.owner,
    )
    started = time.perf_counter()
    if step.kind is StepKind.DECIDE:
        return await _branching.decide(
            engine, ctx, runbook, procedure, step, index, seq, started, actor=actor, depth=depth
        )
    engine.reporter.step_started(step=step, seq=seq, detail={})
    log = engine.log.bind(execution_id=eid, step_id=step.id, seq=seq)
    log.info("execution.step.started", fields={"kind": str(step.kind)})
    cancel = asyncio.Event()
    watcher = asyncio.create_task(_watch_abort(engine.db, eid, cancel))
    # A process's pid is recorded (for crash recovery) only once it has run a moment:
    # most steps are done by then, and the journal write would cost more than they do.
    loop = asyncio.get_running_loop()
    pending: list[asyncio.TimerHandle] = []
    live = LiveOutput(
        db=engine.db, reporter=engine.reporter, eid=eid, seq=seq, step=step, loop=loop
    )

    def remember(pid: int) -> None:
        pending.append(
            loop.call_later(
                RECORD_PID_AFTER,
                lambda: record_process(db=engine.db, execution_id=eid, seq=seq, pid=pid),
            )
        )

    try:
        result: StepOutcome = await run_executable(
            step=step,
            ctx=ctx,
            cancel=cancel,
            workspace=engine.workspace.root,
            on_start=remember,
            on_output=live.add,
            on_retry=lambda attempt, why, delay: _retrying(
                engine, eid, seq, step, attempt, why, delay, actor=actor
            ),
        )
    except journal.OwnershipLost:
        raise  # the run is someone else's now: write nothing more
    except OpsbookError as exc:
        result = StepOutcome(
            ok=False,
            record={"error": exc.render()},
            reason=exc.message,
            attempts=1,
            fields=None,
        )
    finally:
        watcher.cancel()
        live.close()
        for handle in pending:
            handle.cancel()
    duration = time.perf_counter() - started
    if cancel.is_set():
        journal.transition_step(
            db=engine.db,
            execution_id=eid,
            seq=seq,
            to=State.ABORTED,
            actor=actor,
            reason="abort requested while the step ran",
            duration=duration,
            driver=engine.owner,
        )
        log.warning("execution.step.aborted")
        return engine._finish(eid, State.ABORTED, actor, "abort requested")
    log.info(
        "execution.step.finished",
        fields={"ok": result.ok, "duration": round(duration, 6), "reason": result.reason},
    )
    stored = ctx.redactor.redact_obj(result.record)
    ctx.steps[step.id] = (
        step_entry(step.id)  # a dry run has no results: later templates get placeholders
        if ctx.dry_run
        else {
            "result": result.fields,
            "state": "succeeded" if result.ok else "failed",
            "ok": result.ok,
        }
    )
    state = State.SUCCEEDED if result.ok else State.FAILED
    next_index = index + 1
    if not result.ok:
        nxt = _failure.on_failure_target(engine, procedure, step, index)
        next_index = nxt if nxt is not None else index
    journal.transition_step(
        db=engine.db,
        execution_id=eid,
        seq=seq,
        to=state,
        actor=actor,
        name="DryRun" if ctx.dry_run and result.ok else None,
        reason=ctx.redactor.redact(result.reason) if result.reason else None,
        result=stored,
        duration=duration,
        attempts=result.attempts,
        cursor=next_index,
        driver=engine.owner,
    )
    engine.reporter.step_finished(
        StepReport(
            step,
            seq,
            state,
            "DryRun" if ctx.dry_run else state.title(),
            duration,
            ctx.redactor.redact(result.reason) if result.reason else None,
            stored,
        )
    )
    if result.ok:
        return next_index
    return await _failure.after_failure(
        engine,
        ctx,
        runbook,
        procedure,
        step,
        index,
        actor=actor,
        depth=depth,
        reason=result.reason,
    )


def _retrying(
    engine: EngineLike,
    eid: str,
    seq: int,
    step: Step,
    attempt: int,
    why: str,
    delay: float,
    *,
    actor: str,
) -> None:
    """A failed attempt with more to come: the step run says so (``Retrying``, the reason,
    when the next attempt starts) and the journal records it, so the CLI, the console and
    ``executions show`` can follow a step that keeps failing."""
    of = step.options.retries + 1
    journal.transition_step(
        db=engine.db,
        execution_id=eid,
        seq=seq,
        to=State.RUNNING,
        name="Retrying",
        actor=actor,
        reason=f"attempt {attempt} of {of} failed: {why}; next attempt in {delay:g}s",
        attempts=attempt,
        verb="retrying",
        payload={"attempt": attempt, "of": of, "retry_in": delay, "failure": why},
        driver=engine.owner,
    )
    engine.reporter.step_retrying(
        step=step, seq=seq, attempt=attempt, of=of, reason=why, retry_in=delay
    )


async def _watch_abort(db: Database, eid: str, cancel: asyncio.Event) -> None:
    """While a step runs, notice an abort requested from another process."""
    while not cancel.is_set():
        await asyncio.sleep(ABORT_POLL)
        if abort_requested(db, eid):
            cancel.set()
