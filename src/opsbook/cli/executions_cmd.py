"""`opsbook executions list|show|resume|abort|confirm` and `opsbook approve`."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from opsbook.cli._common import AppState, is_interactive, make_engine, open_db, print_json
from opsbook.cli.run_cmd import exit_code_for, outcome_json


def _run_async(coro: Any) -> Any:
    import asyncio  # noqa: PLC0415 - not on the start-up path

    return asyncio.run(coro)


JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output")]
AsOpt = Annotated[str | None, typer.Option("--as", help="Act as this user")]
IdArg = Annotated[str, typer.Argument(help="Execution id (a unique prefix is enough)")]


def register(app: typer.Typer) -> None:
    ex = typer.Typer(help="Executions: list, show, resume, confirm, abort.", no_args_is_help=True)
    app.add_typer(ex, name="executions")

    @ex.command("list")
    def list_(
        ctx: typer.Context,
        state_: Annotated[
            str | None,
            typer.Option("--state", help="running, waiting, succeeded, failed, aborted, crashed"),
        ] = None,
        limit: Annotated[int, typer.Option(help="How many, newest first")] = 50,
        json_out: JsonOpt = False,
    ) -> None:
        """List executions, newest first."""
        from opsbook.engine import _journal as journal  # noqa: PLC0415

        st: AppState = ctx.obj
        ws = st.workspace()
        db = open_db(ws, st.settings)
        from opsbook.engine._base import owner_alive  # noqa: PLC0415
        from opsbook.engine.states import State  # noqa: PLC0415

        rows = journal.list_executions(db=db, state=state_, limit=limit)
        # A run whose engine process is gone still says "running" until someone resumes it.
        gone = {r.id for r in rows if r.state is State.RUNNING and not owner_alive(r.owner, db=db)}
        if json_out:
            print_json([{**r.to_dict(), "engine_gone": r.id in gone} for r in rows])
            return
        from rich.table import Table  # noqa: PLC0415

        from opsbook.cli._common import table_console  # noqa: PLC0415

        table = Table()
        for col in ("ID", "PROCEDURE", "ENV", "STATE", "DETAIL", "BY", "STARTED"):
            table.add_column(col)
        for r in rows:
            detail = r.state_name if r.state_name.lower() != str(r.state) else ""
            if r.id in gone:
                detail = "its engine is gone: opsbook executions resume " + r.id
            table.add_row(
                r.id,
                f"{r.runbook_id}#{r.procedure_id}",
                r.environment,
                f"{r.state} (dry run)" if r.dry_run else str(r.state),
                detail,
                r.started_by,
                r.created_at[:19].replace("T", " "),
            )
        table_console().print(table)

    @ex.command("show")
    def show(
        ctx: typer.Context,
        execution_id: IdArg,
        json_out: JsonOpt = False,
        events: Annotated[bool, typer.Option("--events", help="Include the journal")] = False,
    ) -> None:
        """Show an execution with its steps (and, with --events, its journal)."""
        from opsbook.engine import _journal as journal  # noqa: PLC0415
        from opsbook.engine.states import State  # noqa: PLC0415

        st: AppState = ctx.obj
        db = open_db(st.workspace(), st.settings)
        row = journal.get_execution(db=db, execution_id=execution_id)
        runs = journal.step_runs(db=db, execution_id=row.id)
        data = {**row.to_dict(), "steps": [r.to_dict() for r in runs]}
        journal_events = journal.events(db=db, execution_id=row.id)
        retries: dict[int, list[dict[str, Any]]] = {}
        for ev in journal_events:
            if ev["action"] == "execution.step.retrying":
                retries.setdefault(int(ev["payload"].get("seq", 0)), []).append(ev)
        for step in data["steps"]:
            step["failed_attempts"] = [
                {
                    "attempt": ev["payload"].get("attempt"),
                    "of": ev["payload"].get("of"),
                    "at": ev["ts"],
                    "reason": ev["payload"].get("failure", ev["payload"].get("reason")),
                    "retry_in": ev["payload"].get("retry_in"),
                }
                for ev in retries.get(int(step["seq"]), [])
            ]
        if events:
            data["events"] = journal_events
        if json_out:
            print_json(data)
            return
        typer.echo(
            f"execution {row.id}  {row.runbook_id}#{row.procedure_id} on {row.environment}"
            + ("  (dry run: nothing ran)" if row.dry_run else "")
        )
        typer.echo(
            f"  state: {row.state} ({row.state_name})" + (f" — {row.reason}" if row.reason else "")
        )
        typer.echo(f"  started by {row.started_by} at {row.created_at}")
        if row.params:
            typer.echo(f"  params: {row.params}")
        for r in runs:
            dur = f"{r.duration:.2f}s" if r.duration is not None else ""
            typer.echo(
                f"  {r.seq:>3}. {r.step_id:<40} {r.state_name:<18} {dur}"
                + (f"  {r.reason}" if r.reason else "")
            )
            live = r.result.get("live_output") if isinstance(r.result, dict) else None
            if r.state is State.RUNNING and live:
                typer.echo("         output so far:")
                for line in live[-20:]:
                    typer.echo(f"         │ {line}")
            for ev in retries.get(r.seq, []):
                p = ev["payload"]
                of = f" of {p['of']}" if p.get("of") else ""
                wait = f"; next attempt {p['retry_in']:g}s later" if p.get("retry_in") else ""
                typer.echo(
                    f"         attempt {p.get('attempt')}{of} failed at {ev['ts']}: "
                    f"{p.get('failure', p.get('reason'))}{wait}"
                )
        if events:
            for ev in data["events"]:
                typer.echo(f"  {ev['ts']}  {ev['actor']:<12} {ev['action']}")

    async def _resume(
        st: AppState, execution_id: str, user: str, decision: str | None, json_out: bool
    ) -> int:
        from rich.console import Console  # noqa: PLC0415

        from opsbook.cli._live import ConsoleInteraction, ConsoleReporter  # noqa: PLC0415

        ws = st.workspace()
        db = open_db(ws, st.settings)
        interactive = is_interactive() and not json_out
        console = Console(stderr=json_out, quiet=json_out, highlight=False)
        engine = make_engine(
            ws,
            st.settings,
            db,
            reporter=ConsoleReporter(console=console),
            interaction=ConsoleInteraction(console=console, actor=user) if interactive else None,
        )
        outcome = await engine.resume(execution_id=execution_id, actor=user, decision=decision)
        if json_out:
            print_json(outcome_json(db, outcome))
        return exit_code_for(outcome)

    @ex.command("resume")
    def resume(
        ctx: typer.Context,
        execution_id: IdArg,
        decision: Annotated[
            str | None,
            typer.Option(
                help="After a crash, for a step that is not idempotent: retry, skip or abort"
            ),
        ] = None,
        as_user: AsOpt = None,
        json_out: JsonOpt = False,
    ) -> int:
        """Continue a parked or crashed execution from its journal."""
        st: AppState = ctx.obj
        return int(_run_async(_resume(st, execution_id, st.user(as_user), decision, json_out)))

    @ex.command("confirm")
    def confirm(
        ctx: typer.Context,
        execution_id: IdArg,
        note: Annotated[str | None, typer.Option(help="e.g. a ticket number")] = None,
        as_user: AsOpt = None,
        json_out: JsonOpt = False,
        no_continue: Annotated[
            bool, typer.Option("--no-continue", help="Only record; do not continue")
        ] = False,
    ) -> int:
        """Attest the waiting manual step (every checklist item) and continue the run."""
        st: AppState = ctx.obj
        user = st.user(as_user)
        ws = st.workspace()
        db = open_db(ws, st.settings)
        engine = make_engine(ws, st.settings, db)
        engine.attest(execution_id=execution_id, actor=user, note=note)
        if no_continue:
            typer.echo(f"attested by {user}")
            return 0
        return int(_run_async(_resume(st, execution_id, user, None, json_out)))

    @ex.command("abort")
    def abort(
        ctx: typer.Context,
        execution_id: IdArg,
        reason: Annotated[str | None, typer.Option(help="Why")] = None,
        as_user: AsOpt = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Abort an execution. A running step is stopped (its whole process group) and no further
        step starts; a waiting one is ended at once."""
        st: AppState = ctx.obj
        user = st.user(as_user)
        ws = st.workspace()
        db = open_db(ws, st.settings)
        outcome = make_engine(ws, st.settings, db).abort(
            execution_id=execution_id, actor=user, reason=reason
        )
        if json_out:
            print_json(outcome.to_dict())
        else:
            typer.echo(f"execution {outcome.execution_id}: {outcome.state_name}")

    @app.command("approve")
    def approve(
        ctx: typer.Context,
        execution_id: IdArg,
        reject: Annotated[bool, typer.Option("--reject", help="Reject instead")] = False,
        comment: Annotated[str | None, typer.Option(help="Why")] = None,
        as_user: AsOpt = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Approve (or --reject) the approval step an execution waits at. Four-eyes: the
        person who started the run can never approve it."""
        from opsbook.engine import _journal as journal  # noqa: PLC0415
        from opsbook.engine import approvals  # noqa: PLC0415
        from opsbook.engine.states import State  # noqa: PLC0415
        from opsbook.errors import ConflictError, PermissionDenied  # noqa: PLC0415
        from opsbook.runbooks.model import ApprovalSpec  # noqa: PLC0415

        st: AppState = ctx.obj
        user = st.user(as_user)
        ws = st.workspace()
        db = open_db(ws, st.settings)
        engine = make_engine(ws, st.settings, db)
        row = journal.get_execution(db=db, execution_id=execution_id)
        runs = journal.step_runs(db=db, execution_id=row.id)
        if not runs or runs[-1].kind != "approval" or runs[-1].state is not State.WAITING:
            raise ConflictError(
                f"execution {row.id} is not waiting for an approval ({row.state_name})",
                hint="`opsbook executions list --state waiting` shows what waits",
            )
        runbook, procedure = engine._reload(row)
        step = procedure.steps[runs[-1].step_index]
        digest = approvals.compute_digest(
            runbook_hash=runbook.content_hash,
            procedure_id=procedure.id,
            params=row.params,
            environment=row.environment,
        )
        spec = step.approval or ApprovalSpec()
        denied: PermissionDenied | None = None
        with db.transaction():
            try:
                approvals.decide(
                    db=db,
                    execution=row,
                    step_seq=runs[-1].seq,
                    step_id=step.id,
                    step_state=runs[-1].state,
                    spec=spec,
                    approver=user,
                    approver_roles=engine.roles_of(user),
                    decision="rejected" if reject else "approved",
                    digest=digest,
                    comment=engine.redactor.redact(comment) if comment else comment,
                    requested_at=runs[-1].started_at,
                )
            except PermissionDenied as exc:
                denied = exc  # commit the refusal's audit record, then refuse
        if denied is not None:
            raise denied
        status = approvals.status(
            db=db,
            execution_id=row.id,
            step_seq=runs[-1].seq,
            spec=spec,
            digest=digest,
            requested_at=runs[-1].started_at,
        )
        if json_out:
            print_json({"execution_id": row.id, "step": step.id, **status.to_dict()})
            return
        if reject:
            typer.echo(f"rejected by {user}; the run fails at {step.id!r} when it continues")
        elif status.verdict == "approved":
            typer.echo(
                f"approved ({len(status.approvers)}/{status.quorum}: "
                f"{', '.join(status.approvers)}). The run continues in the starter's "
                f"session, or with: opsbook executions resume {row.id}"
            )
        else:
            typer.echo(
                f"approval recorded ({len(status.approvers)}/{status.quorum}); "
                "waiting for more approvers"
            )
