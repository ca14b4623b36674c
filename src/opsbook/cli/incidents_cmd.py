"""`opsbook incidents …` and `opsbook notify …`: incident response from the command line.

Exit codes: 0 done, 1 a page that could not be delivered (`declare`, `notify test`), 2 bad input, an
unknown incident/contact or a change the incident's state does not allow.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from opsbook.cli._common import AppState, open_db, print_json

if TYPE_CHECKING:
    from opsbook.db import Database
    from opsbook.incidents.config import IncidentConfig
    from opsbook.incidents.model import Incident
    from opsbook.workspace import Workspace

JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON")]
AsOpt = Annotated[str | None, typer.Option("--as", help="Act as this user")]
RefArg = Annotated[str, typer.Argument(help="Incident reference, e.g. INC-12")]

incidents_app = typer.Typer(
    help="Incidents: declare, acknowledge, update, resolve, review.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    """Add the incident command groups to ``app``."""
    from opsbook.cli.notify_cmd import notify_app  # noqa: PLC0415 - small: typer only

    app.add_typer(incidents_app, name="incidents")
    app.add_typer(notify_app, name="notify")


def _open(ctx: typer.Context) -> tuple[Workspace, Database, str]:
    state: AppState = ctx.obj
    ws = state.workspace()
    return ws, open_db(ws, state.settings), ""


def _user(ctx: typer.Context, as_user: str | None) -> str:
    state: AppState = ctx.obj
    return state.user(as_user)


def _config(ws: Workspace) -> IncidentConfig:
    from opsbook.incidents.config import load_config  # noqa: PLC0415

    return load_config(ws)


def _deliver(db: Database, config: IncidentConfig, ids: tuple[int, ...]) -> list[Any]:
    """Send the pages this command queued now (the server would otherwise within a second)."""
    import asyncio  # noqa: PLC0415
    import os  # noqa: PLC0415

    from opsbook.notify.deliver import deliver_pending  # noqa: PLC0415

    if not ids:
        return []
    return asyncio.run(
        deliver_pending(
            db=db,
            settings=config.policy.notify,
            key=config.webhook_key,
            owner=f"cli:{os.getpid()}",
            ids=list(ids),
        )
    )


def _snapshot(ws: Workspace, db: Database, incident_id: int) -> None:
    """Read the sandbox's payment counters now (the start or end of the impact window)."""
    import contextlib  # noqa: PLC0415
    import os  # noqa: PLC0415

    from opsbook.errors import OpsbookError  # noqa: PLC0415
    from opsbook.incidents.impact import take_due  # noqa: PLC0415

    # on failure the server takes it within a second, or the review says why it is missing
    with contextlib.suppress(OpsbookError):
        take_due(db=db, workspace=ws, owner=f"cli:{os.getpid()}", incident_id=incident_id)


def _line(inc: Incident) -> str:
    ack = f", acknowledged by {inc.acknowledged_by}" if inc.acknowledged_at else ""
    drill = " [drill]" if inc.drill else ""
    return f"{inc.ref} {inc.severity} {inc.status}{drill}: {inc.title}{ack}"


def _show(inc: Incident, json_out: bool, extra: dict[str, Any] | None = None) -> None:
    if json_out:
        print_json({**inc.to_dict(), **(extra or {})})
    else:
        sys.stdout.write(_line(inc) + "\n")


@incidents_app.command("declare")
def declare(
    ctx: typer.Context,
    title: Annotated[str, typer.Argument(help="What is wrong, in one line")],
    type_: Annotated[
        str, typer.Option("--type", "-t", help="outage|security|performance|data|other")
    ] = "outage",
    service: Annotated[
        list[str] | None, typer.Option("--service", "-s", help="Affected service (repeatable)")
    ] = None,
    impact: Annotated[str | None, typer.Option(help="extensive|significant|moderate|minor")] = None,
    urgency: Annotated[str | None, typer.Option(help="critical|high|medium|low")] = None,
    severity: Annotated[
        str | None, typer.Option(help="SEV1..SEV4 (the higher of this and the matrix wins)")
    ] = None,
    summary: Annotated[str, typer.Option(help="What customers see")] = "",
    commander: Annotated[str | None, typer.Option(help="Incident commander")] = None,
    impact_start: Annotated[
        str | None, typer.Option(help="When impact began (ISO 8601, UTC)")
    ] = None,
    detected: Annotated[
        str | None, typer.Option(help="When it was detected (default: now)")
    ] = None,
    drill: Annotated[
        bool, typer.Option("--drill", help="A drill: pages say so; metrics skip it")
    ] = False,
    no_page: Annotated[
        bool,
        typer.Option(
            "--no-page", help="Queue the pages for `opsbook serve` instead of sending them now"
        ),
    ] = False,
    json_out: JsonOpt = False,
    as_user: AsOpt = None,
) -> None:
    """Declare an incident: classify it and page the response team."""
    from opsbook.incidents.service import declare as declare_incident  # noqa: PLC0415

    ws, db, _ = _open(ctx)
    config = _config(ws)
    out = declare_incident(
        db=db,
        config=config,
        title=title,
        actor=_user(ctx, as_user),
        type_=type_,
        services=list(service or []),
        impact=impact,
        urgency=urgency,
        severity=severity,
        summary=summary,
        drill=drill,
        impact_start=impact_start,
        detected=detected,
        commander=commander,
    )
    deliveries = [] if no_page else _deliver(db, config, out.notifications)
    _snapshot(ws, db, out.incident.id)
    pages = _pages(db, deliveries)
    if json_out:
        _show(
            out.incident,
            True,
            {"reasons": list(out.reasons), "pages": pages, "queued": list(out.notifications)},
        )
    else:
        sys.stdout.write(_line(out.incident) + "\n")
        for r in out.reasons:
            sys.stdout.write(f"  {r}\n")
        for p in pages:
            sys.stdout.write(
                f"  page {p['recipient']}: {p['outcome']}"
                + (f" by {p['channel']}" if p["channel"] else "")
                + (f" ({p['error']})" if p["outcome"] != "sent" and p["error"] else "")
                + "\n"
            )
    _fail_on_undelivered(pages)


def _pages(db: Database, deliveries: list[Any]) -> list[dict[str, Any]]:
    """Each page sent now, with the reason it failed (its attempts' distinct errors)."""
    from opsbook.incidents.notifications import attempts  # noqa: PLC0415
    from opsbook.incidents.review import failure_reason  # noqa: PLC0415

    out = []
    for d in deliveries:
        errors = [a["error"] for a in attempts(db=db, notification_id=d.notification_id)]
        out.append({**d.__dict__, "error": failure_reason(errors) or None})
    return out


def _fail_on_undelivered(pages: list[dict[str, Any]]) -> None:
    """Exit 1 when a page was not delivered: the incident stands, but nobody may know."""
    bad = [p for p in pages if p["outcome"] == "failed"]
    if bad:
        sys.stderr.write(
            f"error: {len(bad)} of {len(pages)} page(s) not delivered"
            f" ({', '.join(p['recipient'] for p in bad)}); call them, and run `opsbook doctor`"
            " to check the notification channels (incident_policy.yaml notify, contacts.yaml)\n"
        )
        raise typer.Exit(1)


@incidents_app.command("list")
def list_(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option(help="Only this status")] = None,
    open_only: Annotated[bool, typer.Option("--open", help="Only open incidents")] = False,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    json_out: JsonOpt = False,
) -> None:
    """List incidents, newest first."""
    from opsbook.incidents.service import list_incidents  # noqa: PLC0415

    _, db, _ = _open(ctx)
    rows = list_incidents(db=db, status=status, open_only=open_only, limit=limit)
    if json_out:
        print_json([i.to_dict() for i in rows])
        return
    for inc in rows:
        sys.stdout.write(_line(inc) + "\n")
    if not rows:
        sys.stdout.write("no incidents\n")


@incidents_app.command("show")
def show(ctx: typer.Context, ref: RefArg, json_out: JsonOpt = False) -> None:
    """An incident and its timeline."""
    from opsbook.incidents.review import _describe  # noqa: PLC0415
    from opsbook.incidents.service import get, timeline  # noqa: PLC0415

    _, db, _ = _open(ctx)
    inc = get(db=db, ref=ref)
    events = timeline(db=db, incident=inc)
    if json_out:
        print_json({**inc.to_dict(), "timeline": [e.to_dict() for e in events]})
        return
    sys.stdout.write(_line(inc) + "\n")
    sys.stdout.write(f"  services: {', '.join(inc.services) or '-'}; roles: {inc.roles or '-'}\n")
    if inc.pending_severity:
        sys.stdout.write(
            f"  downgrade to {inc.pending_severity} waits for a second person"
            f" (asked by {inc.pending_by})\n"
        )
    for e in events:
        sys.stdout.write(f"  {e.ts[:19].replace('T', ' ')}  {e.actor:<20} {_describe(e)}\n")


@incidents_app.command("ack")
def ack(ctx: typer.Context, ref: RefArg, json_out: JsonOpt = False, as_user: AsOpt = None) -> None:
    """Acknowledge: stops the escalation."""
    from opsbook.incidents.lifecycle import acknowledge  # noqa: PLC0415

    _, db, _ = _open(ctx)
    _show(acknowledge(db=db, ref=ref, actor=_user(ctx, as_user), via="cli"), json_out)


@incidents_app.command("update")
def update(
    ctx: typer.Context,
    ref: RefArg,
    status: Annotated[
        str | None, typer.Option(help="investigating|identified|monitoring|resolved")
    ] = None,
    severity: Annotated[
        str | None, typer.Option(help="New severity (lowering SEV1/SEV2 needs approval)")
    ] = None,
    reason: Annotated[str, typer.Option(help="Why (for a severity change)")] = "",
    note: Annotated[str | None, typer.Option(help="A note for the timeline")] = None,
    evidence: Annotated[
        str | None, typer.Option(help="Evidence: a log excerpt, a metric snapshot")
    ] = None,
    internal: Annotated[
        str | None, typer.Option(help="An internal stakeholder update (restarts the cadence)")
    ] = None,
    public: Annotated[
        str | None,
        typer.Option(help="A customer-facing update for /status (the commander publishes it)"),
    ] = None,
    publish: Annotated[
        int | None, typer.Option(help="Publish customer-facing update ID (commander only)")
    ] = None,
    approve_downgrade: Annotated[
        bool,
        typer.Option("--approve-downgrade", help="Approve the pending downgrade (not your own)"),
    ] = False,
    reject_downgrade: Annotated[
        bool, typer.Option("--reject-downgrade", help="Reject the pending downgrade")
    ] = False,
    json_out: JsonOpt = False,
    as_user: AsOpt = None,
) -> None:
    """Change status or severity, add notes and evidence, decide a downgrade."""
    from opsbook.errors import UsageError  # noqa: PLC0415
    from opsbook.incidents import lifecycle  # noqa: PLC0415
    from opsbook.incidents.service import get  # noqa: PLC0415

    if not any((status, severity, note, evidence, internal, public, publish)) and not (
        approve_downgrade or reject_downgrade
    ):
        raise UsageError(
            "nothing to update", hint="pass --status, --severity, --note or --evidence"
        )
    ws, db, _ = _open(ctx)
    user = _user(ctx, as_user)
    if note:
        lifecycle.add_note(db=db, ref=ref, actor=user, text=note)
    if evidence:
        lifecycle.add_note(db=db, ref=ref, actor=user, text=evidence, kind="evidence")
    pages: list[dict[str, Any]] = []
    if internal or public or publish is not None:
        from opsbook.incidents import comms  # noqa: PLC0415

        config = _config(ws)
        if internal:
            up = comms.post_update(db=db, config=config, ref=ref, actor=user, text=internal)
            # to the people paged so far
            pages = _pages(db, _deliver(db, config, tuple(up["notifications"])))
        if public:
            up = comms.post_update(
                db=db, config=config, ref=ref, actor=user, text=public, audience="public"
            )
            if not json_out:
                sys.stdout.write(
                    f"  customer-facing update {up['id']} waits for the incident commander:"
                    f" `opsbook incidents update {ref} --publish {up['id']}`\n"
                )
        if publish is not None:
            out = comms.approve_update(db=db, config=config, update_id=publish, actor=user)
            _deliver(db, config, tuple(out["notifications"]))  # to status page subscribers
    if approve_downgrade or reject_downgrade:
        lifecycle.decide_downgrade(
            db=db,
            ref=ref,
            actor=user,
            approve=approve_downgrade,
            comment=reason,
            contacts=_config(ws).contacts,
        )
    if severity:
        lifecycle.change_severity(
            db=db,
            ref=ref,
            actor=user,
            severity=severity,
            reason=reason,
            contacts=_config(ws).contacts,
        )
    if status:
        lifecycle.set_status(db=db, ref=ref, actor=user, status=status, note=note or "")
    inc = get(db=db, ref=ref)
    _show(inc, json_out)
    if inc.pending_severity and not json_out:
        sys.stdout.write(
            f"  downgrade to {inc.pending_severity} waits for a second person:"
            f" `opsbook incidents update {inc.ref} --approve-downgrade`\n"
        )
    for p in pages:
        if p["outcome"] == "failed" and not json_out:
            sys.stdout.write(
                f"  update to {p['recipient']}: failed ({p['error'] or 'no reason'})\n"
            )
    _fail_on_undelivered(pages)


@incidents_app.command("assign")
def assign(
    ctx: typer.Context,
    ref: RefArg,
    role: Annotated[str, typer.Argument(help="commander|comms_lead|scribe|sme")],
    person: Annotated[str, typer.Argument(help="Who")],
    json_out: JsonOpt = False,
    as_user: AsOpt = None,
) -> None:
    """Assign an incident role."""
    from opsbook.incidents.lifecycle import assign as assign_role  # noqa: PLC0415

    _, db, _ = _open(ctx)
    _show(
        assign_role(db=db, ref=ref, actor=_user(ctx, as_user), role=role, person=person), json_out
    )


@incidents_app.command("resolve")
def resolve(
    ctx: typer.Context,
    ref: RefArg,
    note: Annotated[str, typer.Option(help="How it was resolved")] = "",
    json_out: JsonOpt = False,
    as_user: AsOpt = None,
) -> None:
    """Resolve: stops escalation and update reminders."""
    from opsbook.incidents.lifecycle import resolve as resolve_incident  # noqa: PLC0415

    ws, db, _ = _open(ctx)
    inc = resolve_incident(db=db, ref=ref, actor=_user(ctx, as_user), note=note)
    _snapshot(ws, db, inc.id)
    _show(inc, json_out)


@incidents_app.command("close")
def close(
    ctx: typer.Context,
    ref: RefArg,
    note: Annotated[str, typer.Option()] = "",
    json_out: JsonOpt = False,
    as_user: AsOpt = None,
) -> None:
    """Close a resolved incident (final)."""
    from opsbook.incidents.lifecycle import close as close_incident  # noqa: PLC0415

    _, db, _ = _open(ctx)
    _show(close_incident(db=db, ref=ref, actor=_user(ctx, as_user), note=note), json_out)


@incidents_app.command("review")
def review(
    ctx: typer.Context,
    ref: RefArg,
    action: Annotated[str | None, typer.Option(help="Add an action item with this title")] = None,
    owner: Annotated[str | None, typer.Option(help="The action item's owner")] = None,
    due: Annotated[str | None, typer.Option(help="The action item's due date, YYYY-MM-DD")] = None,
    done: Annotated[int | None, typer.Option(help="Mark this action item done")] = None,
    flag_runbook: Annotated[str | None, typer.Option(help="Flag a runbook for change")] = None,
    reason: Annotated[str, typer.Option(help="Why the runbook should change")] = "",
    out: Annotated[str | None, typer.Option("--out", "-o", help="Write the Markdown here")] = None,
    json_out: JsonOpt = False,
    as_user: AsOpt = None,
) -> None:
    """The post-incident review draft (Markdown) from the timeline; action items."""
    from pathlib import Path  # noqa: PLC0415

    from opsbook.errors import UsageError  # noqa: PLC0415
    from opsbook.incidents import review as rv  # noqa: PLC0415
    from opsbook.incidents.service import get  # noqa: PLC0415

    ws, db, _ = _open(ctx)
    user = _user(ctx, as_user)
    if action:
        if not owner or not due:
            raise UsageError("an action item needs --owner and --due", hint="--due 2026-12-31")
        rv.add_action(db=db, ref=ref, actor=user, title=action, owner=owner, due=due)
    if done is not None:
        rv.complete_action(db=db, action_id=done, actor=user)
    if flag_runbook:
        rv.flag_runbook(db=db, ref=ref, actor=user, runbook=flag_runbook, reason=reason)
    text = rv.draft(db=db, ref=ref, workspace=ws)
    if out:
        Path(out).write_text(text, encoding="utf-8")
    if json_out:
        inc = get(db=db, ref=ref)
        print_json(
            {
                "incident": inc.ref,
                "metrics": rv.metrics_of(inc),
                "markdown": text,
                "actions": rv.actions(db=db, incident_id=inc.id),
            }
        )
    elif not out:
        sys.stdout.write(text)


@incidents_app.command("report")
def report(
    ctx: typer.Context,
    since: Annotated[str, typer.Option(help="From this date/time (ISO 8601), or e.g. 30d")],
    until: Annotated[str | None, typer.Option(help="Up to this date/time")] = None,
    json_out: JsonOpt = False,
) -> None:
    """MTTA, MTTR and time to detect by severity (median, p90); drills excluded."""
    from opsbook.incidents.metrics import parse_since, render_text  # noqa: PLC0415
    from opsbook.incidents.metrics import report as make_report  # noqa: PLC0415

    _, db, _ = _open(ctx)
    until_ts = parse_since(until) if until else None
    data = make_report(db=db, since=parse_since(since), until=until_ts)
    if json_out:
        print_json(data)
        return
    sys.stdout.write(render_text(data, since))


@incidents_app.command("suggest")
def suggest(ctx: typer.Context, ref: RefArg, json_out: JsonOpt = False) -> None:
    """Runbook procedures that fit the incident (by service, type and alert)."""
    from opsbook.cli._common import catalogue  # noqa: PLC0415
    from opsbook.incidents.service import get  # noqa: PLC0415
    from opsbook.incidents.suggest import suggest_for  # noqa: PLC0415

    ws, db, _ = _open(ctx)
    found = suggest_for(db=db, catalogue=catalogue(ws), incident=get(db=db, ref=ref))
    if json_out:
        print_json([s.to_dict() for s in found])
        return
    for s in found:
        sys.stdout.write(f"{s.ref}  {s.title}  ({'; '.join(s.reasons)})\n")


@incidents_app.command("run")
def run(
    ctx: typer.Context,
    ref: RefArg,
    procedure: Annotated[str, typer.Argument(help="RUNBOOK#PROCEDURE (see `incidents suggest`)")],
    env: Annotated[str | None, typer.Option("--env", "-e")] = None,
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="k=v")] = None,
    json_out: JsonOpt = False,
    as_user: AsOpt = None,
) -> int:
    """Run a procedure for the incident: the execution and its steps join the timeline."""
    from opsbook.incidents.runs import run_for_incident  # noqa: PLC0415

    state: AppState = ctx.obj
    ws, db, _ = _open(ctx)
    outcome = run_for_incident(
        ws=ws,
        settings=state.settings,
        db=db,
        ref=ref,
        procedure=procedure,
        env=env,
        params=list(param or []),
        actor=_user(ctx, as_user),
    )
    if json_out:
        print_json(outcome)
    else:
        sys.stdout.write(f"{outcome['execution']} {outcome['state_name']} ({procedure})\n")
    return int(outcome["exit_code"])
