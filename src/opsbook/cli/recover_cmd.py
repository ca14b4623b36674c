"""`opsbook recover --to TIME | --to-xid XID | --to-name NAME`: point-in-time recovery of the
ledger (issue 13). It starts the backup runbook's procedure
``backup-recovery#point-in-time-recovery``, so the run is journaled, the restore is prepared
into a new instance and shows what would be lost, and the services are cut over only after two
approvers (four-eyes; never the person who started it). On production the same procedure runs
Azure SQL's ``az sql db restore`` (``--dry-run`` shows the commands).

`opsbook recover window` shows the recovery window; `recover discard NAME` removes a prepared
instance that was not cut over."""

from __future__ import annotations

from typing import Annotated

import typer

from opsbook.cli._common import AppState, open_db, print_json

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output")]
EnvOpt = Annotated[
    str | None, typer.Option("--env", "-e", help="Environment (default: the workspace's)")
]
PROCEDURE = "backup-recovery#point-in-time-recovery"


def register(app: typer.Typer) -> None:
    rc = typer.Typer(
        help="Point-in-time recovery of the ledger, cut over after a four-eyes approval.",
        invoke_without_command=True,
    )
    app.add_typer(rc, name="recover")

    @rc.callback()
    def recover(
        ctx: typer.Context,
        to: Annotated[
            str | None, typer.Option("--to", help="A time, ISO 8601 UTC (2026-12-04T05:30:00Z)")
        ] = None,
        to_xid: Annotated[str | None, typer.Option("--to-xid", help="A transaction id")] = None,
        to_name: Annotated[
            str | None, typer.Option("--to-name", help="A restore point (pg_create_restore_point)")
        ] = None,
        ticket: Annotated[
            str | None, typer.Option("--ticket", help="The incident ticket, INC-123")
        ] = None,
        env: EnvOpt = None,
        dry_run: Annotated[
            bool, typer.Option("--dry-run", help="Show what would run (Azure: the az commands)")
        ] = False,
        yes: Annotated[bool, typer.Option("--yes", "-y", help="Confirm the high-risk run")] = False,
        as_user: Annotated[str | None, typer.Option("--as", help="Act as this user")] = None,
        json_out: JsonOpt = False,
    ) -> int:
        """Recover the ledger as it was at a point in time (a new instance; the cut-over waits
        for two approvers). Exit 3 while it waits for them."""
        if ctx.invoked_subcommand is not None:
            return 0
        from opsbook.cli.run_cmd import start_procedure  # noqa: PLC0415
        from opsbook.errors import UsageError  # noqa: PLC0415

        given = [
            (k, v) for k, v in (("to_time", to), ("to_xid", to_xid), ("to_name", to_name)) if v
        ]
        if len(given) != 1:
            raise UsageError(
                "give exactly one of --to, --to-xid, --to-name",
                field="--to",
                hint="opsbook recover --to 2026-12-04T05:30:00Z --ticket INC-123"
                " (opsbook recover window shows what can be reached)",
            )
        if not ticket:
            raise UsageError(
                "a recovery needs the incident ticket", field="--ticket", hint="--ticket INC-123"
            )
        if to:
            from opsbook.backup.recovery import parse_time  # noqa: PLC0415

            parse_time(to)  # a malformed time is exit 2 before anything starts
        if not dry_run:
            _check_reachable(ctx, env, given[0])
        params = [f"{k}={v}" for k, v in given] + [f"ticket={ticket}"]
        return start_procedure(
            ctx,
            ref=PROCEDURE,
            env=env,
            param=params,
            dry_run=dry_run,
            yes=yes,
            json_out=json_out,
            as_user=as_user,
            no_feedback=True,
        )

    def _check_reachable(ctx: typer.Context, env: str | None, target: tuple[str, str]) -> None:
        """On the sandbox, a target outside the recovery window is refused (exit 2) before
        the procedure starts."""
        from opsbook.backup import recovery  # noqa: PLC0415
        from opsbook.workspace import load_environment  # noqa: PLC0415

        st: AppState = ctx.obj
        ws = st.workspace()
        environment = load_environment(ws, env or ws.default_environment)
        if environment.platform != "local":
            return
        win = recovery.window(workspace=ws, settings=st.settings, environment=environment.name)
        recovery.check_target(target[0].removeprefix("to_"), target[1], win)

    @rc.command("window")
    def window_cmd(ctx: typer.Context, env: EnvOpt = None, json_out: JsonOpt = False) -> None:
        """The recovery window: from the end of the oldest backup to now."""
        from opsbook.backup.recovery import window  # noqa: PLC0415

        st: AppState = ctx.obj
        ws = st.workspace()
        out = window(workspace=ws, settings=st.settings, environment=env or ws.default_environment)
        if json_out:
            print_json(out)
            return
        typer.echo(f"recoverable: {out['earliest']} .. now ({out['backups']} backup(s))")
        typer.echo(f"WAL archive: {out['wal']['min']} .. {out['wal']['max']}")

    @rc.command("discard")
    def discard_cmd(
        ctx: typer.Context,
        instance: Annotated[str, typer.Argument(help="A prepared instance, pitr-...")],
        env: EnvOpt = None,
        as_user: Annotated[str | None, typer.Option("--as", help="Who (audited)")] = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Stop and remove a recovered instance that was not cut over."""
        from opsbook.backup.recovery import discard  # noqa: PLC0415

        st: AppState = ctx.obj
        ws = st.workspace()
        db = open_db(ws, st.settings)
        try:
            out = discard(
                db,
                workspace=ws,
                environment=env or ws.default_environment,
                instance=instance,
                actor=st.user(as_user),
            )
        finally:
            db.close()
        if json_out:
            print_json(out)
        else:
            typer.echo(f"discarded {instance}")
