"""Declaring, finding and listing incidents; the timeline. Lifecycle changes: lifecycle.py.

Every function takes the database and does its change, its timeline event(s) and its audit
record in one transaction (joined to the caller's, if any).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from opsbook import audit
from opsbook.db import Database
from opsbook.errors import NotFoundError, ValidationError
from opsbook.incidents import escalation
from opsbook.incidents._events import add_event
from opsbook.incidents.config import IncidentConfig
from opsbook.incidents.model import (
    IMPACTS,
    OPEN_STATUSES,
    STATUSES,
    TYPES,
    URGENCIES,
    Incident,
    TimelineEntry,
    choice,
    fmt_ts,
    higher,
    id_of,
    normalise_ts,
    severity_of,
)


@dataclass(frozen=True)
class Declared:
    incident: Incident
    created: bool  # False: an open incident for the same alert took the alert instead
    notifications: tuple[int, ...]  # pages queued (deliver with notify.deliver)
    reasons: tuple[str, ...] = ()


def declare(
    *,
    db: Database,
    config: IncidentConfig,
    title: str,
    actor: str,
    type_: str = "outage",
    services: tuple[str, ...] | list[str] = (),
    impact: str | None = None,
    urgency: str | None = None,
    severity: str | None = None,
    summary: str = "",
    drill: bool = False,
    impact_start: str | None = None,
    detected: str | None = None,
    commander: str | None = None,
    source: str = "cli",
    alert_key: str | None = None,
    alert_runbook: str | None = None,
    now: datetime | None = None,
) -> Declared:
    """Open an incident, classify it (impact × urgency → severity, raised by the policy's
    rules and by an explicit ``severity`` when that is higher) and page the response team."""
    if not title.strip():
        raise ValidationError("an incident needs a title", field="title", hint="say what is wrong")
    policy = config.policy
    type_ = choice(type_, TYPES, "type")
    svc = tuple(dict.fromkeys(str(s).strip() for s in services if str(s).strip()))
    for s in svc:
        if s not in policy.services:
            raise ValidationError(
                f"unknown service {s!r}",
                field="services",
                hint=f"services in incident_policy.yaml: {', '.join(policy.services)}",
            )
    reasons: list[str] = []
    sev: str | None = severity_of(severity) if severity else None
    if impact or urgency:
        if not (impact and urgency):
            raise ValidationError(
                "give both impact and urgency (or just a severity)",
                field="impact" if not impact else "urgency",
                hint=f"impact: {', '.join(IMPACTS)}; urgency: {', '.join(URGENCIES)}",
            )
        impact = choice(impact, IMPACTS, "impact")
        urgency = choice(urgency, URGENCIES, "urgency")
        c = policy.classify(impact=impact, urgency=urgency, type_=type_, services=svc)
        reasons.extend(c.reasons)
        if sev and higher(sev, c.severity) != sev:
            reasons.append(f"{sev} was asked for; the matrix says {c.severity}: the higher is kept")
        elif sev and sev != c.severity:
            reasons.append(f"{sev} was asked for (higher than the matrix's {c.severity})")
        sev = higher(sev, c.severity) if sev else c.severity
    if sev is None:
        raise ValidationError(
            "give impact and urgency (or a severity)",
            field="severity",
            hint="e.g. --impact significant --urgency high; when unsure, pick the higher",
        )
    when = now or datetime.now(UTC)
    ts = fmt_ts(when)
    detected_at = normalise_ts(detected, "detected") if detected else ts
    start_at = normalise_ts(impact_start, "impact_start") if impact_start else None
    roles: dict[str, Any] = {"commander": commander} if commander else {}
    with db.transaction():
        iid = db.insert(
            "INSERT INTO incidents (title, type, services, impact, urgency, severity, status,"
            " summary, drill, source, alert_key, roles, created_by, impact_start_at,"
            " detected_at, declared_at, updated_at) VALUES"
            " (?, ?, ?, ?, ?, ?, 'investigating', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                title.strip(),
                type_,
                json.dumps(list(svc)),
                impact,
                urgency,
                sev,
                summary,
                int(drill),
                source,
                alert_key,
                json.dumps(roles),
                actor,
                start_at,
                detected_at,
                ts,
                ts,
            ),
        )
        inc = get(db=db, ref=iid)
        payload = {
            "title": inc.title,
            "severity": sev,
            "type": type_,
            "services": list(svc),
            "impact": impact,
            "urgency": urgency,
            "reasons": reasons,
            "drill": drill,
            "source": source,
            "alert_key": alert_key,
        }
        if alert_runbook:  # the procedure the alert links: suggested first
            payload["runbook"] = alert_runbook
        add_event(db=db, incident_id=iid, actor=actor, kind="declared", payload=payload, ts=ts)
        if commander:
            add_event(
                db=db,
                incident_id=iid,
                actor=actor,
                kind="role.assigned",
                ts=ts,
                payload={"role": "commander", "person": commander},
            )
        audit.record(
            db=db, actor=actor, action="incident.declare", subject=inc.ref, payload=payload, ts=ts
        )
        ids = escalation.start(
            db=db,
            incident=inc,
            policy=policy,
            contacts=config.contacts,
            key=config.key,
            actor=actor,
            now=when,
        )
    return Declared(inc, True, ids, tuple(reasons))


def declare_from_alert(
    *,
    db: Database,
    config: IncidentConfig,
    alert_name: str,
    service: str,
    severity: str,
    labels: dict[str, str] | None = None,
    summary: str = "",
    fingerprint: str | None = None,
    starts_at: str | None = None,
    actor: str = "system:monitoring",
    now: datetime | None = None,
    runbook: str | None = None,
) -> Declared:
    """Open an incident for a firing alert, or attach the alert to the open incident that
    already has it (same ``fingerprint``, default ``alert_name/service``): an alert that keeps
    firing never opens a second incident. ``labels['type']`` sets the incident type;
    ``runbook`` (the procedure the alert links) is suggested first for the incident."""
    labels = dict(labels or {})
    key = fingerprint or f"{alert_name}/{service}"
    with db.transaction():
        row = db.one(
            "SELECT * FROM incidents WHERE alert_key = ? AND status IN (?, ?, ?)"
            " ORDER BY id DESC LIMIT 1",
            (key, *OPEN_STATUSES),
        )
        if row is not None:
            inc = Incident.from_row(row)
            payload = {
                "alert": alert_name,
                "service": service,
                "severity": severity,
                "labels": labels,
                "summary": summary,
            }
            if runbook:
                payload["runbook"] = runbook
            add_event(
                db=db, incident_id=inc.id, actor=actor, kind="alert.attached", payload=payload
            )
            audit.record(
                db=db, actor=actor, action="incident.alert", subject=inc.ref, payload=payload
            )
            return Declared(inc, False, ())
        type_ = labels.get("type", "outage")
        type_ = type_ if type_ in TYPES else "other"
        return declare(
            db=db,
            config=config,
            title=f"{alert_name} on {service}",
            actor=actor,
            type_=type_,
            services=[service],
            severity=severity,
            summary=summary,
            source="alert",
            alert_key=key,
            alert_runbook=runbook,
            impact_start=starts_at,
            detected=starts_at,
            now=now,
        )


def get(*, db: Database, ref: str | int) -> Incident:
    row = db.one("SELECT * FROM incidents WHERE id = ?", (id_of(ref),))
    if row is None:
        raise NotFoundError(f"no incident {ref}", hint="see `opsbook incidents list`")
    return Incident.from_row(row)


def list_incidents(
    *,
    db: Database,
    status: str | None = None,
    open_only: bool = False,
    since: str | None = None,
    limit: int = 100,
    before_id: int | None = None,
) -> list[Incident]:
    """Newest first; ``before_id`` continues a page (incidents with a smaller id)."""
    sql, args = "SELECT * FROM incidents WHERE 1 = 1", list[str | int]()
    if status:
        sql += " AND status = ?"
        args.append(choice(status, STATUSES, "status"))
    if open_only:
        sql += " AND status IN (?, ?, ?)"
        args.extend(OPEN_STATUSES)
    if since:
        sql += " AND declared_at >= ?"
        args.append(since)
    if before_id is not None:
        sql += " AND id < ?"
        args.append(before_id)
    rows = db.query(sql + " ORDER BY id DESC LIMIT ?", (*args, limit))
    return [Incident.from_row(r) for r in rows]


def timeline(*, db: Database, incident: Incident) -> list[TimelineEntry]:
    """Everything that happened, oldest first: the incident's own events and every journal
    event of the runbook executions started from it."""
    out = [
        TimelineEntry(str(r["ts"]), str(r["actor"]), str(r["kind"]), json.loads(r["payload"]))
        for r in db.query(
            "SELECT ts, actor, kind, payload FROM incident_events WHERE incident_id = ?"
            " ORDER BY id",
            (incident.id,),
        )
    ]
    for link in db.query(
        "SELECT execution_id FROM incident_executions WHERE incident_id = ?", (incident.id,)
    ):
        eid = str(link["execution_id"])
        for r in db.query(
            "SELECT ts, actor, action, payload FROM events WHERE execution_id = ? ORDER BY id",
            (eid,),
        ):
            payload = json.loads(r["payload"])
            payload["execution"] = eid
            out.append(
                TimelineEntry(
                    str(r["ts"]), str(r["actor"]), str(r["action"]), payload, source="execution"
                )
            )
    out.sort(key=lambda e: e.ts)
    return out
