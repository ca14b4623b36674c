"""The engine: one asyncio implementation that drives an execution through its steps.

Every state change goes through the journal (committed before the engine moves on). Executions
waiting for people hold no coroutine and no memory: they are rows, continued by :meth:`resume`.

Scale-out (ADR 0017): an engine built with ``queue=`` drives one *slice* of a run for a worker:
from its journal until it parks, ends, or reaches an executable step of another workers' queue,
where it hands the run to that queue (``_running.hand_off``). Without ``queue`` (the CLI, a
server without a broker) queue attributes are ignored and the whole run is driven here.
:meth:`Engine.create` makes a queued run for a worker to claim (:meth:`Engine.resume`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from opsbook.db import Database
from opsbook.engine import _branching, _recovery, _running, _starting, _waiting
from opsbook.engine import _journal as journal
from opsbook.engine._base import (
    MAX_STEP_RUNS,
    Outcome,
    owner_alive,
    owner_token,
)
from opsbook.engine._context import ExecutionContext, SecretParams, secret_sources
from opsbook.engine._dry import needs_results
from opsbook.engine._hooks import Dispatcher, Interaction, Reporter, StepReport
from opsbook.engine.guards import StartGuard
from opsbook.engine.secrets import Redactor, SecretResolver
from opsbook.engine.states import TERMINAL_STATES, State
from opsbook.errors import (
    ConflictError,
    ExpressionError,
    OpsbookError,
    UsageError,
)
from opsbook.expressions import evaluate
from opsbook.logs import get_logger
from opsbook.runbooks.model import Procedure, Runbook, Step, StepKind
from opsbook.workspace import Environment, Workspace, load_environment


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
        start_guards: Sequence[StartGuard] = (),
        queue: str | None = None,
        dispatcher: Dispatcher | None = None,
    ) -> None:
        self.db = db
        #: The queue of the message this engine drives (a worker's); None: in-process.
        self.queue = queue
        self.dispatcher = dispatcher
        #: Set by a draining worker: the run goes back to its queue at the next step boundary.
        self.draining = False
        self.start_guards = tuple(start_guards)  # see opsbook.engine.guards
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
        row = _starting.new_row(
            self,
            runbook=runbook,
            procedure=procedure,
            environment=environment,
            params=params,
            started_by=started_by,
            dry_run=dry_run,
            parent_id=parent_id,
            state_name="Pending",
            owner=self.owner,
        )
        with self.db.transaction():
            journal.create_execution(db=self.db, execution=row, actor=started_by)
            journal.transition_execution(
                db=self.db,
                execution_id=row.id,
                to=State.RUNNING,
                name="Running",
                actor=started_by,
                owner=self.owner,
            )
        self.reporter.execution_started(execution_id=row.id, procedure=procedure, resumed=False)
        ctx = self._context(row, environment, procedure)
        return await self._drive(ctx, runbook, procedure, actor=started_by, depth=depth)

    def create(
        self,
        *,
        runbook: Runbook,
        procedure: Procedure,
        environment: Environment,
        params: Mapping[str, Any],
        started_by: str,
        queue: str,
        dry_run: bool = False,
        parent_id: str | None = None,
    ) -> tuple[journal.ExecutionRow, int]:
        """A new run for the workers of ``queue``: checked as :meth:`start` checks it, created
        ``pending`` (``Queued``) and dispatched in one transaction (the caller's, when one is
        open), nothing run. Returns the row and its dispatch number; the caller sends the
        message (``dispatcher.send``) after its transaction commits."""
        if self.dispatcher is None:
            raise UsageError(
                "a queued run needs a dispatcher (a broker) to reach the workers",
                hint="set OPSBOOK_BROKER_URL, or run it in-process with `opsbook run`",
            )
        row = _starting.new_row(
            self,
            runbook=runbook,
            procedure=procedure,
            environment=environment,
            params=params,
            started_by=started_by,
            dry_run=dry_run,
            parent_id=parent_id,
            state_name="Queued",
            owner=None,
            queue=queue,
        )
        with self.db.transaction():
            journal.create_execution(db=self.db, execution=row, actor=started_by)
            dispatch = self.dispatcher.enqueue(
                db=self.db, execution_id=row.id, queue=queue, actor=started_by
            )
        return row, dispatch

    def _context(
        self, row: journal.ExecutionRow, environment: Environment, procedure: Procedure
    ) -> ExecutionContext:
        # the environment's Key Vault (key_vault:), after the env/file providers
        resolver = self.resolver.for_environment(environment.data, origin=str(environment.path))
        return ExecutionContext(
            execution_id=row.id,
            started_by=row.started_by,
            environment_name=environment.name,
            environment=environment.data,
            params=SecretParams(row.params, secret_sources(procedure), resolver),
            resolver=resolver,
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

        if row.state is State.PENDING:  # new or handed off: claim it
            journal.transition_execution(
                db=self.db,
                execution_id=execution_id,
                to=State.RUNNING,
                name="Running",
                actor=actor,
                owner=self.owner,
                verb="claimed",
                payload={"queue": self.queue, "worker": self.owner} if self.queue else None,
            )
            self.reporter.execution_started(
                execution_id=execution_id, procedure=procedure, resumed=bool(runs)
            )
            return await self._drive(ctx, runbook, procedure, actor=actor, depth=depth)

        if row.state is State.RUNNING:
            if owner_alive(row.owner, db=self.db):
                raise ConflictError(
                    f"execution {execution_id} is running in another process ({row.owner})",
                    hint="wait for it, or abort it with `opsbook executions abort ID`",
                )
            _recovery.mark_crashed(self, row, open_run, actor=actor)
            row = journal.get_execution(db=self.db, execution_id=execution_id)
            runs = journal.step_runs(db=self.db, execution_id=execution_id)
            open_run = runs[-1] if runs and runs[-1].state not in TERMINAL_STATES else None

        if open_run is not None and open_run.state is State.CRASHED:
            return await _recovery.resume_crashed(
                self,
                ctx,
                runbook,
                procedure,
                row,
                open_run,
                decision=decision,
                actor=actor,
                depth=depth,
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
        return await _waiting.continue_waiting(
            self,
            ctx,
            runbook,
            procedure,
            row,
            open_run.seq,
            step,
            actor=actor,
            depth=depth,
            resumed=True,
        )

    def _reload(self, row: journal.ExecutionRow) -> tuple[Runbook, Procedure]:
        """The run's runbook as it started (its content hash checked): from its path, or, where
        that path does not exist (a worker's own checkout), by ``runbook#procedure``."""
        path = Path(row.runbook_path)
        if not path.exists() and self._resolve_ref is not None:
            runbook: Runbook = self._resolve_ref(f"{row.runbook_id}#{row.procedure_id}")[0]
        else:
            runbook = self._load_runbook(path)
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
        env = None
        try:
            if self.queue is not None:  # a worker's slice: steps of other queues are handed off
                env = load_environment(self.workspace, row.environment)
            while index < len(steps):
                if seq > MAX_STEP_RUNS:
                    return self._finish(
                        eid,
                        State.FAILED,
                        actor,
                        f"more than {MAX_STEP_RUNS} step runs: a goto loop?",
                    )
                if _running.abort_requested(self.db, eid):
                    return self._finish(eid, State.ABORTED, actor, "abort requested")
                if self.draining and self.queue is not None:
                    return _running.hand_off(
                        self, eid, queue=self.queue, actor=actor, reason="its worker is draining"
                    )
                step = steps[index]
                try:
                    skip = bool(step.options.when) and not self._when(ctx, step)
                except ExpressionError as exc:
                    nxt = await _branching.fail_unrun(
                        self,
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
                    journal.open_step_run(
                        db=self.db,
                        execution_id=eid,
                        seq=seq,
                        step=step,
                        index=index,
                        state=State.SKIPPED,
                        name="Skipped",
                        actor=actor,
                        reason=f"when: {step.options.when} is false",
                        driver=self.owner,
                    )
                    self._set_cursor(eid, index + 1)
                    self.reporter.step_finished(
                        StepReport(step, seq, State.SKIPPED, "Skipped", 0.0, "condition false")
                    )
                    index, seq = index + 1, seq + 1
                    continue
                if step.kind in (StepKind.MANUAL, StepKind.APPROVAL):
                    waited = await _waiting.wait_for_person(
                        self,
                        ctx,
                        runbook,
                        procedure,
                        row,
                        step,
                        index,
                        seq,
                        actor=actor,
                        depth=depth,
                    )
                    if isinstance(waited, Outcome):
                        return waited
                    index, seq = waited, seq + 1  # a dry run: it would have waited
                    continue
                if env is not None and step.kind is not StepKind.DECIDE:
                    target = _running.step_queue(step, env)
                    if target != self.queue:
                        return _running.hand_off(
                            self,
                            eid,
                            queue=target,
                            actor=actor,
                            reason=f"step {step.id!r} runs on queue {target}",
                        )
                outcome = await _running.run_step(
                    self, ctx, runbook, procedure, step, index, seq, actor=actor, depth=depth
                )
                if isinstance(outcome, Outcome):
                    return outcome
                index, seq = outcome, seq + 1
        except asyncio.CancelledError:
            # a run parked at a person's step while it was polled has no driver to check
            parked = journal.get_execution(db=self.db, execution_id=eid).state is State.WAITING
            with contextlib.suppress(journal.OwnershipLost):  # not ours to abort any more
                self._abort_open(
                    eid,
                    actor,
                    "interrupted (Ctrl-C or shutdown)",
                    driver=None if parked else self.owner,
                )
            raise
        except journal.OwnershipLost:
            raise  # another process holds the run now: no result, no cursor, no failure
        except OpsbookError as exc:
            # Never leave a run "running" behind an error: fail the open step and the run.
            return self._fail_open(eid, actor, exc.message)
        return self._finish(eid, State.SUCCEEDED, actor, None)

    def _fail_open(self, eid: str, actor: str, reason: str) -> Outcome:
        reason = self.redactor.redact(reason)
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
                    driver=self.owner,
                )
        return self._finish(eid, State.FAILED, actor, reason)

    def _next_seq(self, eid: str) -> int:
        r = self.db.one("SELECT MAX(seq) AS m FROM step_runs WHERE execution_id = ?", (eid,))
        return int(r["m"] or 0) + 1 if r else 1

    def _set_cursor(self, eid: str, cursor: int) -> None:
        journal.set_cursor(db=self.db, execution_id=eid, cursor=cursor, driver=self.owner)

    def _when(self, ctx: ExecutionContext, step: Step) -> bool:
        assert step.options.when is not None
        if ctx.dry_run and needs_results(step.options.when):
            return True  # unknowable in a dry run: render the step (it notes the condition)
        value = evaluate(step.options.when, ctx.cel_vars())
        if not isinstance(value, bool):
            raise ExpressionError(f"when: {step.options.when!r} did not return true/false")
        return value

    def _finish(self, eid: str, state: State, actor: str, reason: str | None) -> Outcome:
        reason = self.redactor.redact(reason) if reason else reason
        journal.transition_execution(
            db=self.db, execution_id=eid, to=state, actor=actor, reason=reason, driver=self.owner
        )
        self.reporter.execution_finished(execution_id=eid, state=state, reason=reason)
        return Outcome(eid, state, state.title(), reason)

    def _abort_open(self, eid: str, actor: str, reason: str, *, driver: str | None = None) -> None:
        """Abort the run and its open step; ``driver``: this engine's token when it drives the
        run (refused if it lost it), None when aborting a run nobody drives."""
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
                    driver=driver,
                )
            current = journal.get_execution(db=self.db, execution_id=eid)
            if current.state not in TERMINAL_STATES:
                journal.transition_execution(
                    db=self.db,
                    execution_id=eid,
                    to=State.ABORTED,
                    actor=actor,
                    reason=reason,
                    driver=driver,
                )

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
        if row.state is State.RUNNING and owner_alive(row.owner, db=self.db):
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
