"""`opsbook migrations lint|status|apply`: ledger migrations (issue 11; see
docs/deployment-migrations.md).

``lint`` checks migration files for statements that take long locks or break the running
version (exit 1 when an error is found); ``status`` lists what the environment's ledger has
applied and the workspace's files not applied yet; ``apply`` is for L2 engineers applying a
reviewed file by hand — in a change window the runbook ``deployment-procedures#database-migration``
applies it (``deploy.migrate``), with its approval."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from opsbook.cli._common import AppState, open_db, print_json

if TYPE_CHECKING:
    from opsbook.workspace import Workspace

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output")]
EnvOpt = Annotated[
    str | None, typer.Option("--env", "-e", help="Environment (default: the workspace's)")
]
AsOpt = Annotated[str | None, typer.Option("--as", help="Who does it (audited)")]


def _finding_lines(f: dict[str, Any]) -> list[str]:
    tag = "" if f["severity"] == "error" else "(warning) "
    return [
        f"{f['path']}:{f['line']}:{f['column']}: {f['rule']}: {tag}{f['message']}",
        f"  fix: {f['fix']}",
    ]


def _seconds(value: str, option: str) -> float:
    from opsbook.durations import DURATION_HINT, duration_seconds  # noqa: PLC0415
    from opsbook.errors import UsageError  # noqa: PLC0415

    try:
        return duration_seconds(value)
    except ValueError:
        raise UsageError(
            f"{option} must be a duration, not {value!r}", field=option, hint=DURATION_HINT
        ) from None


def _workspace_or_none(st: AppState, env: str | None) -> Workspace | None:
    from opsbook.errors import WorkspaceError  # noqa: PLC0415

    try:
        return st.workspace()
    except WorkspaceError:
        if env is not None:
            raise
        return None


def register(app: typer.Typer) -> None:
    sub = typer.Typer(
        help="Ledger migrations: lint for locks and breakage, status, apply.",
        no_args_is_help=True,
    )
    app.add_typer(sub, name="migrations")

    @sub.command("lint")
    def lint_cmd(
        ctx: typer.Context,
        files: Annotated[list[Path], typer.Argument(help="Migration files (.sql)")],
        env: EnvOpt = None,
        dialect: Annotated[
            str | None,
            typer.Option(
                "--dialect",
                help="postgresql or sqlite (default: the environment's ledger; postgresql"
                " outside a workspace)",
            ),
        ] = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Lint migration files: each finding as FILE:LINE:COL: RULE: message, then the fix.
        The running versions' reads come from the environment (the sandbox). Exit 1 when an
        error-severity finding is not suppressed (`-- lint: ignore RULE` above the statement)."""
        from opsbook.deploy import migrate  # noqa: PLC0415
        from opsbook.errors import UsageError  # noqa: PLC0415

        if dialect is not None and dialect not in ("postgresql", "sqlite"):
            raise UsageError(
                f"unknown dialect {dialect!r}", field="--dialect", hint="postgresql or sqlite"
            )
        st: AppState = ctx.obj
        ws = _workspace_or_none(st, env)
        reads: dict[str, set[str]] | None = None
        versions: list[str] = []
        chosen: Any = dialect or "postgresql"
        if ws is not None:
            lc = migrate.lint_context(workspace=ws, environment=env or ws.default_environment)
            reads, versions = lc.reads, lc.versions
            chosen = dialect or lc.dialect
        reports = [
            migrate.lint_report(
                migrate.read_file(p, workspace=ws, named=False),
                dialect=chosen,
                reads=reads,
                versions=versions,
            )
            for p in files
        ]
        errors = sum(r["errors"] for r in reports)
        warnings = sum(r["warnings"] for r in reports)
        if json_out:
            print_json({"files": reports, "errors": errors, "warnings": warnings})
        else:
            for r in reports:
                for f in r["findings"]:
                    if not f["suppressed"]:
                        for line in _finding_lines(f):
                            typer.echo(line)
            against = f", running versions {', '.join(versions)}" if versions else ""
            typer.echo(
                f"{len(reports)} file{'s' if len(reports) != 1 else ''}: {errors} error"
                f"{'s' if errors != 1 else ''}, {warnings} warning{'s' if warnings != 1 else ''}"
                f" ({chosen}{against})"
            )
        if errors:
            raise typer.Exit(1)

    @sub.command("status")
    def status_cmd(ctx: typer.Context, env: EnvOpt = None, json_out: JsonOpt = False) -> None:
        """The migrations the environment's ledger has applied, and the files of the
        workspace's migrations/ directory not applied yet (pending) or changed since."""
        from opsbook.deploy import migrate  # noqa: PLC0415

        st: AppState = ctx.obj
        ws = st.workspace()
        environment = env or ws.default_environment
        rows = migrate.status(workspace=ws, settings=st.settings, environment=environment)
        if json_out:
            print_json({"environment": environment, "migrations": rows})
            return
        for r in rows:
            when = (
                f"  {str(r['applied_at'])[:19]}Z by {r['applied_by']} ({r['ticket'] or '-'})"
                if r.get("applied_at")
                else ""
            )
            typer.echo(f"{r['version']}  {r['name']:<32} {r['state']:<8}{when}")
        if not rows:
            typer.echo("no migrations: add files to migrations/ (NNNN_name.sql)")

    @sub.command("apply")
    def apply_cmd(
        ctx: typer.Context,
        file: Annotated[Path, typer.Argument(help="The migration file, NNNN_name.sql")],
        ticket: Annotated[str, typer.Option("--ticket", help="The change ticket, e.g. CHG-1")],
        env: EnvOpt = None,
        lock_timeout: Annotated[
            str, typer.Option("--lock-timeout", help="Give up waiting for a lock after this")
        ] = "5s",
        statement_timeout: Annotated[
            str, typer.Option("--statement-timeout", help="Cancel a statement running longer")
        ] = "60s",
        no_backup: Annotated[
            bool, typer.Option("--no-backup", help="Skip the backup before (not advised)")
        ] = False,
        as_user: AsOpt = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Apply a reviewed migration to the sandbox ledger (for L2 engineers; in a change
        window the runbook deployment-procedures#database-migration does it): the lint, a
        backup, one transaction with the timeouts, the row counts and ledger invariants
        checked, recorded in schema_migrations. The same file again does nothing. Exit 1 when
        refused by the lint or when it fails (nothing applied), 2 for a changed file."""
        from opsbook.deploy import migrate  # noqa: PLC0415
        from opsbook.errors import UsageError  # noqa: PLC0415

        if not ticket.strip():
            raise UsageError("--ticket is required", field="--ticket", hint="e.g. --ticket CHG-1")
        st: AppState = ctx.obj
        ws = st.workspace()
        db = open_db(ws, st.settings)
        try:
            out = migrate.apply(
                db=db,
                workspace=ws,
                settings=st.settings,
                environment=env or ws.default_environment,
                path=file,
                actor=st.user(as_user),
                ticket=ticket.strip(),
                lock_timeout=_seconds(lock_timeout, "--lock-timeout"),
                statement_timeout=_seconds(statement_timeout, "--statement-timeout"),
                backup=not no_backup,
            )
        finally:
            db.close()
        if json_out:
            print_json(out)
            return
        typer.echo(out["message"])
        for f in out["findings"]:
            if not f["suppressed"]:
                for line in _finding_lines(f):
                    typer.echo(line)
        if out["status"] == "applied":
            typer.echo(f"backup: {out['backup'] or 'none (--no-backup)'}")
            grew = {
                t: out["counts_after"][t] - out["counts_before"][t] for t in out["counts_after"]
            }
            typer.echo(
                "rows: "
                + ", ".join(f"{t} {out['counts_after'][t]} (+{n})" for t, n in grew.items())
            )
        inv = out["invariants"]
        typer.echo(
            f"ledger invariants: {'OK' if out['invariants_ok'] else 'BROKEN'} (entries sum"
            f" {inv['total_cents']} cents, {len(inv['mismatched_accounts'])} accounts off)"
        )
