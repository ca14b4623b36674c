"""The engine: one asyncio implementation that drives an execution through its steps.

Every state change goes through the journal (committed before the engine moves on). Executions
waiting for people hold no coroutine and no memory: they are rows, continued by :meth:`resume`.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from opsbook.audit._log import utcnow
from opsbook.db import Database
from opsbook.engine import _journal as journal
from opsbook.engine import approvals
from opsbook.engine._context import ExecutionContext, SecretParams, secret_sources
from opsbook.engine._hooks import Interaction, Reporter, StepReport
from opsbook.engine._leftovers import record_process, stop_leftovers
from opsbook.engine._steps import StepOutcome, run_executable
from opsbook.engine.secrets import Redactor, SecretResolver
from opsbook.engine.states import TERMINAL_STATES, State
from opsbook.errors import (
    ConflictError,
    ExpressionError,
    OpsbookError,
    PermissionDenied,
    UsageError,
)
from opsbook.expressions import evaluate
from opsbook.logs import get_logger
from opsbook.runbooks.model import ApprovalSpec, Procedure, Runbook, Step, StepKind
from opsbook.workspace import Environment, Workspace, load_environment

MAX_STEP_RUNS = 1000  # per execution: a goto loop that never ends fails instead of spinning
RECORD_PID_AFTER = 0.2  # seconds a step's process runs before its pid is journaled
MAX_DEPTH = 5  # child procedures (decide run / on_failure run) nested at most this deep
APPROVAL_POLL = 0.5
ABORT_POLL = 0.5  # seconds between checks for an abort requested elsewhere


@dataclass(frozen=True)
class Outcome:
    execution_id: str
    state: State
    state_name: str
    reason: str | None = None
    waiting_step: str | None = None

    @property
    def parked(self) -> bool:
        return self.state in (State.WAITING, State.CRASHED)

    def to_dict(self) -> dict[str, Any]:
        return {
            "execution_id": self.execution_id,
            "state": str(self.state),
            "state_name": self.state_name,
            "reason": self.reason,
            "waiting_step": self.waiting_step,
        }


def new_execution_id() -> str:
    return uuid.uuid4().hex[:12]


def owner_token() -> str:
    """host:pid:process-start-time — identifies the live process that owns a running execution."""
    proc = psutil.Process()
    return f"{socket.gethostname()}:{os.getpid()}:{int(proc.create_time())}"


def owner_alive(owner: str | None) -> bool:
    if not owner:
        return False
    try:
        host, pid, started = owner.rsplit(":", 2)
    except ValueError:
        return False
    if host != socket.gethostname():
        return True  # another machine: we cannot tell, so assume alive (safe side)
    try:
        proc = psutil.Process(int(pid))
        return int(proc.create_time()) == int(started) and proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.Error, ValueError):
        return False


class Engine:
    def __init__(
        self,
        *,
        db: Database,
        workspace: Workspace,
        resolver: SecretResolver,
        redactor: Redactor,
        reporter: Reporter | None = None,
        interaction: Interaction | None = None,
        load_runbook: Any = None,
        resolve_ref: Any = None,
        roles_of: Callable[[str], tuple[str, ...]] | None = None,
    ) -> None:
        self.db = db
        self.workspace = workspace
        self.resolver = resolver
        self.redactor = redactor
        self.reporter = reporter or Reporter()
        self.interaction = interaction
        self._load_runbook = load_runbook  # Callable[[Path], Runbook]
        self._resolve_ref = resolve_ref  # Callable[[str], tuple[Runbook, Procedure]]
        self.roles_of = roles_of or workspace.roles_of  # accounts (users/) override opsbook.toml
        self.owner = owner_token()
        self.log = get_logger()

    # ------------------------------------------------------------------------------ start
    async def start(
        self,
        *,
        runbook: Runbook,
        procedure: Procedure,
        environment: Environment,
        params: Mapping[str, Any],
        started_by: str,
        dry_run: bool = False,
        parent_id: str | None = None,
        depth: int = 0,
    ) -> Outcome:
        self._check_may_start(
            procedure=procedure, runbook=runbook, user=started_by, environment=environment
        )
        defaults = {
            p.name: p.default
            for p in procedure.params
            if p.type != "secret" and p.default is not None and p.name not in params
        }
        params = {**defaults, **params}
        execution_id = new_execution_id()
        now = utcnow()
        digest = approvals.compute_digest(
            runbook_hash=runbook.content_hash,
            procedure_id=procedure.id,
            params=params,
            environment=environment.name,
        )
        row = journal.ExecutionRow(
            id=execution_id,
            parent_id=parent_id,
            runbook_id=runbook.id,
            runbook_path=str(runbook.path),
            runbook_hash=runbook.content_hash,
            procedure_id=procedure.id,
            environment=environment.name,
            params=dict(params),
            digest=digest,
            state=State.PENDING,
            state_name="Pending",
            reason=None,
            cursor=0,
            dry_run=dry_run,
            started_by=started_by,
            owner=self.owner,
            created_at=now,
            updated_at=now,
            finished_at=None,
        )
        with self.db.transaction():
            journal.create_execution(db=self.db, execution=row, actor=started_by)
            journal.transition_execution(
                db=self.db,
                execution_id=execution_id,
                to=State.RUNNING,
                name="Running",
                actor=started_by,
                owner=self.owner,
            )
        self.reporter.execution_started(
            execution_id=execution_id, procedure=procedure, resumed=False
        )
        ctx = self._context(row, environment, procedure)
        return await self._drive(ctx, runbook, procedure, actor=started_by, depth=depth)

    def _check_may_start(
        self, *, procedure: Procedure, runbook: Runbook, user: str, environment: Environment
    ) -> None:
        if procedure.environments and environment.name not in procedure.environments:
            raise UsageError(
                f"{runbook.id}#{procedure.id} is not meant for environment {environment.name!r}",
                hint=f"its environments are: {', '.join(procedure.environments)}",
            )
        if procedure.permissions:
            roles = set(self.roles_of(user))
            if "admin" not in roles and not roles & set(procedure.permissions):
                from opsbook import audit  # noqa: PLC0415 - keep import graph flat

                audit.record(
                    db=self.db,
                    actor=user,
                    action="execution.start.denied",
                    subject=f"procedure:{runbook.id}#{procedure.id}",
                    payload={"roles": sorted(roles), "needs": list(procedure.permissions)},
                )
                raise PermissionDenied(
                    f"{user} (roles: {', '.join(sorted(roles)) or 'none'}) may not start "
                    f"{runbook.id}#{procedure.id}",
                    hint=f"it needs one of: {', '.join(procedure.permissions)} "
                    "([users] in opsbook.toml)",
                )

    def _context(
        self, row: journal.ExecutionRow, environment: Environment, procedure: Procedure
    ) -> ExecutionContext:
        return ExecutionContext(
            execution_id=row.id,
            started_by=row.started_by,
            environment_name=environment.name,
            environment=environment.data,
            params=SecretParams(row.params, secret_sources(procedure), self.resolver),
            resolver=self.resolver,
            redactor=self.redactor,
            dry_run=row.dry_run,
        )

    # ----------------------------------------------------------------------------- resume
    async def resume(
        self,
        *,
        execution_id: str,
        actor: str,
        decision: str | None = None,
        depth: int = 0,
        continue_parent: bool = True,
    ) -> Outcome:
        out = await self._resume(
            execution_id=execution_id, actor=actor, decision=decision, depth=depth
        )
        if continue_parent and out.state in TERMINAL_STATES:
            row = journal.get_execution(db=self.db, execution_id=out.execution_id)
            if row.parent_id:
                parent = journal.get_execution(db=self.db, execution_id=row.parent_id)
                if parent.state is State.WAITING and parent.state_name == "AwaitingChild":
                    await self.resume(execution_id=parent.id, actor=actor)
        return out

    async def _resume(
        self, *, execution_id: str, actor: str, decision: str | None = None, depth: int = 0
    ) -> Outcome:
        row = journal.get_execution(db=self.db, execution_id=execution_id)
        execution_id = row.id
        if row.state in TERMINAL_STATES:
            raise ConflictError(
                f"execution {execution_id} has already finished ({row.state})",
                hint="start a new run with `opsbook run`",
            )
        runbook, procedure = self._reload(row)
        environment = load_environment(self.workspace, row.environment)
        ctx = self._context(row, environment, procedure)
        self._restore_steps(ctx, execution_id)
        runs = journal.step_runs(db=self.db, execution_id=execution_id)
        open_run = runs[-1] if runs and runs[-1].state not in TERMINAL_STATES else None

        if row.state is State.RUNNING:
            if owner_alive(row.owner):
                raise ConflictError(
                    f"execution {execution_id} is running in another process ({row.owner})",
                    hint="wait for it, or abort it with `opsbook executions abort ID`",
                )
            with self.db.transaction():
                journal.transition_execution(
                    db=self.db,
                    execution_id=execution_id,
                    to=State.CRASHED,
                    name="Crashed",
                    reason=f"owner process {row.owner} is gone",
                    actor=actor,
                )
                if open_run is not None and open_run.state is State.RUNNING:
                    journal.transition_step(
                        db=self.db,
                        execution_id=execution_id,
                        seq=open_run.seq,
                        to=State.CRASHED,
                        name="Crashed",
                        actor=actor,
                        reason="the process running this step died",
                    )
            if open_run is not None and open_run.state is State.RUNNING:
                stopped = stop_leftovers(db=self.db, execution_id=execution_id, seq=open_run.seq)
                if stopped:
                    journal.note_event(
                        db=self.db,
                        execution_id=execution_id,
                        action="execution.step.leftovers_stopped",
                        actor=actor,
                        subject=f"execution:{execution_id}/step:{open_run.step_id}",
                        payload={"seq": open_run.seq, "pids": stopped},
                    )
            row = journal.get_execution(db=self.db, execution_id=execution_id)
            runs = journal.step_runs(db=self.db, execution_id=execution_id)
            open_run = runs[-1] if runs and runs[-1].state not in TERMINAL_STATES else None

        if open_run is not None and open_run.state is State.CRASHED:
            step = procedure.steps[open_run.step_index]
            choice = decision
            if choice is None and step.options.idempotent:
                choice = "retry"
            if choice is None and self.interaction is not None:
                choice = self.interaction.recovery_decision(step=step, execution_id=execution_id)
            if choice is None:
                if row.state is State.CRASHED:
                    journal.transition_execution(
                        db=self.db,
                        execution_id=execution_id,
                        to=State.WAITING,
                        name="AwaitingRecoveryDecision",
                        actor=actor,
                        reason=f"step {step.id!r} was running when the process died and is "
                        "not idempotent",
                    )
                self.reporter.step_waiting(
                    step=step, seq=open_run.seq, execution_id=execution_id, why="recovery"
                )
                return Outcome(
                    execution_id, State.WAITING, "AwaitingRecoveryDecision", waiting_step=step.id
                )
            return await self._recover(
                ctx, runbook, procedure, row, open_run, step, choice, actor=actor, depth=depth
            )

        if row.state is State.CRASHED:  # died between steps: just carry on
            journal.transition_execution(
                db=self.db,
                execution_id=execution_id,
                to=State.RUNNING,
                name="Running",
                actor=actor,
                owner=self.owner,
                verb="resumed",
            )
            self.reporter.execution_started(
                execution_id=execution_id, procedure=procedure, resumed=True
            )
            return await self._drive(ctx, runbook, procedure, actor=actor, depth=depth)

        # WAITING at a manual step, an approval, or a child execution.
        assert open_run is not None and open_run.state is State.WAITING
        step = procedure.steps[open_run.step_index]
        return await self._continue_waiting(
            ctx, runbook, procedure, row, open_run.seq, step, actor=actor, depth=depth, resumed=True
        )

    async def _recover(
        self,
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
        with self.db.transaction():
            if choice == "abort":
                journal.transition_step(
                    db=self.db,
                    execution_id=eid,
                    seq=open_run.seq,
                    to=State.ABORTED,
                    actor=actor,
                    reason="aborted after crash",
                )
                journal.transition_execution(
                    db=self.db,
                    execution_id=eid,
                    to=State.ABORTED,
                    actor=actor,
                    reason=f"aborted by {actor} after a crash",
                )
            elif choice == "skip":
                journal.transition_step(
                    db=self.db,
                    execution_id=eid,
                    seq=open_run.seq,
                    to=State.SKIPPED,
                    actor=actor,
                    reason=f"skipped by {actor} after a crash",
                    cursor=open_run.step_index + 1,
                )
            else:
                journal.transition_step(
                    db=self.db,
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
                    db=self.db,
                    execution_id=eid,
                    to=State.RUNNING,
                    name="Running",
                    actor=actor,
                    owner=self.owner,
                    verb="resumed",
                    payload={"decision": choice},
                )
        if choice == "abort":
            self.reporter.execution_finished(execution_id=eid, state=State.ABORTED, reason=None)
            return Outcome(eid, State.ABORTED, "Aborted", reason="aborted after a crash")
        self.reporter.execution_started(execution_id=eid, procedure=procedure, resumed=True)
        return await self._drive(ctx, runbook, procedure, actor=actor, depth=depth)

    def _reload(self, row: journal.ExecutionRow) -> tuple[Runbook, Procedure]:
        runbook: Runbook = self._load_runbook(Path(row.runbook_path))
        if runbook.content_hash != row.runbook_hash:
            raise ConflictError(
                f"runbook {row.runbook_id} changed since execution {row.id} started "
                f"(its file {row.runbook_path} has a new content hash)",
                hint="restore the runbook as it was (git), or abort this execution and start a "
                "new run; approvals bound to the old content no longer count",
            )
        procedure = runbook.procedure(row.procedure_id)
        assert procedure is not None
        return runbook, procedure

    def _restore_steps(self, ctx: ExecutionContext, execution_id: str) -> None:
        """Earlier step results for templates after a restart (as stored: redacted)."""
        for run in journal.step_runs(db=self.db, execution_id=execution_id):
            if run.state in (State.SUCCEEDED, State.FAILED) and isinstance(run.result, dict):
                ctx.steps[run.step_id] = {
                    "result": run.result.get("fields", run.result.get("items")),
                    "state": str(run.state),
                    "ok": run.state is State.SUCCEEDED,
                }

    # ------------------------------------------------------------------------------ drive
    async def _drive(
        self,
        ctx: ExecutionContext,
        runbook: Runbook,
        procedure: Procedure,
        *,
        actor: str,
        depth: int,
    ) -> Outcome:
        eid = ctx.execution_id
        row = journal.get_execution(db=self.db, execution_id=eid)
        index = row.cursor
        seq = self._next_seq(eid)
        steps = procedure.steps
        try:
            while index < len(steps):
                if seq > MAX_STEP_RUNS:
                    return self._finish(
                        eid,
                        State.FAILED,
                        actor,
                        f"more than {MAX_STEP_RUNS} step runs: a goto loop?",
                    )
                if self._abort_requested(eid):
                    return self._finish(eid, State.ABORTED, actor, "abort requested")
                step = steps[index]
                try:
                    skip = bool(step.options.when) and not self._when(ctx, step)
                except ExpressionError as exc:
                    nxt = await self._fail_unrun(
                        ctx,
                        runbook,
                        procedure,
                        step,
                        index,
                        seq,
                        f"when: {exc.message}",
                        actor=actor,
                        depth=depth,
                    )
                    if isinstance(nxt, Outcome):
                        return nxt
                    index, seq = nxt, seq + 1
                    continue
                if skip:
                    journal.start_step_run(
                        db=self.db,
                        execution_id=eid,
                        seq=seq,
                        step_id=step.id,
                        step_index=index,
                        kind=str(step.kind),
                        state=State.SKIPPED,
                        name="Skipped",
                        actor=actor,
                        reason=f"when: {step.options.when} is false",
                    )
                    self._set_cursor(eid, index + 1)
                    self.reporter.step_finished(
                        StepReport(step, seq, State.SKIPPED, "Skipped", 0.0, "condition false")
                    )
                    index, seq = index + 1, seq + 1
                    continue
                if step.kind in (StepKind.MANUAL, StepKind.APPROVAL):
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
                        journal.start_step_run(
                            db=self.db,
                            execution_id=eid,
                            seq=seq,
                            step_id=step.id,
                            step_index=index,
                            kind=str(step.kind),
                            state=State.SKIPPED,
                            name="DryRun",
                            actor=actor,
                            reason=f"dry run: would wait ({name})",
                        )
                        self._set_cursor(eid, index + 1)
                        self.reporter.step_finished(
                            StepReport(
                                step, seq, State.SKIPPED, "DryRun", 0.0, f"would wait: {name}"
                            )
                        )
                        index, seq = index + 1, seq + 1
                        continue
                    with self.db.transaction():
                        journal.start_step_run(
                            db=self.db,
                            execution_id=eid,
                            seq=seq,
                            step_id=step.id,
                            step_index=index,
                            kind=str(step.kind),
                            state=State.WAITING,
                            name=name,
                            actor=actor,
                            payload=payload,
                        )
                        journal.transition_execution(
                            db=self.db,
                            execution_id=eid,
                            to=State.WAITING,
                            name=name,
                            actor=actor,
                            reason=f"step {step.id!r} waits for a person",
                        )
                    return await self._continue_waiting(
                        ctx,
                        runbook,
                        procedure,
                        row,
                        seq,
                        step,
                        actor=actor,
                        depth=depth,
                        resumed=False,
                    )
                outcome = await self._run_step(
                    ctx, runbook, procedure, step, index, seq, actor=actor, depth=depth
                )
                if isinstance(outcome, Outcome):
                    return outcome
                index, seq = outcome, seq + 1
        except asyncio.CancelledError:
            self._abort_open(eid, actor, "interrupted (Ctrl-C or shutdown)")
            raise
        except OpsbookError as exc:
            # Never leave a run "running" behind an error: fail the open step and the run.
            return self._fail_open(eid, actor, exc.message)
        return self._finish(eid, State.SUCCEEDED, actor, None)

    def _fail_open(self, eid: str, actor: str, reason: str) -> Outcome:
        runs = journal.step_runs(db=self.db, execution_id=eid)
        with self.db.transaction():
            if runs and runs[-1].state in (State.RUNNING, State.WAITING):
                journal.transition_step(
                    db=self.db,
                    execution_id=eid,
                    seq=runs[-1].seq,
                    to=State.FAILED,
                    actor=actor,
                    reason=reason,
                )
        return self._finish(eid, State.FAILED, actor, reason)

    async def _fail_unrun(
        self,
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
        with self.db.transaction():
            journal.start_step_run(
                db=self.db,
                execution_id=eid,
                seq=seq,
                step_id=step.id,
                step_index=index,
                kind=str(step.kind),
                state=State.RUNNING,
                name="Running",
                actor=actor,
            )
            journal.transition_step(
                db=self.db,
                execution_id=eid,
                seq=seq,
                to=State.FAILED,
                actor=actor,
                reason=reason,
                duration=0.0,
            )
        ctx.steps[step.id] = {"result": None, "state": "failed", "ok": False}
        self.reporter.step_finished(StepReport(step, seq, State.FAILED, "Failed", 0.0, reason))
        nxt = await self._after_failure(
            ctx, runbook, procedure, step, index, actor=actor, depth=depth, reason=reason
        )
        if isinstance(nxt, int):
            self._set_cursor(eid, nxt)
        return nxt

    def _next_seq(self, eid: str) -> int:
        r = self.db.one("SELECT MAX(seq) AS m FROM step_runs WHERE execution_id = ?", (eid,))
        return int(r["m"] or 0) + 1 if r else 1

    def _set_cursor(self, eid: str, cursor: int) -> None:
        self.db.execute("UPDATE executions SET cursor = ? WHERE id = ?", (cursor, eid))

    def _abort_requested(self, eid: str) -> bool:
        r = self.db.one("SELECT abort_requested FROM executions WHERE id = ?", (eid,))
        return bool(r and r["abort_requested"])

    def _when(self, ctx: ExecutionContext, step: Step) -> bool:
        assert step.options.when is not None
        value = evaluate(step.options.when, ctx.cel_vars())
        if not isinstance(value, bool):
            raise ExpressionError(f"when: {step.options.when!r} did not return true/false")
        return value

    def _finish(self, eid: str, state: State, actor: str, reason: str | None) -> Outcome:
        journal.transition_execution(
            db=self.db, execution_id=eid, to=state, actor=actor, reason=reason
        )
        self.reporter.execution_finished(execution_id=eid, state=state, reason=reason)
        return Outcome(eid, state, state.title(), reason)

    def _abort_open(self, eid: str, actor: str, reason: str) -> None:
        runs = journal.step_runs(db=self.db, execution_id=eid)
        with self.db.transaction():
            if runs and runs[-1].state in (State.RUNNING, State.WAITING):
                journal.transition_step(
                    db=self.db,
                    execution_id=eid,
                    seq=runs[-1].seq,
                    to=State.ABORTED,
                    actor=actor,
                    reason=reason,
                )
            current = journal.get_execution(db=self.db, execution_id=eid)
            if current.state not in TERMINAL_STATES:
                journal.transition_execution(
                    db=self.db, execution_id=eid, to=State.ABORTED, actor=actor, reason=reason
                )

    # ------------------------------------------------------------------ one executable step
    async def _run_step(
        self,
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
        journal.start_step_run(
            db=self.db,
            execution_id=eid,
            seq=seq,
            step_id=step.id,
            step_index=index,
            kind=str(step.kind),
            state=State.RUNNING,
            name="Running",
            actor=actor,
        )
        started = time.perf_counter()
        if step.kind is StepKind.DECIDE:
            return await self._decide(
                ctx, runbook, procedure, step, index, seq, started, actor=actor, depth=depth
            )
        self.reporter.step_started(step=step, seq=seq, detail={})
        log = self.log.bind(execution_id=eid, step_id=step.id, seq=seq)
        log.info("execution.step.started", fields={"kind": str(step.kind)})
        cancel = asyncio.Event()
        watcher = asyncio.create_task(self._watch_abort(eid, cancel))
        # A process's pid is recorded (for crash recovery) only once it has run a moment:
        # most steps are done by then, and the journal write would cost more than they do.
        loop = asyncio.get_running_loop()
        pending: list[asyncio.TimerHandle] = []

        def remember(pid: int) -> None:
            pending.append(
                loop.call_later(
                    RECORD_PID_AFTER,
                    lambda: record_process(db=self.db, execution_id=eid, seq=seq, pid=pid),
                )
            )

        try:
            result: StepOutcome = await run_executable(
                step=step,
                ctx=ctx,
                cancel=cancel,
                workspace=self.workspace.root,
                on_start=remember,
                on_retry=lambda attempt, why: journal.note_event(
                    db=self.db,
                    execution_id=eid,
                    action="execution.step.retrying",
                    actor=actor,
                    subject=f"execution:{eid}/step:{step.id}",
                    payload={"seq": seq, "step": step.id, "attempt": attempt, "reason": why},
                ),
            )
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
            for handle in pending:
                handle.cancel()
        duration = time.perf_counter() - started
        if cancel.is_set():
            journal.transition_step(
                db=self.db,
                execution_id=eid,
                seq=seq,
                to=State.ABORTED,
                actor=actor,
                reason="abort requested while the step ran",
                duration=duration,
            )
            log.warning("execution.step.aborted")
            return self._finish(eid, State.ABORTED, actor, "abort requested")
        log.info(
            "execution.step.finished",
            fields={"ok": result.ok, "duration": round(duration, 6), "reason": result.reason},
        )
        stored = ctx.redactor.redact_obj(result.record)
        ctx.steps[step.id] = {
            "result": result.fields,
            "state": "succeeded" if result.ok else "failed",
            "ok": result.ok,
        }
        state = State.SUCCEEDED if result.ok else State.FAILED
        next_index = index + 1
        if not result.ok:
            nxt = self._on_failure_target(procedure, step, index)
            next_index = nxt if nxt is not None else index
        journal.transition_step(
            db=self.db,
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
        )
        self.reporter.step_finished(
            StepReport(
                step,
                seq,
                state,
                "DryRun" if ctx.dry_run else state.title(),
                duration,
                result.reason,
                stored,
            )
        )
        if result.ok:
            return next_index
        return await self._after_failure(
            ctx, runbook, procedure, step, index, actor=actor, depth=depth, reason=result.reason
        )

    async def _watch_abort(self, eid: str, cancel: asyncio.Event) -> None:
        """While a step runs, notice an abort requested from another process."""
        while not cancel.is_set():
            await asyncio.sleep(ABORT_POLL)
            if self._abort_requested(eid):
                cancel.set()

    def _on_failure_target(self, procedure: Procedure, step: Step, index: int) -> int | None:
        of = step.options.on_failure
        if of.action == "continue":
            return index + 1
        if of.action == "goto" and of.target:
            return next(i for i, s in enumerate(procedure.steps) if s.id == of.target)
        return None

    async def _after_failure(
        self,
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
        target = self._on_failure_target(procedure, step, index)
        if target is not None:
            return target
        why = f"step {step.id!r} failed" + (f": {reason}" if reason else "")
        if of.action == "run" and of.target:
            child = await self._child(ctx, of.target, actor=actor, depth=depth)
            why += f"; ran {of.target} (execution {child.execution_id}: {child.state})"
        return self._finish(ctx.execution_id, State.FAILED, actor, ctx.redactor.redact(why))

    async def _child(self, ctx: ExecutionContext, ref: str, *, actor: str, depth: int) -> Outcome:
        if depth >= MAX_DEPTH:
            raise UsageError(
                f"procedures nested more than {MAX_DEPTH} deep (at {ref})",
                hint="check decide/on_failure `run:` targets for a cycle",
            )
        runbook, procedure = self._resolve_ref(ref)
        environment = load_environment(self.workspace, ctx.environment_name)
        names = {p.name for p in procedure.params if p.type != "secret"}
        params = {k: v for k, v in ctx.params.plain().items() if k in names}
        for p in procedure.params:
            if p.name not in params and p.default is not None and p.type != "secret":
                params[p.name] = p.default
        return await self.start(
            runbook=runbook,
            procedure=procedure,
            environment=environment,
            params=params,
            started_by=ctx.started_by,
            dry_run=ctx.dry_run,
            parent_id=ctx.execution_id,
            depth=depth + 1,
        )

    async def _decide(
        self,
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
                if rule.condition is None or evaluate(rule.condition, variables) is True:
                    chosen = rule
                    break
        except ExpressionError as exc:
            if ctx.dry_run:
                # A dry run has no results to decide on: say so and show the steps in order.
                record = {"dry_run": True, "branch": "undecided (no results in a dry run)"}
                journal.transition_step(
                    db=self.db,
                    execution_id=eid,
                    seq=seq,
                    to=State.SUCCEEDED,
                    name="DryRun",
                    actor=actor,
                    result=record,
                    reason=exc.message,
                    cursor=index + 1,
                    duration=time.perf_counter() - started,
                )
                ctx.steps[step.id] = {"result": record, "state": "succeeded", "ok": True}
                self.reporter.step_finished(
                    StepReport(step, seq, State.SUCCEEDED, "DryRun", 0.0, "undecided", record)
                )
                return index + 1
            journal.transition_step(
                db=self.db,
                execution_id=eid,
                seq=seq,
                to=State.FAILED,
                actor=actor,
                reason=exc.message,
                duration=time.perf_counter() - started,
            )
            return self._finish(eid, State.FAILED, actor, f"decide {step.id!r}: {exc.message}")
        if chosen is None:
            journal.transition_step(
                db=self.db,
                execution_id=eid,
                seq=seq,
                to=State.FAILED,
                actor=actor,
                reason="no branch matched and there is no else",
                duration=time.perf_counter() - started,
            )
            return await self._after_failure(
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
            child = await self._child(ctx, chosen.run, actor=actor, depth=depth)
            record["child"] = child.execution_id
            record["child_state"] = str(child.state)
            if child.state is State.WAITING:
                return self._await_child(ctx, step, seq, record, child, actor=actor)
            if child.state is not State.SUCCEEDED:
                journal.transition_step(
                    db=self.db,
                    execution_id=eid,
                    seq=seq,
                    to=State.FAILED,
                    actor=actor,
                    result=record,
                    reason=f"{chosen.run} ended {child.state}",
                    duration=time.perf_counter() - started,
                )
                return await self._after_failure(
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
            db=self.db,
            execution_id=eid,
            seq=seq,
            to=State.SUCCEEDED,
            actor=actor,
            result=record,
            cursor=next_index,
            duration=time.perf_counter() - started,
        )
        self.reporter.step_finished(
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
    def _await_child(
        self,
        ctx: ExecutionContext,
        step: Step,
        seq: int,
        record: dict[str, Any],
        child: Outcome,
        *,
        actor: str,
    ) -> Outcome:
        """A decide branch ran a procedure that now waits for a person: park this execution
        too (``AwaitingChild``); finishing the child continues it."""
        eid = ctx.execution_id
        why = f"waiting for {record['run']} (execution {child.execution_id}: {child.state_name})"
        with self.db.transaction():
            journal.transition_step(
                db=self.db,
                execution_id=eid,
                seq=seq,
                to=State.WAITING,
                name="AwaitingChild",
                actor=actor,
                result=record,
                reason=why,
            )
            journal.transition_execution(
                db=self.db,
                execution_id=eid,
                to=State.WAITING,
                name="AwaitingChild",
                actor=actor,
                reason=why,
            )
        self.reporter.step_waiting(step=step, seq=seq, execution_id=child.execution_id, why="child")
        return Outcome(eid, State.WAITING, "AwaitingChild", waiting_step=step.id)

    async def _continue_child(
        self,
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
        run = next(r for r in journal.step_runs(db=self.db, execution_id=eid) if r.seq == seq)
        record: dict[str, Any] = dict(run.result or {})
        child_id = str(record.get("child", ""))
        child = journal.get_execution(db=self.db, execution_id=child_id)
        state = child.state
        if state not in TERMINAL_STATES:
            out = await self.resume(
                execution_id=child_id, actor=actor, depth=depth + 1, continue_parent=False
            )
            state = out.state
        if state not in TERMINAL_STATES:
            self.reporter.step_waiting(step=step, seq=seq, execution_id=child_id, why="child")
            return Outcome(eid, State.WAITING, "AwaitingChild", waiting_step=step.id)
        record["child_state"] = str(state)
        index = procedure.steps.index(step)
        ok = state is State.SUCCEEDED
        self._finish_waiting(
            eid,
            seq,
            ok=ok,
            result=record,
            reason=None if ok else f"{record.get('run')} ended {state}",
            cursor=int(record.get("next_index", index + 1)) if ok else None,
            actor=actor,
        )
        ctx.steps[step.id] = {"result": record, "state": str(state), "ok": ok}
        self.reporter.step_finished(
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
            nxt = await self._after_failure(
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
            self._set_cursor(eid, nxt)
        return None

    def _finish_waiting(
        self,
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
        with self.db.transaction():
            journal.transition_execution(
                db=self.db,
                execution_id=eid,
                to=State.RUNNING,
                name="Running",
                actor=actor,
                owner=self.owner,
                verb="resumed",
            )
            journal.transition_step(
                db=self.db,
                execution_id=eid,
                seq=seq,
                to=State.SUCCEEDED if ok else State.FAILED,
                actor=actor,
                result=result,
                reason=reason,
                cursor=cursor,
            )

    async def _continue_waiting(
        self,
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
            parked = await self._continue_child(
                ctx, runbook, procedure, seq, step, actor=actor, depth=depth
            )
            if parked is not None:
                return parked
        elif step.kind is StepKind.MANUAL:
            attested = self._attestation(eid, seq)
            if attested is None and self.interaction is not None:
                self.reporter.step_waiting(step=step, seq=seq, execution_id=eid, why="input")
                answer = self.interaction.confirm_manual(step=step, execution_id=eid)
                if answer is not None:
                    self.attest(
                        execution_id=eid,
                        actor=answer.actor,
                        items=answer.items,
                        note=answer.note,
                        _seq=seq,
                        _step=step,
                    )
                    attested = {"actor": answer.actor}
            if attested is None:
                self.reporter.step_waiting(step=step, seq=seq, execution_id=eid, why="parked")
                return Outcome(eid, State.WAITING, "AwaitingInput", waiting_step=step.id)
            self._finish_waiting(
                eid,
                seq,
                ok=True,
                result={"attested_by": attested.get("actor")},
                reason=None,
                cursor=index + 1,
                actor=actor,
            )
            self.reporter.step_finished(
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
            requested = self._requested_at(eid, seq)
            digest = approvals.compute_digest(
                runbook_hash=runbook.content_hash,
                procedure_id=procedure.id,
                params=row.params,
                environment=row.environment,
            )
            st = approvals.status(
                db=self.db,
                execution_id=eid,
                step_seq=seq,
                spec=spec,
                digest=digest,
                requested_at=requested,
            )
            if st.verdict == "pending":
                self.reporter.step_waiting(step=step, seq=seq, execution_id=eid, why="approval")
                while (
                    st.verdict == "pending"
                    and self.interaction is not None
                    and self.interaction.wait_for_approval
                ):
                    await asyncio.sleep(APPROVAL_POLL)
                    st = approvals.status(
                        db=self.db,
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
            self._finish_waiting(
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
            self.reporter.step_finished(
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
                nxt = await self._after_failure(
                    ctx, runbook, procedure, step, index, actor=actor, depth=depth, reason=reason
                )
                if isinstance(nxt, Outcome):
                    return nxt
                self._set_cursor(eid, nxt)
        if resumed:
            self.reporter.execution_started(execution_id=eid, procedure=procedure, resumed=True)
        return await self._drive(ctx, runbook, procedure, actor=actor, depth=depth)

    def _attestation(self, eid: str, seq: int) -> dict[str, Any] | None:
        for ev in reversed(journal.events(db=self.db, execution_id=eid)):
            if ev["action"] == "execution.step.attested" and ev["payload"].get("seq") == seq:
                return {"actor": ev["actor"], **ev["payload"]}
        return None

    def _requested_at(self, eid: str, seq: int) -> str | None:
        r = self.db.one(
            "SELECT started_at FROM step_runs WHERE execution_id = ? AND seq = ?", (eid, seq)
        )
        return str(r["started_at"]) if r else None

    def attest(
        self,
        *,
        execution_id: str,
        actor: str,
        items: tuple[int, ...] | None = None,
        note: str | None = None,
        _seq: int | None = None,
        _step: Step | None = None,
    ) -> None:
        """Record a person's attestation of the waiting manual step (all checklist items unless
        ``items`` names some). Does not continue the run: :meth:`resume` does."""
        row = journal.get_execution(db=self.db, execution_id=execution_id)
        seq, step = _seq, _step
        if seq is None or step is None:
            runs = journal.step_runs(db=self.db, execution_id=row.id)
            if (
                row.state is not State.WAITING
                or not runs
                or runs[-1].state is not State.WAITING
                or runs[-1].kind != "manual"
            ):
                raise ConflictError(
                    f"execution {row.id} is not waiting at a manual step ({row.state_name})",
                    hint="`opsbook executions show ID` shows what it waits for",
                )
            _, procedure = self._reload(row)
            seq, step = runs[-1].seq, procedure.steps[runs[-1].step_index]
        all_items = tuple(range(len(step.checklist)))
        chosen = all_items if items is None else items
        missing = [i for i in all_items if i not in chosen]
        if missing:
            raise UsageError(
                "every checklist item must be attested: missing "
                + "; ".join(step.checklist[i].text for i in missing),
                hint="check each item, or abort the execution if it cannot be done",
            )
        journal.note_event(
            db=self.db,
            execution_id=row.id,
            action="execution.step.attested",
            actor=actor,
            subject=f"execution:{row.id}/step:{step.id}",
            payload={
                "seq": seq,
                "step": step.id,
                "items": [step.checklist[i].text for i in chosen],
                "note": self.redactor.redact(note) if note else None,
            },
        )

    def abort(self, *, execution_id: str, actor: str, reason: str | None = None) -> Outcome:
        row = journal.get_execution(db=self.db, execution_id=execution_id)
        why = reason or f"aborted by {actor}"
        if row.state in TERMINAL_STATES:
            raise ConflictError(f"execution {row.id} has already finished ({row.state})")
        if row.state is State.RUNNING and owner_alive(row.owner):
            with self.db.transaction():
                self.db.execute(
                    "UPDATE executions SET abort_requested = ? WHERE id = ?", (actor, row.id)
                )
                journal.note_event(
                    db=self.db,
                    execution_id=row.id,
                    action="execution.abort.requested",
                    actor=actor,
                    payload={"reason": why},
                )
            return Outcome(row.id, State.RUNNING, "Aborting", reason=why)
        self._abort_open(row.id, actor, why)
        return Outcome(row.id, State.ABORTED, "Aborted", reason=why)
