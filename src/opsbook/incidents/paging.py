"""Pages and timer rows, the primitives escalation and the resolve target share: queue a page
to every recipient of a level (in the caller's transaction) and add or cancel
``incident_timers`` rows. Below :mod:`.escalation` and :mod:`.overdue`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from opsbook.db import Database
from opsbook.incidents._events import add_event
from opsbook.incidents.contacts import Contacts
from opsbook.incidents.links import ack_url
from opsbook.incidents.model import Incident, fmt_ts
from opsbook.incidents.policy import Policy
from opsbook.notify import deliver
from opsbook.notify.channels import Message

#: The actor of everything the timers do.
SYSTEM = "system:escalation"


def page_message(incident: Incident, *, reason: str) -> Message:
    services = ", ".join(incident.services) or "no service named"
    return Message(
        subject=f"[{incident.severity}] {incident.ref} {incident.title}",
        text=(
            f"{incident.ref} {incident.severity} {incident.type} ({incident.status}): "
            f"{incident.title}\nServices: {services}\nWhy you: {reason}"
            + (f"\n{incident.summary}" if incident.summary else "")
            + ("\nThis is a DRILL." if incident.drill else "")
        ),
        event="incident.page",
        incident={
            "ref": incident.ref,
            "title": incident.title,
            "severity": incident.severity,
            "status": incident.status,
            "type": incident.type,
            "services": list(incident.services),
            "drill": incident.drill,
        },
    )


def page_level(
    *,
    db: Database,
    incident: Incident,
    level: str,
    contacts: Contacts,
    policy: Policy,
    key: bytes,
    reason: str,
    actor: str,
    ts: str,
) -> tuple[int, ...]:
    """Queue a page to everyone at ``level`` (in the caller's transaction)."""
    lv = contacts.level(level)
    base = page_message(incident, reason=reason)
    ids = []
    for r in lv.recipients:
        msg = Message(
            subject=base.subject,
            text=base.text,
            event=base.event,
            incident=base.incident,
            ack_url=ack_url(
                base=policy.notify.public_url, key=key, incident_id=incident.id, who=r.key
            ),
        )
        ids.append(
            deliver.queue(
                db=db, recipient=r, message=msg, kind="page", incident_id=incident.id, level=level
            )
        )
    add_event(
        db=db,
        incident_id=incident.id,
        actor=actor,
        kind="escalation.paged",
        ts=ts,
        payload={
            "level": level,
            "title": lv.title,
            "reason": reason,
            "recipients": [r.key for r in lv.recipients],
        },
    )
    return tuple(ids)


def add_timer(
    *,
    db: Database,
    incident_id: int,
    kind: str,
    due: datetime,
    level: int = 0,
    attempt: int = 0,
    now: str,
) -> int:
    return db.insert(
        "INSERT INTO incident_timers (incident_id, kind, due_at, level, attempt, state,"
        " created_at) VALUES (?, ?, ?, ?, ?, 'pending', ?)",
        (incident_id, kind, fmt_ts(due), level, attempt, now),
    )


def cancel_timers(*, db: Database, incident_id: int, kind: str | None = None) -> int:
    sql = (
        "UPDATE incident_timers SET state = 'cancelled' WHERE incident_id = ? AND state = 'pending'"
    )
    args: list[Any] = [incident_id]
    if kind:
        sql += " AND kind = ?"
        args.append(kind)
    return db.execute(sql, args)
