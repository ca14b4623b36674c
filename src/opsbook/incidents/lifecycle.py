"""Acknowledge, update (status, severity, notes), assign roles, resolve, close.

Status moves forward ``investigating → identified → monitoring → resolved → closed`` (steps may
be skipped; a resolved incident may be reopened to ``investigating``; ``closed`` is final and
needs ``resolved`` first). Lowering a SEV1 or SEV2 is a request another person must approve.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from opsbook import audit
from opsbook.db import Database
from opsbook.errors import ConflictError, PermissionDenied, ValidationError
from opsbook.incidents import escalation
from opsbook.incidents._events import add_event
from opsbook.incidents.model import (
    MAJOR,
    ROLES,
    STATUSES,
    Incident,
    choice,
    fmt_ts,
    rank,
    severity_of,
)
from opsbook.incidents.service import get

if TYPE_CHECKING:
    from opsbook.incidents.contacts import Contacts


def _now(now: datetime | None) -> str:
    return fmt_ts(now or datetime.now(UTC))


def now_dt(now: datetime | None) -> datetime:
    return now or datetime.now(UTC)


def _change(
    db: Database,
    inc: Incident,
    actor: str,
    kind: str,
    payload: dict[str, Any],
    ts: str,
    sets: dict[str, Any],
) -> Incident:
    cols = ", ".join(f"{k} = ?" for k in (*sets, "updated_at"))
    db.execute(
        f"UPDATE incidents SET {cols} WHERE id = ?",  # noqa: S608 - column names are ours
        (*sets.values(), ts, inc.id),
    )
    add_event(db=db, incident_id=inc.id, actor=actor, kind=kind, payload=payload, ts=ts)
    audit.record(
        db=db, actor=actor, action=f"incident.{kind}", subject=inc.ref, payload=payload, ts=ts
    )
    return get(db=db, ref=inc.id)


def _must_be_open(inc: Incident, what: str) -> None:
    if inc.status == "closed":
        raise ConflictError(
            f"{inc.ref} is closed: cannot {what}",
            hint="declare a new incident (reference this one in its summary)",
        )


def acknowledge(
    *, db: Database, ref: str | int, actor: str, via: str = "cli", now: datetime | None = None
) -> Incident:
    """Stop the escalation: cancel the pending ack timers. Acknowledging twice is harmless."""
    ts = _now(now)
    with db.transaction():
        inc = get(db=db, ref=ref)
        _must_be_open(inc, "acknowledge it")
        if inc.status == "resolved":
            raise ConflictError(
                f"{inc.ref} is already resolved",
                hint="reopen it with `incidents update --status investigating`",
            )
        if inc.acknowledged_at:
            return inc
        escalation.cancel_timers(db=db, incident_id=inc.id, kind="escalate")
        return _change(
            db,
            inc,
            actor,
            "acknowledged",
            {"via": via},
            ts,
            {"acknowledged_at": ts, "acknowledged_by": actor},
        )


def set_status(
    *,
    db: Database,
    ref: str | int,
    actor: str,
    status: str,
    note: str = "",
    now: datetime | None = None,
) -> Incident:
    ts = _now(now)
    status = choice(status, STATUSES, "status")
    with db.transaction():
        inc = get(db=db, ref=ref)
        _must_be_open(inc, f"move it to {status}")
        if status == inc.status:
            return inc
        if status == "closed" and inc.status != "resolved":
            raise ConflictError(
                f"{inc.ref} must be resolved before it is closed",
                hint=f"`opsbook incidents resolve {inc.ref}` first",
            )
        old, new = STATUSES.index(inc.status), STATUSES.index(status)
        if new < old and inc.status != "resolved":
            raise ConflictError(
                f"{inc.ref} cannot go back from {inc.status} to {status}",
                hint="statuses move forward: investigating → identified → monitoring → resolved",
            )
        sets: dict[str, Any] = {"status": status}
        if status in ("monitoring", "resolved") and not inc.mitigated_at:
            sets["mitigated_at"] = ts
        if status == "resolved":
            sets["resolved_at"] = ts
            if not inc.acknowledged_at:
                sets["acknowledged_at"], sets["acknowledged_by"] = ts, actor
            escalation.cancel_timers(db=db, incident_id=inc.id)
            # the end of the customer-impact window (opsbook.incidents.impact)
            escalation.add_timer(
                db=db, incident_id=inc.id, kind="snapshot_end", due=now_dt(now), now=ts
            )
        if status == "closed":
            sets["closed_at"] = ts
        if inc.status == "resolved" and status != "closed":  # reopened
            sets["resolved_at"] = None
        return _change(
            db,
            inc,
            actor,
            "status.changed",
            {"from": inc.status, "to": status, "note": note},
            ts,
            sets,
        )


def resolve(
    *, db: Database, ref: str | int, actor: str, note: str = "", now: datetime | None = None
) -> Incident:
    return set_status(db=db, ref=ref, actor=actor, status="resolved", note=note, now=now)


def close(
    *, db: Database, ref: str | int, actor: str, note: str = "", now: datetime | None = None
) -> Incident:
    return set_status(db=db, ref=ref, actor=actor, status="closed", note=note, now=now)


def change_severity(
    *,
    db: Database,
    ref: str | int,
    actor: str,
    severity: str,
    reason: str = "",
    now: datetime | None = None,
    contacts: Contacts | None = None,
) -> Incident:
    """Raise at once; lower at once for SEV3/SEV4; lowering a SEV1/SEV2 becomes a request
    that someone else approves (:func:`decide_downgrade`). With ``contacts``, the resolve
    target follows the new severity (opsbook.incidents.overdue.retarget)."""
    ts = _now(now)
    sev = severity_of(severity)
    with db.transaction():
        inc = get(db=db, ref=ref)
        _must_be_open(inc, "change its severity")
        if sev == inc.severity:
            return inc
        payload = {"from": inc.severity, "to": sev, "reason": reason}
        if rank(sev) > rank(inc.severity) and inc.severity in MAJOR:
            return _change(
                db,
                inc,
                actor,
                "severity.downgrade_requested",
                payload,
                ts,
                {"pending_severity": sev, "pending_by": actor, "pending_reason": reason},
            )
        out = _change(
            db,
            inc,
            actor,
            "severity.changed",
            payload,
            ts,
            {"severity": sev, "pending_severity": None, "pending_by": None},
        )
        _retarget(db, out, contacts, now)
        return out


def decide_downgrade(
    *,
    db: Database,
    ref: str | int,
    actor: str,
    approve: bool,
    comment: str = "",
    now: datetime | None = None,
    contacts: Contacts | None = None,
) -> Incident:
    """Four-eyes: the person who asked for the downgrade can never approve it."""
    ts = _now(now)
    first = get(db=db, ref=ref)
    if approve and first.pending_severity and actor == first.pending_by:
        # recorded outside the change's transaction: the refusal must survive the raise
        audit.record(
            db=db,
            actor=actor,
            action="incident.downgrade.denied",
            subject=first.ref,
            payload={"reason": "self-approval", "to": first.pending_severity},
        )
    with db.transaction():
        inc = get(db=db, ref=ref)
        if not inc.pending_severity:
            raise ConflictError(
                f"{inc.ref} has no severity downgrade waiting for approval",
                hint="ask for one with `incidents update --severity`",
            )
        if approve and actor == inc.pending_by:
            raise PermissionDenied(
                f"{actor} asked for this downgrade and cannot approve it (four-eyes)",
                hint="another person with incidents:manage must approve it",
            )
        payload = {
            "from": inc.severity,
            "to": inc.pending_severity,
            "requested_by": inc.pending_by,
            "comment": comment,
        }
        sets: dict[str, Any] = {
            "pending_severity": None,
            "pending_by": None,
            "pending_reason": None,
        }
        if approve:
            sets["severity"] = inc.pending_severity
        kind = "severity.downgrade_approved" if approve else "severity.downgrade_rejected"
        out = _change(db, inc, actor, kind, payload, ts, sets)
        _retarget(db, out, contacts, now)
        return out


def _retarget(db: Database, inc: Incident, contacts: Contacts | None, now: datetime | None) -> None:
    if contacts is not None:
        from opsbook.incidents.overdue import retarget  # noqa: PLC0415

        retarget(db=db, inc=inc, contacts=contacts, now=now_dt(now))


def assign(
    *, db: Database, ref: str | int, actor: str, role: str, person: str, now: datetime | None = None
) -> Incident:
    ts = _now(now)
    role = choice(role.replace("-", "_"), ROLES, "role")
    if not person.strip():
        raise ValidationError("name the person", field="person", hint="a username")
    with db.transaction():
        inc = get(db=db, ref=ref)
        _must_be_open(inc, "assign roles")
        roles = dict(inc.roles)
        if role == "sme":
            smes = (
                [*roles.get("sme", []), person]
                if person not in roles.get("sme", [])
                else roles.get("sme", [])
            )
            roles["sme"] = smes
        else:
            roles[role] = person
        return _change(
            db,
            inc,
            actor,
            "role.assigned",
            {"role": role, "person": person},
            ts,
            {"roles": json.dumps(roles)},
        )


def add_note(
    *,
    db: Database,
    ref: str | int,
    actor: str,
    text: str,
    kind: str = "note",
    now: datetime | None = None,
) -> Incident:
    """A note, evidence (log excerpt, metric snapshot) or an internal update."""
    if not text.strip():
        raise ValidationError("the note is empty", field="note", hint="write something")
    ts = _now(now)
    with db.transaction():
        inc = get(db=db, ref=ref)
        _must_be_open(inc, "add notes")
        add_event(db=db, incident_id=inc.id, actor=actor, kind=kind, payload={"text": text}, ts=ts)
        audit.record(
            db=db,
            actor=actor,
            action=f"incident.{kind}",
            subject=inc.ref,
            payload={"text": text},
            ts=ts,
        )
        return inc


def link_execution(
    *, db: Database, ref: str | int, actor: str, execution_id: str, procedure: str
) -> None:
    """Put a runbook execution on the incident's timeline (its journal events follow)."""
    ts = _now(None)
    with db.transaction():
        inc = get(db=db, ref=ref)
        db.execute(
            "INSERT INTO incident_executions (incident_id, execution_id, ref, started_by, ts)"
            " VALUES (?, ?, ?, ?, ?)",
            (inc.id, execution_id, procedure, actor, ts),
        )
        payload = {"execution": execution_id, "procedure": procedure}
        add_event(
            db=db, incident_id=inc.id, actor=actor, kind="execution.linked", payload=payload, ts=ts
        )
        audit.record(
            db=db, actor=actor, action="incident.execution", subject=inc.ref, payload=payload, ts=ts
        )
