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


#: Which module registers each top-level command. Building every command costs typer ~0.3 s
#: (it inspects each function's signature), so only the one being run is registered; help,
#: no command, or an unknown name registers them all.
COMMAND_MODULES: dict[str, str] = {
    "init": "runbooks_cmd",
    "runbooks": "runbooks_cmd",
    "lint": "runbooks_cmd",
    "run": "run_cmd",
    "executions": "executions_cmd",
    "approve": "executions_cmd",
    "audit": "audit_cmd",
    "serve": "serve_cmd",
    "users": "users_cmd",
    "tokens": "users_cmd",
    "monitor": "monitor_cmd",
    "alerts": "monitor_cmd",
    "report": "monitor_cmd",
    "incidents": "incidents_cmd",
    "notify": "incidents_cmd",
    "sandbox": "sandbox",
}
_VALUE_OPTIONS = ("--workspace", "-w")


def _command_of(argv: list[str]) -> str | None:
    """The top-level command named in ``argv`` (skipping the global options)."""
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in _VALUE_OPTIONS:
            skip = True
            continue
        if arg.startswith("-"):
            if arg in ("--help", "-h"):
                return None
            continue
        return arg
    return None


def _register(argv: list[str] | None = None) -> None:
    import importlib  # noqa: PLC0415

    command = _command_of(sys.argv[1:] if argv is None else argv)
    wanted = COMMAND_MODULES.get(command or "")
    names = [wanted] if wanted else list(dict.fromkeys(COMMAND_MODULES.values()))
    for name in names:
        if name == "sandbox":
            module = importlib.import_module("opsbook.cli.sandbox")
            app.add_typer(module.app, name="sandbox", help="The sandbox banking platform.")
            continue
        importlib.import_module(f"opsbook.cli.{name}").register(app)


def _click_exceptions() -> tuple[Any, ...]:
    """click's exception modules: typer >= 0.20 vendors click as ``typer._click``; older
    releases use the ``click`` package. Both are handled so a typer upgrade never turns a
    usage error into a traceback."""
    import importlib  # noqa: PLC0415

    mods = []
    for name in ("typer._click.exceptions", "click.exceptions"):
        try:
            mods.append(importlib.import_module(name))
        except ImportError:
            continue
    return tuple(mods)


def run(argv: list[str] | None = None) -> None:
    """Console-script entry point: one place that maps errors to messages and exit codes."""
    from opsbook.errors import OpsbookError  # noqa: PLC0415

    mods = _click_exceptions()
    usage = tuple(m.UsageError for m in mods)
    aborts = tuple(getattr(m, "Abort", typer.Abort) for m in mods)
    exits = tuple(getattr(m, "Exit", typer.Exit) for m in mods)
    click_errors = tuple(m.ClickException for m in mods)
    _register(argv)
    try:
        rv: Any = app(args=argv, standalone_mode=False)
    except OpsbookError as exc:
        sys.stderr.write(f"error: {exc.render()}\n")
        sys.exit(exc.exit_code)
    except usage as exc:
        exc.show()
        sys.exit(2)
    except click_errors as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except aborts:
        sys.stderr.write("aborted\n")
        sys.exit(130)
    except exits as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    run()
