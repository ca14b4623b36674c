"""`opsbook releases list|show|calendar|dora|link` (issue 11): the releases and their change
records, the change calendar's freeze windows, DORA metrics from the records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer

from opsbook.cli._common import AppState, open_db, print_json

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output")]
EnvOpt = Annotated[str | None, typer.Option("--env", "-e", help="Only this environment")]


def _row(rel: dict[str, Any]) -> str:
    return (
        f"{rel['id']}  {rel['requested_at'][:16]}Z  {rel['environment']:<10} {rel['service']:<12}"
        f" {(rel.get('previous_version') or '?')} -> {rel['version']:<8} {rel['strategy']:<10}"
        f" {rel['state']:<11} {rel['ticket']}"
    )


def register(app: typer.Typer) -> None:
    rel = typer.Typer(
        help="Releases and their change records, the change calendar, DORA metrics.",
        no_args_is_help=True,
    )
    app.add_typer(rel, name="releases")

    @rel.command("list")
    def list_cmd(
        ctx: typer.Context,
        env: EnvOpt = None,
        service: Annotated[str | None, typer.Option("--service", help="Only this service")] = None,
        limit: Annotated[int, typer.Option("--limit", min=1, max=10000)] = 50,
        json_out: JsonOpt = False,
    ) -> None:
        """The releases, newest first: what changed, how, and how it ended."""
        from opsbook.deploy import records  # noqa: PLC0415

        st: AppState = ctx.obj
        db = open_db(st.workspace(), st.settings)
        try:
            rows = records.list_releases(db, environment=env, service=service, limit=limit)
        finally:
            db.close()
        if json_out:
            print_json({"releases": rows})
            return
        if not rows:
            typer.echo("no releases yet: opsbook deploy SERVICE VERSION --ticket CHG-…")
            return
        for r in rows:
            typer.echo(_row(r))

    @rel.command("show")
    def show_cmd(
        ctx: typer.Context,
        release_id: Annotated[str, typer.Argument(help="A release id, rel-…")],
        json_out: JsonOpt = False,
    ) -> None:
        """A release's change record: ticket, reason, security impact, approvals, testing
        evidence, back-out plan, outcome, the executions and every rollout decision."""
        from opsbook.deploy import records  # noqa: PLC0415

        st: AppState = ctx.obj
        db = open_db(st.workspace(), st.settings)
        try:
            rec = records.change_record(db, release_id)
        finally:
            db.close()
        if json_out:
            print_json(rec)
            return
        typer.echo(f"release {rec['release']}  {rec['change']}  ({rec['strategy']})")
        for key in (
            "ticket",
            "environment",
            "tier",
            "reason",
            "security_impact",
            "backout",
            "requested_by",
            "requested_at",
            "outcome",
            "outcome_detail",
            "finished_at",
            "rolled_back_at",
        ):
            if rec.get(key) not in (None, ""):
                typer.echo(f"  {key.replace('_', ' '):<16} {rec[key]}")
        if rec["emergency"]:
            typer.echo("  emergency change")
        for f in rec.get("freeze") or []:
            typer.echo(f"  in freeze        {f.get('name')}")
        ev = rec.get("testing_evidence") or {}
        for e in ev.get("checklist", []):
            typer.echo(f"  evidence         checklist {e['execution_id']} ({e['environment']})")
        for e in ev.get("staging", []):
            typer.echo(f"  evidence         staging release {e['release_id']}")
        if not ev.get("checklist"):
            typer.echo("  evidence         none (no successful pre-deployment checklist)")
        for a in rec["approvals"]:
            typer.echo(
                f"  approval         {a['decision']} by {a['approver']} at {a['created_at'][:19]}Z"
            )
        for x in rec["executions"]:
            typer.echo(f"  execution        {x['id']} {x['procedure_id']} {x['state']}")
        for i in rec["incidents"]:
            typer.echo(f"  incident         {i}")
        decisions = [d for d in rec["decisions"] if d.get("kind") != "measurement"]
        if decisions:
            typer.echo("  decisions:")
            for d in decisions:
                detail = {k: v for k, v in d.items() if k not in ("at", "t", "kind")}
                typer.echo(f"    {d.get('t', 0):7.1f}s {d['kind']}: {detail}")

    @rel.command("calendar")
    def calendar_cmd(
        ctx: typer.Context,
        days: Annotated[int, typer.Option("--days", min=1, max=366)] = 14,
        json_out: JsonOpt = False,
    ) -> None:
        """The change calendar: freeze windows active now and in the next days."""
        from opsbook.deploy import calendar  # noqa: PLC0415

        st: AppState = ctx.obj
        ws = st.workspace()
        cal = calendar.load(ws.root / "change_calendar.yaml")
        now = datetime.now(UTC)
        active = [f.to_dict() for f in cal.active(now)]
        upcoming = [f.to_dict() for f in cal.upcoming(now, days=days)]
        if json_out:
            print_json({"now": now.isoformat(), "active": active, "upcoming": upcoming})
            return
        typer.echo("frozen now: " + (", ".join(str(f["name"]) for f in active) or "no"))
        for f in upcoming:
            typer.echo(f"  {f.get('window_start')} .. {f.get('window_end')}  {f.get('name')}")

    @rel.command("dora")
    def dora_cmd(
        ctx: typer.Context,
        days: Annotated[int, typer.Option("--days", min=1, max=3660, help="The period")] = 30,
        json_out: JsonOpt = False,
    ) -> None:
        """DORA metrics from the change records: deployment frequency, lead time for changes,
        change failure rate, time to restore."""
        from opsbook.deploy import dora, records  # noqa: PLC0415

        st: AppState = ctx.obj
        db = open_db(st.workspace(), st.settings)
        until = datetime.now(UTC)
        since = until - timedelta(days=days)
        try:
            rows = records.dora_rows(db, since=since.strftime("%Y-%m-%dT%H:%M:%S"), until="9999")
        finally:
            db.close()
        report = dora.compute(releases=rows, since=since, until=until)
        if json_out:
            print_json(report.to_dict())
            return
        typer.echo(report.render_text())

    @rel.command("link")
    def link_cmd(
        ctx: typer.Context,
        release_id: Annotated[str, typer.Argument(help="A release id, rel-…")],
        incident: Annotated[str, typer.Option("--incident", help="The incident, INC-…")],
        as_user: Annotated[str | None, typer.Option("--as", help="Who (audited)")] = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Link an incident the release caused (it then counts as a change failure)."""
        from opsbook.deploy import records  # noqa: PLC0415

        st: AppState = ctx.obj
        db = open_db(st.workspace(), st.settings)
        try:
            out = records.link_incident(
                db, release_id=release_id, incident_id=incident, actor=st.user(as_user)
            )
        finally:
            db.close()
        if json_out:
            print_json(out)
            return
        typer.echo(f"{release_id}: incidents {', '.join(out['incident_ids'])}")
