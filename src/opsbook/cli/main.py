"""The `opsbook` command. Thin: parse input, call a service, render output.

Heavy imports happen inside each command so that `opsbook --help` stays fast.
Exit codes: 0 success, 1 a failed run or check, 2 usage or validation error,
3 the run is parked waiting for a person (manual step, approval, recovery decision).
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from opsbook.cli._common import AppState

app = typer.Typer(
    name="opsbook",
    help="Executable, verified, audited operations runbooks.\n\n"
    "Exit codes: 0 ok, 1 failed run or check, 2 usage/validation error, 3 parked "
    "(waiting for a person).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

WorkspaceOpt = Annotated[
    str | None,
    typer.Option(
        "--workspace",
        "-w",
        help="Workspace directory (default: found upward; or OPSBOOK_WORKSPACE)",
        envvar="OPSBOOK_WORKSPACE",
    ),
]


@app.callback()
def _main(ctx: typer.Context, workspace: WorkspaceOpt = None) -> None:
    ctx.obj = AppState(workspace_arg=workspace)


def _register() -> None:
    from opsbook.cli import audit_cmd, executions_cmd, run_cmd, runbooks_cmd  # noqa: PLC0415

    runbooks_cmd.register(app)
    run_cmd.register(app)
    executions_cmd.register(app)
    audit_cmd.register(app)
    from opsbook.cli import serve_cmd, users_cmd  # noqa: PLC0415

    serve_cmd.register(app)
    users_cmd.register(app)
    from opsbook.cli import incidents_cmd, monitor_cmd  # noqa: PLC0415

    monitor_cmd.register(app)
    incidents_cmd.register(app)
    try:
        from opsbook.cli.sandbox import app as sandbox_app  # noqa: PLC0415
    except ImportError:  # pragma: no cover - the sandbox package is part of the distribution
        return
    app.add_typer(sandbox_app, name="sandbox", help="The sandbox banking platform.")


def run(argv: list[str] | None = None) -> None:
    """Console-script entry point: one place that maps errors to messages and exit codes."""
    import click  # noqa: PLC0415 - typer depends on it

    from opsbook.errors import OpsbookError  # noqa: PLC0415

    _register()
    try:
        rv: Any = app(args=argv, standalone_mode=False)
    except OpsbookError as exc:
        sys.stderr.write(f"error: {exc.render()}\n")
        sys.exit(exc.exit_code)
    except click.exceptions.UsageError as exc:
        exc.show()
        sys.exit(2)
    except click.exceptions.Abort:
        sys.stderr.write("aborted\n")
        sys.exit(130)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    run()
