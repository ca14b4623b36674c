"""`opsbook run RUNBOOK#PROCEDURE --env ENV [--param k=v]... [--dry-run] [--yes] [--json]`."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from opsbook.cli._common import (
    EXIT_PARKED,
    AppState,
    is_interactive,
    make_engine,
    open_db,
    print_json,
    resolve,
)
from opsbook.executions.local import exit_code_for

__all__ = ["exit_code_for", "outcome_json", "register"]

if TYPE_CHECKING:
    from opsbook.runbooks.model import Procedure
    from opsbook.runbooks.params import SecretFinder


def outcome_json(db: Any, outcome: Any) -> dict[str, Any]:
    from opsbook.engine import _journal as journal  # noqa: PLC0415

    row = journal.get_execution(db=db, execution_id=outcome.execution_id)
    return {
        **row.to_dict(),
        "waiting_step": outcome.waiting_step,
        "steps": [s.to_dict() for s in journal.step_runs(db=db, execution_id=row.id)],
    }


def command_line_params(
    procedure: Procedure,
    items: list[str],
    *,
    path: str,
    max_bytes: int,
    secret_in: SecretFinder | None,
) -> dict[str, object]:
    """``--param`` items checked against the procedure; a refusal names ``--param NAME``."""
    from opsbook.errors import ParameterError  # noqa: PLC0415
    from opsbook.runbooks.params import parse_param_args, validate_params  # noqa: PLC0415

    try:
        return validate_params(
            procedure,
            parse_param_args(items),
            path=path,
            max_bytes=max_bytes,
            secret_in=secret_in,
        )
    except ParameterError as exc:
        field = f"--param {exc.field}" if exc.field else None
        raise ParameterError(exc.message, field=field, hint=exc.hint) from None


def register(app: typer.Typer) -> None:
    @app.command("run")
    def run(
        ctx: typer.Context,
        ref: Annotated[str, typer.Argument(help="RUNBOOK#PROCEDURE (runbook id or file stem)")],
        env: Annotated[
            str | None,
            typer.Option("--env", "-e", help="Environment (default: the workspace's default)"),
        ] = None,
        param: Annotated[
            list[str] | None, typer.Option("--param", "-p", help="k=v, repeatable")
        ] = None,
        dry_run: Annotated[
            bool,
            typer.Option(
                "--dry-run", help="Render every step and show what would run; run nothing"
            ),
        ] = False,
        yes: Annotated[
            bool,
            typer.Option(
                "--yes",
                "-y",
                help="Answer confirmation prompts (never attests a manual step or approves)",
            ),
        ] = False,
        json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON")] = False,
        as_user: Annotated[str | None, typer.Option("--as", help="Act as this user")] = None,
        verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
        no_feedback: Annotated[
            bool,
            typer.Option(
                "--no-feedback",
                help="Do not ask for a rating after the run (or OPSBOOK_NO_FEEDBACK=1)",
            ),
        ] = False,
    ) -> int:
        """Run a procedure against an environment, verifying every step."""
        return start_procedure(
            ctx,
            ref=ref,
            env=env,
            param=list(param or []),
            dry_run=dry_run,
            yes=yes,
            json_out=json_out,
            as_user=as_user,
            verbose=verbose,
            no_feedback=no_feedback,
        )


def start_procedure(
    ctx: typer.Context,
    *,
    ref: str,
    env: str | None,
    param: list[str],
    dry_run: bool = False,
    yes: bool = False,
    json_out: bool = False,
    as_user: str | None = None,
    verbose: bool = False,
    no_feedback: bool = False,
) -> int:
    """What `opsbook run` does; other commands that start a runbook's procedure (recover, dr
    drill) call it so the run is journaled, approved and audited like any other."""
    import asyncio  # noqa: PLC0415 - not on the start-up path

    from rich.console import Console  # noqa: PLC0415

    from opsbook.cli._live import ConsoleInteraction, ConsoleReporter  # noqa: PLC0415
    from opsbook.errors import UsageError  # noqa: PLC0415
    from opsbook.workspace import load_environment  # noqa: PLC0415

    state: AppState = ctx.obj
    ws = state.workspace()
    settings = state.settings
    user = state.user(as_user)
    runbook, procedure = resolve(ws, ref)
    environment = load_environment(ws, env or ws.default_environment)
    interactive = is_interactive() and not json_out
    console = Console(stderr=json_out, quiet=json_out, highlight=False)
    reporter = ConsoleReporter(console=console, verbose=verbose)
    interaction = ConsoleInteraction(console=console, actor=user) if interactive else None
    db = open_db(ws, settings)
    engine = make_engine(ws, settings, db, reporter=reporter, interaction=interaction)
    params = command_line_params(
        procedure,
        list(param or []),
        path=str(runbook.path),
        max_bytes=settings.param_max_bytes_for(ws.config),
        secret_in=engine.resolver.secret_in,
    )
    risky = procedure.risk == "high" or environment.name == "production"
    if risky and not dry_run and not yes:
        if not interactive:
            raise UsageError(
                f"{runbook.id}#{procedure.id} (risk: {procedure.risk}) on "
                f"{environment.name} needs confirmation",
                hint="pass --yes to confirm, or --dry-run to see what it would do",
            )
        typer.confirm(
            f"Run {runbook.id}#{procedure.id} (risk: {procedure.risk}) on {environment.name}?",
            abort=True,
        )
    outcome = asyncio.run(
        engine.start(
            runbook=runbook,
            procedure=procedure,
            environment=environment,
            params=params,
            started_by=user,
            dry_run=dry_run,
        )
    )
    if json_out:
        print_json(outcome_json(db, outcome))
    elif outcome.parked and not interactive:
        sys.stderr.write(
            f"parked: execution {outcome.execution_id} waits at "
            f"{outcome.waiting_step!r} ({outcome.state_name}); exit code "
            f"{EXIT_PARKED}\n"
        )
    _ask_feedback(db, outcome, user=user, interactive=interactive and not no_feedback)
    return exit_code_for(outcome)


def _ask_feedback(db: Any, outcome: Any, *, user: str, interactive: bool) -> None:
    """Issue 15: at a terminal, after a real run that succeeded or failed, ask for a 1-5
    rating (Enter skips). Never when not interactive, so scripts are never blocked."""
    from opsbook.lifecycle import feedback  # noqa: PLC0415

    row = db.one("SELECT state, dry_run FROM executions WHERE id = ?", (outcome.execution_id,))
    if row is None or not feedback.should_ask(
        state=str(row["state"]), interactive=interactive, dry_run=bool(row["dry_run"])
    ):
        return
    feedback.ask(
        db,
        execution_id=outcome.execution_id,
        person=user,
        read=input,
        write=sys.stderr.write,
    )
