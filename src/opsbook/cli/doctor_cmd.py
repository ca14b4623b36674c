"""`opsbook doctor`: check the workspace, state database, audit chain and an environment."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from opsbook.cli._common import AppState, open_db, print_json

if TYPE_CHECKING:
    from opsbook.workspace.doctor import Check


def _audit_checks(st: AppState) -> list[Check]:
    """The signed audit checkpoints, the key and the witness (docs/audit.md)."""
    from opsbook.audit._doctor import witness_checks  # noqa: PLC0415
    from opsbook.cli.audit_cmd import witness_config  # noqa: PLC0415
    from opsbook.errors import OpsbookError  # noqa: PLC0415
    from opsbook.workspace.doctor import Check  # noqa: PLC0415

    ws = st.workspace()
    try:
        db = open_db(ws, st.settings)
    except OpsbookError:
        return []  # the database check already failed, saying why
    try:
        rows = witness_checks(db=db, cfg=witness_config(st), state_dir=ws.state_dir)
    finally:
        db.close()
    return [Check(n, s, d, h) for n, s, d, h in rows]  # type: ignore[arg-type]  # s is a Status


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
        checks.extend(_audit_checks(st))
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
