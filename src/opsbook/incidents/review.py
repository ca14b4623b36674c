"""Post-incident review: action items and a Markdown draft generated from the timeline.

Times in the draft: time to detect = detected − impact start; time to acknowledge = acknowledged
− declared (pages go out at declaration); time to mitigate = mitigated − detected; time to
resolve = resolved − detected.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from opsbook import audit
from opsbook.audit._log import utcnow
from opsbook.db import Database
from opsbook.errors import NotFoundError, ValidationError
from opsbook.incidents._events import add_event
from opsbook.incidents.model import Incident, TimelineEntry, parse_ts, seconds_between
from opsbook.incidents.service import get, timeline

if TYPE_CHECKING:
    from opsbook.workspace import Workspace


def add_action(
    *, db: Database, ref: str | int, actor: str, title: str, owner: str, due: str
) -> int:
    if not title.strip() or not owner.strip():
        raise ValidationError(
            "an action item needs a title and an owner",
            field="title",
            hint='--action "Add a payment-queue alert" --owner alice',
        )
    try:
        due_date = date.fromisoformat(due).isoformat()
    except ValueError as exc:
        raise ValidationError(
            f"due date {due!r} is not a date", field="due", hint="write YYYY-MM-DD"
        ) from exc
    with db.transaction():
        inc = get(db=db, ref=ref)
        aid = db.insert(
            "INSERT INTO incident_actions (incident_id, title, owner, due_date, status,"
            " created_by, created_at) VALUES (?, ?, ?, ?, 'open', ?, ?)",
            (inc.id, title.strip(), owner.strip(), due_date, actor, utcnow()),
        )
        payload = {"action": aid, "title": title, "owner": owner, "due": due_date}
        add_event(db=db, incident_id=inc.id, actor=actor, kind="action.added", payload=payload)
        audit.record(
            db=db, actor=actor, action="incident.action.add", subject=inc.ref, payload=payload
        )
    return aid


def complete_action(*, db: Database, action_id: int, actor: str) -> None:
    with db.transaction():
        row = db.one("SELECT * FROM incident_actions WHERE id = ?", (action_id,))
        if row is None:
            raise NotFoundError(f"no action item {action_id}", hint="see `incidents review REF`")
        db.execute(
            "UPDATE incident_actions SET status = 'done', done_at = ? WHERE id = ?",
            (utcnow(), action_id),
        )
        payload = {"action": action_id, "title": row["title"]}
        add_event(
            db=db,
            incident_id=int(row["incident_id"]),
            actor=actor,
            kind="action.done",
            payload=payload,
        )
        audit.record(
            db=db,
            actor=actor,
            action="incident.action.done",
            subject=f"INC-{row['incident_id']}",
            payload=payload,
        )


def actions(
    *, db: Database, incident_id: int | None = None, overdue_on: date | None = None
) -> list[dict[str, Any]]:
    sql = "SELECT * FROM incident_actions WHERE 1 = 1"
    args: list[object] = []
    if incident_id is not None:
        sql += " AND incident_id = ?"
        args.append(incident_id)
    if overdue_on is not None:
        sql += " AND status = 'open' AND due_date < ?"
        args.append(overdue_on.isoformat())
    return db.query(sql + " ORDER BY due_date, id", args)


def flag_runbook(*, db: Database, ref: str | int, actor: str, runbook: str, reason: str) -> None:
    """Record that the review wants ``runbook`` changed (the runbook update process)."""
    with db.transaction():
        inc = get(db=db, ref=ref)
        payload = {"runbook": runbook, "reason": reason}
        add_event(db=db, incident_id=inc.id, actor=actor, kind="runbook.flagged", payload=payload)
        audit.record(
            db=db, actor=actor, action="incident.runbook.flag", subject=inc.ref, payload=payload
        )


def _dur(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    s = round(seconds)
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h {m:02d}m {sec:02d}s" if h else (f"{m}m {sec:02d}s" if m else f"{sec}s")


def _hm(ts: str) -> str:
    return parse_ts(ts).strftime("%Y-%m-%d %H:%M:%S")


def failure_reason(errors: object) -> str:
    """Why a page failed, from its attempts' errors: each distinct reason once, in order."""
    if not isinstance(errors, list):
        return ""
    return "; ".join(dict.fromkeys(str(e) for e in errors if e))


def _describe(e: TimelineEntry) -> str:
    p = e.payload
    k = e.kind
    if k == "declared":
        return f"Declared {p.get('severity')} ({p.get('type')}): {p.get('title')}"
    if k == "escalation.paged":
        return f"Paged {p.get('level')} ({', '.join(p.get('recipients', []))}): {p.get('reason')}"
    if k.startswith("notification."):
        via = f" by {p.get('channel')}" if p.get("channel") else ""
        text = (
            f"Page to {p.get('recipient')} {k.split('.', 1)[1]}{via} ({p.get('attempts')} attempts)"
        )
        why = failure_reason(p.get("errors"))
        return f"{text}: {why}" if why and k != "notification.sent" else text
    if k == "status.changed":
        return f"Status {p.get('from')} → {p.get('to')}" + (
            f": {p['note']}" if p.get("note") else ""
        )
    if k.startswith("severity."):
        return f"Severity {k.split('.', 1)[1].replace('_', ' ')}: {p.get('from')} → {p.get('to')}"
    if k == "execution.linked":
        return f"Started runbook {p.get('procedure')} (execution {p.get('execution')})"
    if e.source == "execution":
        step = p.get("step") or p.get("step_id") or ""
        state = p.get("state_name") or p.get("state") or ""
        return f"Execution {str(p.get('execution'))[:8]}: {k} {step} {state}".rstrip()
    if k in ("note", "evidence", "update"):
        return f"{k.capitalize()}: {p.get('text')}"
    if k == "role.assigned":
        return f"{p.get('person')} is {p.get('role')}"
    if k == "impact.snapshot":
        pays = p.get("payments") or {}
        got = ", ".join(
            f"{svc} {int(v['succeeded'])} ok/{int(v['failed'])} failed"
            if "error" not in v
            else f"{svc} unreachable"
            for svc, v in sorted(pays.items())
        )
        return f"Payments counters at the {p.get('point')}: " + (got or str(p.get("why_not")))
    if k == "alert.attached":
        return f"Alert {p.get('alert')} on {p.get('service')} attached"
    return f"{k} {', '.join(f'{a}={b}' for a, b in p.items() if b not in (None, '', [], {}))}"


def metrics_of(inc: Incident) -> dict[str, float | None]:
    return {
        "time_to_detect_s": seconds_between(inc.impact_start_at, inc.detected_at),
        "time_to_acknowledge_s": seconds_between(inc.declared_at, inc.acknowledged_at),
        "time_to_mitigate_s": seconds_between(inc.detected_at, inc.mitigated_at),
        "time_to_resolve_s": seconds_between(inc.detected_at, inc.resolved_at),
    }


def draft(
    *,
    db: Database,
    ref: str | int,
    today: date | None = None,
    workspace: Workspace | None = None,
) -> str:
    """The review draft in Markdown, from the stored incident and its whole timeline. The
    payments affected come from the sandbox metrics readings on the timeline
    (opsbook.incidents.impact); with ``workspace``, an open incident is measured up to now."""
    from opsbook.incidents.impact import impact_lines, take_due  # noqa: PLC0415

    inc = get(db=db, ref=ref)
    if workspace is not None:  # a reading still due (resolved a moment ago): take it now
        take_due(db=db, workspace=workspace, owner="review", incident_id=inc.id)
    events = timeline(db=db, incident=inc)
    m = metrics_of(inc)
    today = today or datetime.now(UTC).date()
    end = inc.resolved_at or inc.closed_at
    lines = [
        f"# Post-incident review: {inc.ref} {inc.title}",
        "",
        "*Draft generated by opsbook from the incident timeline. Blameless: systems and"
        " decisions, not people.*",
        "",
        "## Summary",
        "",
        f"- Severity: **{inc.severity}**; type: {inc.type}; status: {inc.status}"
        + (" (**drill**)" if inc.drill else ""),
        f"- Affected services: {', '.join(inc.services) or 'none named'}",
        f"- Declared by {inc.created_by} ({inc.source}) at {_hm(inc.declared_at)} UTC",
        f"- Incident commander: {inc.roles.get('commander') or 'not assigned'}",
        f"- Acknowledged by: {inc.acknowledged_by or 'nobody'}",
    ]
    if inc.summary:
        lines += ["", inc.summary]
    started = _hm(inc.impact_start_at) + " UTC" if inc.impact_start_at else "unknown"
    lines += [
        "",
        "## Impact",
        "",
        f"- Impact started: {started}",
        f"- Duration (detected to resolved): {_dur(seconds_between(inc.detected_at, end))}",
        f"- Impact: {inc.impact or 'not classified'}; urgency: {inc.urgency or 'not classified'}",
        *impact_lines(inc=inc, events=events, workspace=workspace),
        "",
        "## Detection and response times",
        "",
        "| Measure | Value |",
        "|---|---|",
        f"| Time to detect (impact start → detected) | {_dur(m['time_to_detect_s'])} |",
        f"| Time to acknowledge (declared → acknowledged) | {_dur(m['time_to_acknowledge_s'])} |",
        f"| Time to mitigate (detected → mitigated) | {_dur(m['time_to_mitigate_s'])} |",
        f"| Time to resolve (detected → resolved) | {_dur(m['time_to_resolve_s'])} |",
        "",
        "## Timeline (UTC)",
        "",
        "| Time | Who | What |",
        "|---|---|---|",
    ]
    for e in events:
        what = _describe(e).replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {_hm(e.ts)} | {e.actor} | {what} |")
    runs = db.query(
        "SELECT * FROM incident_executions WHERE incident_id = ? ORDER BY ts", (inc.id,)
    )
    lines += ["", "## What was executed", ""]
    if not runs:
        lines.append("- No runbook procedure was run from this incident.")
    for r in runs:
        state = db.one("SELECT state_name FROM executions WHERE id = ?", (r["execution_id"],))
        lines.append(
            f"- `{r['ref']}` by {r['started_by']} at {_hm(str(r['ts']))} UTC: "
            f"execution {r['execution_id']} ({state['state_name'] if state else '?'})"
        )
    lines += [
        "",
        "## Contributing factors",
        "",
        "- (to be written in the review meeting)",
        "",
        "## Action items",
        "",
    ]
    items = actions(db=db, incident_id=inc.id)
    if not items:
        lines.append(
            "- None yet: add them with `opsbook incidents review "
            f"{inc.ref} --action TITLE --owner WHO --due YYYY-MM-DD`."
        )
    else:
        lines += ["| # | Action | Owner | Due | Status |", "|---|---|---|---|---|"]
        for a in items:
            status = a["status"]
            if status == "open" and a["due_date"] < today.isoformat():
                status = "**overdue**"
            lines.append(
                f"| {a['id']} | {a['title']} | {a['owner']} | {a['due_date']} | {status} |"
            )
    flags = [e for e in events if e.kind == "runbook.flagged"]
    if flags:
        lines += ["", "## Runbook improvements", ""]
        lines += [f"- `{e.payload['runbook']}`: {e.payload['reason']}" for e in flags]
    return "\n".join(lines) + "\n"
