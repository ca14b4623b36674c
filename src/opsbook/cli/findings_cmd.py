"""`opsbook findings list|show|assign|accept|accept-approve`: security findings with an owner, a
due date from the severity SLA, and risk acceptance by a second person (opsbook.secops)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from opsbook.cli._common import AppState, open_db, print_json

IdArg = Annotated[str, typer.Argument(help="Finding id, e.g. FND-12")]
AsOpt = Annotated[str | None, typer.Option("--as", help="Who does it (audited)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output")]


def _show(f: dict[str, Any]) -> None:
    typer.echo(f"{f['ref']}  {f['severity'].upper()}  {f['state']}  {f['title']}")
    typer.echo(f"  rule       {f['rule_id']} ({f['source']})")
    typer.echo(f"  subject    {f['subject']}")
    if f.get("location"):
        typer.echo(f"  location   {f['location']}")
    if f["detail"].get("text"):
        typer.echo(f"  what       {f['detail']['text']}")
    typer.echo(f"  PCI DSS    {', '.join(f['requirements']) or '-'}")
    typer.echo(f"  owner      {f['owner'] or '-'}   due {f['due_at'][:10]}")
    typer.echo(
        f"  seen       {f['first_seen'][:19]}Z .. {f['last_seen'][:19]}Z"
        + (f"  fixed {f['fixed_at'][:19]}Z" if f.get("fixed_at") else "")
        + (f"  reintroduced {f['reintroduced']}x" if f["reintroduced"] else "")
    )
    for a in f.get("acceptances", []):
        by = f", approved by {a['approved_by']}" if a["approved_by"] else ""
        typer.echo(
            f"  acceptance {a['state']} until {a['until'][:10]}: {a['reason']}"
            f" (requested by {a['requested_by']}{by})"
        )


def register(app: typer.Typer) -> None:
    fd = typer.Typer(
        help="Security findings: track, assign, accept risk with a second person.",
        no_args_is_help=True,
    )
    app.add_typer(fd, name="findings")

    @fd.command("list")
    def list_cmd(
        ctx: typer.Context,
        state: Annotated[
            str | None, typer.Option("--state", help="open, accepted or fixed")
        ] = None,
        env: Annotated[str | None, typer.Option("--env", "-e", help="Environment")] = None,
        severity: Annotated[str | None, typer.Option("--severity", help="Only this")] = None,
        overdue: Annotated[bool, typer.Option("--overdue", help="Open and past due")] = False,
        json_out: JsonOpt = False,
    ) -> None:
        """Findings, open first by due date."""
        from opsbook.secops.findings import list_findings  # noqa: PLC0415
        from opsbook.secops.model import check_severity  # noqa: PLC0415

        st: AppState = ctx.obj
        ws = st.workspace()
        db = open_db(ws, st.settings)
        try:
            rows = list_findings(
                db,
                state=state,
                environment=env,
                severity=check_severity(severity, field_name="--severity") if severity else None,
                overdue=overdue,
            )
        finally:
            db.close()
        if json_out:
            print_json({"findings": rows})
            return
        if not rows:
            typer.echo("no findings" + (f" in state {state}" if state else ""))
            return
        for f in rows:
            typer.echo(
                f"{f['ref']:<8} {f['severity']:<8} {f['state']:<8} due {f['due_at'][:10]}"
                f"  {f['owner'] or '-':<12} {f['rule_id']:<26} {f['subject']}"
            )

    @fd.command("show")
    def show_cmd(ctx: typer.Context, finding: IdArg, json_out: JsonOpt = False) -> None:
        """One finding with its history and acceptances."""
        from opsbook.secops.findings import get  # noqa: PLC0415

        st: AppState = ctx.obj
        ws = st.workspace()
        db = open_db(ws, st.settings)
        try:
            f = get(db, finding)
        finally:
            db.close()
        if json_out:
            print_json(f)
        else:
            _show(f)

    @fd.command("assign")
    def assign_cmd(
        ctx: typer.Context,
        finding: IdArg,
        to: Annotated[str, typer.Option("--to", help="The new owner")],
        as_user: AsOpt = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Give a finding an owner."""
        from opsbook.secops.findings import assign  # noqa: PLC0415

        st: AppState = ctx.obj
        ws = st.workspace()
        db = open_db(ws, st.settings)
        try:
            f = assign(db, finding=finding, to=to, actor=st.user(as_user))
        finally:
            db.close()
        if json_out:
            print_json(f)
        else:
            typer.echo(f"{f['ref']} assigned to {f['owner']}")

    @fd.command("accept")
    def accept_cmd(
        ctx: typer.Context,
        finding: IdArg,
        reason: Annotated[
            str | None, typer.Option("--reason", help="Why the risk is accepted (required)")
        ] = None,
        until: Annotated[
            str | None, typer.Option("--until", help="Until when, e.g. 2027-03-31 (required)")
        ] = None,
        as_user: AsOpt = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Request risk acceptance; a second person approves it with accept-approve."""
        from opsbook.secops.findings import request_acceptance  # noqa: PLC0415
        from opsbook.secops.settings import load_security_settings  # noqa: PLC0415

        st: AppState = ctx.obj
        ws = st.workspace()
        cfg = load_security_settings(ws)
        db = open_db(ws, st.settings)
        try:
            f = request_acceptance(
                db,
                finding=finding,
                reason=reason,
                until=until,
                actor=st.user(as_user),
                settings=cfg,
            )
        finally:
            db.close()
        if json_out:
            print_json(f)
        else:
            typer.echo(
                f"{f['ref']}: acceptance requested until {f['acceptances'][-1]['until'][:10]};"
                f" a second person approves: opsbook findings accept-approve {f['ref']}"
            )

    @fd.command("accept-approve")
    def approve_cmd(
        ctx: typer.Context, finding: IdArg, as_user: AsOpt = None, json_out: JsonOpt = False
    ) -> None:
        """Approve a requested risk acceptance (not the requester, not the owner)."""
        from opsbook.secops.findings import approve_acceptance  # noqa: PLC0415
        from opsbook.secops.settings import load_security_settings  # noqa: PLC0415
        from opsbook.users.access import roles_resolver  # noqa: PLC0415

        st: AppState = ctx.obj
        ws = st.workspace()
        cfg = load_security_settings(ws)
        db = open_db(ws, st.settings)
        user = st.user(as_user)
        try:
            roles = roles_resolver(db=db, fallback=ws.roles_of)(user)
            f = approve_acceptance(db, finding=finding, actor=user, roles=roles, settings=cfg)
        finally:
            db.close()
        if json_out:
            print_json(f)
        else:
            typer.echo(f"{f['ref']} accepted until {f['acceptances'][-1]['until'][:10]}")
