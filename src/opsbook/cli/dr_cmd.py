"""`opsbook dr status|setup|failover|failback|drill`: the DR region of the ledger (issue 13).

`dr failover` starts runbook 05's ``backup-recovery#dr-activation`` (two approvers, then the
failover: on the sandbox the DR replica is promoted and the services repointed; on production
Azure SQL's failover group, shown by ``--dry-run``). `dr drill` rehearses it on the sandbox
without the approval (a drill touches nothing real): setup if needed, load running, failover,
failback, and a report with RPO and RTO against the workspace's targets (exit 1 if missed)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from opsbook.cli._common import AppState, open_db, print_json

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output")]
EnvOpt = Annotated[
    str | None, typer.Option("--env", "-e", help="Environment (default: the workspace's)")
]
AsOpt = Annotated[str | None, typer.Option("--as", help="Who does it (audited)")]
SyncOpt = Annotated[
    bool | None,
    typer.Option(
        "--sync/--async",
        help="A synchronous replica (every commit waits for it: RPO 0) or asynchronous"
        " (default: synchronous on PostgreSQL; SQLite ships its journal asynchronously)",
    ),
]


def _status_lines(st: dict[str, Any]) -> list[str]:
    lines = [f"primary: {st['primary']}  (services reach it through the endpoint file)"]
    for c in st["clusters"]:
        rep = c["replication"]
        how = (
            f"  {rep['state']} {rep['sync_state']}, {rep['lag_s']:.1f} s / {rep['lag_bytes']} B"
            " behind"
            if rep
            else ""
        )
        lines.append(
            f"  {c['name']:<22} {c['region']:<10} {c['role']:<9}"
            f" {('port ' + str(c['port'])) if c.get('port') else c.get('path', '')}"
            f" {'running' if c['running'] else 'stopped'}{how}"
        )
    t = st["targets"]
    lines.append(f"targets: RTO <= {t['rto_s']:g} s, RPO <= {t['rpo_transfers']:g} transfers")
    return lines


def register(app: typer.Typer) -> None:
    dr = typer.Typer(
        help="The DR region: replica, failover, failback, drills.", no_args_is_help=True
    )
    app.add_typer(dr, name="dr")

    @dr.command("status")
    def status_cmd(ctx: typer.Context, env: EnvOpt = None, json_out: JsonOpt = False) -> None:
        """Where the ledger runs: primary, replicas, replication state and lag."""
        from opsbook.backup import dr as domain  # noqa: PLC0415

        st: AppState = ctx.obj
        ws = st.workspace()
        out = domain.status(workspace=ws, environment=env or ws.default_environment)
        if json_out:
            print_json(out)
            return
        for line in _status_lines(out):
            typer.echo(line)

    @dr.command("setup")
    def setup_cmd(
        ctx: typer.Context,
        sync: SyncOpt = None,
        env: EnvOpt = None,
        as_user: AsOpt = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Seed (or re-seed) the DR region's streaming replica of the ledger."""
        from opsbook.backup import dr as domain  # noqa: PLC0415

        st: AppState = ctx.obj
        ws = st.workspace()
        db = open_db(ws, st.settings)
        try:
            out = domain.setup(
                db,
                workspace=ws,
                settings=st.settings,
                environment=env or ws.default_environment,
                sync=sync,
                actor=st.user(as_user),
            )
        finally:
            db.close()
        if json_out:
            print_json(out)
            return
        where = f"port {out['port']}" if out.get("port") else out.get("path", "")
        typer.echo(
            f"{out['replica']} ({out['region']}) replicates {out['of']} ({out['mode']}),"
            f" seeded in {out['seeded_s']:.1f}s, {where}"
        )

    @dr.command("failover")
    def failover_cmd(
        ctx: typer.Context,
        ticket: Annotated[str, typer.Option("--ticket", help="The incident ticket, INC-123")],
        env: EnvOpt = None,
        dry_run: Annotated[
            bool, typer.Option("--dry-run", help="Show what would run (Azure: the az commands)")
        ] = False,
        yes: Annotated[bool, typer.Option("--yes", "-y", help="Confirm the high-risk run")] = False,
        as_user: AsOpt = None,
        json_out: JsonOpt = False,
    ) -> int:
        """Activate DR: the runbook's procedure (two approvers, then the failover). Exit 3
        while it waits for them."""
        from opsbook.cli.run_cmd import start_procedure  # noqa: PLC0415

        return start_procedure(
            ctx,
            ref="backup-recovery#dr-activation",
            env=env,
            param=[f"ticket={ticket}"],
            dry_run=dry_run,
            yes=yes,
            json_out=json_out,
            as_user=as_user,
            no_feedback=True,
        )

    @dr.command("failback")
    def failback_cmd(
        ctx: typer.Context,
        sync: SyncOpt = None,
        env: EnvOpt = None,
        as_user: AsOpt = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Re-seed the old primary, switch over to it without loss, re-seed the DR replica."""
        from opsbook.backup import dr as domain  # noqa: PLC0415

        st: AppState = ctx.obj
        ws = st.workspace()
        db = open_db(ws, st.settings)
        try:
            out = domain.failback(
                db,
                workspace=ws,
                settings=st.settings,
                environment=env or ws.default_environment,
                actor=st.user(as_user),
                sync=sync is not False,
            )
        finally:
            db.close()
        if json_out:
            print_json(out)
            return
        typer.echo(
            f"primary {out['primary']} again (re-seeded {out['reseeded_s']:.1f}s, switchover"
            f" {out['switchover_s']:.1f}s); {out['replica']} replicates it ({out['mode']})"
        )

    @dr.command("drill")
    def drill_cmd(
        ctx: typer.Context,
        sync: SyncOpt = None,
        load: Annotated[
            int, typer.Option("--load", help="Customer requests per second during the drill")
        ] = 20,
        env: EnvOpt = None,
        as_user: AsOpt = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Rehearse a regional loss on the sandbox with load running: failover, measure RPO
        and RTO, fail back, write the report. Exit 1 when a target is missed."""
        from opsbook.backup import dr as domain  # noqa: PLC0415

        st: AppState = ctx.obj
        ws = st.workspace()
        environment = env or ws.default_environment
        db = open_db(ws, st.settings)
        try:
            out = domain.drill(
                db,
                workspace=ws,
                settings=st.settings,
                environment=environment,
                actor=st.user(as_user),
                sync=sync is not False,
                rate=load,
                progress=None if json_out else typer.echo,
            )
        finally:
            db.close()
        reports = ws.state_dir / "reports"
        reports.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        md = reports / f"dr-drill-{environment}-{stamp}.md"
        md.write_text(domain.drill_report(out["failover"], out["failback"]), encoding="utf-8")
        (md.with_suffix(".json")).write_text(json.dumps(out, indent=2, default=str), "utf-8")
        out["report"] = str(md)
        if json_out:
            print_json(out)
        else:
            f = out["failover"]
            typer.echo(
                f"RTO {f['rto_s']:.2f}s (target {f['targets']['rto_s']:g}s), RPO"
                f" {f['rpo'].get('transfers')} transfer(s) / {f['rpo'].get('seconds')}s"
                f" ({f['mode']}); failed customer requests during the drill:"
                f" {out['load']['failed']} of {out['load']['sent']}"
            )
            typer.echo(f"report: {md}")
        if not (out["failover"]["met"]["rto"] and out["failover"]["met"]["rpo"]):
            raise typer.Exit(1)
