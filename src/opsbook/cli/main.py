"""The `opsbook` command. Thin: parse input, call a service, render output.

Heavy imports happen inside each command so that `opsbook --help` stays fast.
Exit codes: 0 success, 1 a failed run or check, 2 usage or validation error,
3 the run is parked waiting for a person (manual step, approval, recovery decision).
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from opsbook.cli._common import AppState


class LazyGroup(TyperGroup):
    """The top-level group: each command's module is imported only when that command runs.
    Building every command costs typer ~0.3 s (it inspects each signature), so ``--help``
    lists commands from :data:`COMMANDS` without importing them (ADR 0006)."""

    def list_commands(self, ctx: Any) -> list[str]:
        return list(dict.fromkeys([*super().list_commands(ctx), *COMMANDS]))

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        cmd = super().get_command(ctx, cmd_name)
        if cmd is not None or cmd_name not in COMMANDS:
            return cmd
        return load_command(cmd_name)

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        rows = [(name, COMMANDS[name][1]) for name in COMMANDS]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


app = typer.Typer(
    cls=LazyGroup,
    name="opsbook",
    help="Executable, verified, audited operations runbooks.\n\n"
    "Exit codes: 0 ok, 1 failed run or check, 2 usage/validation error, 3 parked "
    "(waiting for a person).",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion (bash, zsh, fish, pwsh)
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


def _version(value: bool) -> None:
    if value:
        from opsbook import __version__  # noqa: PLC0415

        sys.stdout.write(f"opsbook {__version__}\n")
        raise typer.Exit(0)


VersionOpt = Annotated[
    bool,
    typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit"),
]


@app.callback()
def _main(ctx: typer.Context, workspace: WorkspaceOpt = None, version: VersionOpt = False) -> None:
    ctx.obj = AppState(workspace_arg=workspace)
    state = ctx.obj
    ctx.call_on_close(lambda: _sign_audit_checkpoint(state))


def _sign_audit_checkpoint(state: AppState) -> None:
    """At the end of a command that wrote audit records, sign a checkpoint vouching for them
    (docs/audit.md). The records are committed already: a failure here only warns."""
    log = sys.modules.get("opsbook.audit._log")
    if log is None or not log.records_written():
        return  # the command wrote nothing (and the audit package was never imported)
    from opsbook.errors import OpsbookError  # noqa: PLC0415

    try:
        from opsbook.cli.audit_cmd import sign_after_command  # noqa: PLC0415

        sign_after_command(state)
    except (OpsbookError, OSError) as exc:
        sys.stderr.write(f"warning: audit checkpoint not signed: {exc}\n")


#: Every top-level command: the module that registers it and its one-line help (shown by
#: ``opsbook --help`` without importing the module; a test keeps them in step).
COMMANDS: dict[str, tuple[str, str]] = {
    "init": ("runbooks_cmd", "Create a workspace: runbooks, environments, contacts."),
    "lint": ("runbooks_cmd", "Check runbooks: format v1 and documentation standards."),
    "run": ("run_cmd", "Run a procedure against an environment, verifying every step."),
    "approve": ("executions_cmd", "Approve (or --reject) the approval step an execution waits at."),
    "runbooks": ("runbooks_cmd", "The runbook catalogue."),
    "executions": ("executions_cmd", "Executions: list, show, resume, confirm, abort."),
    "audit": ("audit_cmd", "The hash-chained audit trail."),
    "doctor": ("doctor_cmd", "Check the workspace, database, audit chain and an environment."),
    "sandbox": ("sandbox", "The sandbox banking platform."),
    "monitor": ("monitor_cmd", "Probes, SLOs, KPIs and baselines."),
    "alerts": ("monitor_cmd", "Alerts: list, acknowledge, silence."),
    "report": ("monitor_cmd", "Reports: SLA per calendar month."),
    "incidents": ("incidents_cmd", "Incidents: declare, acknowledge, update, resolve, review."),
    "notify": ("incidents_cmd", "Notifications: test pages, delivery records."),
    "serve": ("serve_cmd", "Serve the REST API (/api/v1), the web console (/) and /metrics."),
    "users": ("users_cmd", "Accounts for the console and the API."),
    "tokens": ("users_cmd", "API tokens for automation."),
    "changes": ("changes_cmd", "Runbook changes: propose, review, test, approve, publish."),
    "diagnose": (
        "troubleshoot_cmd",
        "Diagnose a service, alert or incident: ranked causes with evidence and the fix.",
    ),
    "known-errors": (
        "known_errors_cmd",
        "Known errors: symptom, cause and fix records that diagnosis ranks first.",
    ),
    "logs": ("logs_cmd", "Logs: search and trace requests across the sandbox's services."),
    "card": ("cards_cmd", "Quick reference cards: contacts, system, commands, escalation."),
    "training": (
        "training_cmd",
        "Training: onboarding, assessments, graded drills, certifications.",
    ),
    "security": ("security_cmd", "Security checks mapped to PCI DSS 4.0.1, with SARIF output."),
    "findings": (
        "findings_cmd",
        "Security findings: track, assign, accept risk with a second person.",
    ),
    "access": (
        "access_cmd",
        "Privileged access just in time, and access review campaigns.",
    ),
    "compliance": (
        "compliance_cmd",
        "Compliance evidence: PCI DSS 4.0.1 report and verifiable pack.",
    ),
    "backups": (
        "backups_cmd",
        "Backups of the sandbox ledger: take, verify by restore, restore.",
    ),
    "recover": (
        "recover_cmd",
        "Point-in-time recovery of the ledger, cut over after a four-eyes approval.",
    ),
    "dr": ("dr_cmd", "The DR region: replica, failover, failback, drills with RPO and RTO."),
    "deploy": (
        "deploy_cmd",
        "Deploy a release: rolling, blue-green or canary with automated analysis.",
    ),
    "releases": (
        "releases_cmd",
        "Releases and their change records, the change calendar, DORA metrics.",
    ),
    "migrations": ("migrations_cmd", "Ledger migrations: lint for locks and breakage, apply."),
    "worker": (
        "worker_cmd",
        "Run an execution worker: drive runs from broker queues (scale-out).",
    ),
    "workers": ("worker_cmd", "Workers and server replicas: heartbeat, state, running runs."),
}


def load_command(name: str) -> Any:
    """Import the module of command ``name`` and build just that command."""
    import importlib  # noqa: PLC0415

    import typer.main  # noqa: PLC0415

    module_name = COMMANDS[name][0]
    sub = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)

    @sub.callback()
    def _group() -> None:  # a callback keeps it a group even with one command
        pass

    if module_name == "sandbox":
        module = importlib.import_module("opsbook.cli.sandbox")
        sub.add_typer(module.app, name="sandbox", help=COMMANDS[name][1])
    else:
        importlib.import_module(f"opsbook.cli.{module_name}").register(sub)
    group = typer.main.get_command(sub)
    commands: dict[str, Any] = getattr(group, "commands", {})
    return commands.get(name)


def _click_exceptions() -> tuple[Any, ...]:
    """click's exception module: typer >= 0.26 vendors click as ``typer._click``; older
    releases use the ``click`` package. Either is handled so a typer upgrade never turns a
    usage error into a traceback."""
    import importlib  # noqa: PLC0415

    for name in ("typer._click.exceptions", "click.exceptions"):
        try:
            return (importlib.import_module(name),)
        except ImportError:
            continue
    return ()


def run(argv: list[str] | None = None) -> None:
    """Console-script entry point: one place that maps errors to messages and exit codes."""
    from opsbook.errors import OpsbookError  # noqa: PLC0415

    mods = _click_exceptions()
    usage = tuple(m.UsageError for m in mods)
    aborts = tuple(getattr(m, "Abort", typer.Abort) for m in mods)
    exits = tuple(getattr(m, "Exit", typer.Exit) for m in mods)
    click_errors = tuple(m.ClickException for m in mods)
    import gc  # noqa: PLC0415

    gc.freeze()  # what is imported lives until exit: the collector need not walk it again
    try:
        rv: Any = app(args=argv, standalone_mode=False)
    except OpsbookError as exc:
        if "--json" in (sys.argv[1:] if argv is None else argv):
            import json  # noqa: PLC0415

            # Scripts asked for JSON: the error is JSON too (on stderr, same exit code).
            sys.stderr.write(json.dumps({**exc.to_dict(), "exit_code": exc.exit_code}) + "\n")
        else:
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
