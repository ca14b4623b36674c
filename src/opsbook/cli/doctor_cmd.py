"""`opsbook doctor`: check the workspace, state database, audit chain and an environment."""

from __future__ import annotations

from typing import Annotated

import typer

from opsbook.cli._common import AppState, print_json


def register(app: typer.Typer) -> None:
    @app.command("doctor")
    def doctor(
        ctx: typer.Context,
        env: Annotated[
            str | None,
            typer.Option("--env", "-e", help="Environment (default: the workspace's default)"),
        ] = None,
        json_out: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
    ) -> int:
        """Check that this workspace is ready: runbooks, database, audit chain, environment,
        required tools, sandbox. Exit 1 when a check failed (warnings do not fail)."""
        from opsbook.workspace.doctor import run_checks  # noqa: PLC0415

        st: AppState = ctx.obj
        ws = st.workspace()
        checks = run_checks(
            workspace=ws, settings=st.settings, env_name=env or ws.default_environment
        )
        failed = any(c.status == "failed" for c in checks)
        if json_out:
            print_json({"ok": not failed, "checks": [c.to_dict() for c in checks]})
            return 1 if failed else 0
        width = max(len(c.name) for c in checks)
        for c in checks:
            typer.echo(f"  {c.status.upper():<8} {c.name:<{width}}  {c.detail}")
            if c.hint and c.status != "ok":
                typer.echo(f"  {'':<8} {'':<{width}}  fix: {c.hint}")
        typer.echo("FAILED" if failed else "OK")
        return 1 if failed else 0
