"""Paging and durable escalation timers.

Timers live in ``incident_timers``. A timer is fired by a conditional UPDATE (``pending`` →
``fired``) in the same transaction as everything it causes (pages queued in the outbox, the
timeline event, the audit record, the next timer), so a crash before commit leaves it pending
for the next process and two processes can never both fire it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from opsbook import audit
from opsbook.db import Database
from opsbook.incidents._events import add_event
from opsbook.incidents.contacts import Contacts
from opsbook.incidents.links import ack_url
from opsbook.incidents.model import Incident, fmt_ts, parse_ts
from opsbook.incidents.policy import Policy
from opsbook.notify import deliver
from opsbook.notify.channels import Message

SYSTEM = "system:escalation"


@dataclass(frozen=True)
class Fired:
    timer_id: int
    incident_id: int
    kind: str
    due_at: str
    fired_at: str
    outcome: str  # paged:<level> | repeated:<level> | exhausted | reminded | skipped
    #              | resolve:<level> (resolve target passed) | postponed (severity lowered)
    notifications: tuple[int, ...] = ()

    @property
    def lateness(self) -> float:
        return (parse_ts(self.fired_at) - parse_ts(self.due_at)).total_seconds()


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


def start(
    *,
    db: Database,
    incident: Incident,
    policy: Policy,
    contacts: Contacts,
    key: bytes,
    actor: str,
    now: datetime,
) -> tuple[int, ...]:
    """Activation at declaration: page the severity's levels, arm the ack and update timers."""
    sp = policy.severity(incident.severity)
    ts = fmt_ts(now)
    ids: list[int] = []
    for level in sp.page:
        ids.extend(
            page_level(
                db=db,
                incident=incident,
                level=level,
                contacts=contacts,
                policy=policy,
                key=key,
                actor=actor,
                ts=ts,
                reason=f"{incident.severity} declared: {level} is paged at once",
            )
        )
    last = sp.page[-1]
    names = [lv.name for lv in contacts.levels]
    db.execute("UPDATE incidents SET level = ? WHERE id = ?", (names.index(last), incident.id))
    add_timer(
        db=db,
        incident_id=incident.id,
        kind="escalate",
        level=names.index(last),
        due=now + timedelta(seconds=sp.ack_target),
        now=ts,
    )
    add_timer(
        db=db,
        incident_id=incident.id,
        kind="update_reminder",
        due=now + timedelta(seconds=sp.update_every),
        now=ts,
    )
    add_timer(db=db, incident_id=incident.id, kind="snapshot_start", due=now, now=ts)
    target = contacts.resolve_timeout.get(incident.severity)
    if target:  # one-shot: not resolved by then, the next level is paged once
        add_timer(
            db=db,
            incident_id=incident.id,
            kind="resolve",
            due=now + timedelta(seconds=target),
            now=ts,
        )
    return tuple(ids)


def _load(db: Database, incident_id: int) -> Incident:
    row = db.one("SELECT * FROM incidents WHERE id = ?", (incident_id,))
    assert row is not None
    return Incident.from_row(row)


def fire(
    *,
    db: Database,
    timer: dict[str, Any],
    policy: Policy,
    contacts: Contacts,
    key: bytes,
    owner: str,
    now: datetime | None = None,
) -> Fired | None:
    """Fire one due timer; None when another process fired (or someone cancelled) it first."""
    when = now or datetime.now(UTC)
    ts = fmt_ts(when)
    with db.transaction():
        if not db.execute(
            "UPDATE incident_timers SET state = 'fired', fired_by = ?, fired_at = ?"
            " WHERE id = ? AND state = 'pending'",
            (owner, ts, timer["id"]),
        ):
            return None
        inc = _load(db, int(timer["incident_id"]))
        ids: tuple[int, ...] = ()
        sp = policy.severity(inc.severity)
        if not inc.is_open or (timer["kind"] == "escalate" and inc.acknowledged_at):
            outcome = "skipped"
        elif timer["kind"] == "resolve":
            from opsbook.incidents.overdue import resolve_overdue  # noqa: PLC0415

            outcome, ids = resolve_overdue(
                db=db,
                timer_id=int(timer["id"]),
                inc=inc,
                policy=policy,
                contacts=contacts,
                key=key,
                when=when,
            )
        elif timer["kind"] == "escalate":
            names = [lv.name for lv in contacts.levels]
            current = names[min(int(timer["level"]), len(names) - 1)]
            nxt = contacts.next_level(current)
            why = f"not acknowledged within {sp.ack_target:g}s"
            if nxt is not None:
                outcome, target, attempt = f"paged:{nxt}", nxt, 0
            elif int(timer["attempt"]) < contacts.repeat:
                outcome, target, attempt = f"repeated:{current}", current, int(timer["attempt"]) + 1
                why += f" (repeat {attempt} of {contacts.repeat})"
            else:
                outcome, target, attempt = "exhausted", "", 0
            if target:
                ids = page_level(
                    db=db,
                    incident=inc,
                    level=target,
                    contacts=contacts,
                    policy=policy,
                    key=key,
                    reason=why,
                    actor=SYSTEM,
                    ts=ts,
                )
                db.execute(
                    "UPDATE incidents SET level = ?, updated_at = ? WHERE id = ?",
                    (names.index(target), ts, inc.id),
                )
                add_timer(
                    db=db,
                    incident_id=inc.id,
                    kind="escalate",
                    level=names.index(target),
                    attempt=attempt,
                    due=when + timedelta(seconds=sp.ack_target),
                    now=ts,
                )
            else:
                add_event(
                    db=db,
                    incident_id=inc.id,
                    actor=SYSTEM,
                    kind="escalation.exhausted",
                    ts=ts,
                    payload={"level": current, "reason": why},
                )
        else:
            outcome = "reminded"
            add_event(
                db=db,
                incident_id=inc.id,
                actor=SYSTEM,
                kind="update.due",
                ts=ts,
                payload={"every_s": sp.update_every, "commander": inc.roles.get("commander")},
            )
            add_timer(
                db=db,
                incident_id=inc.id,
                kind="update_reminder",
                due=when + timedelta(seconds=sp.update_every),
                now=ts,
            )
        audit.record(
            db=db,
            actor=SYSTEM,
            action=f"incident.timer.{timer['kind']}",
            subject=inc.ref,
            ts=ts,
            payload={
                "timer": timer["id"],
                "due_at": timer["due_at"],
                "outcome": outcome,
                "notifications": list(ids),
                "by": owner,
            },
        )
    return Fired(
        int(timer["id"]), inc.id, str(timer["kind"]), str(timer["due_at"]), ts, outcome, ids
    )


def due_timers(
    *, db: Database, now: datetime | None = None, limit: int = 500
) -> list[dict[str, Any]]:
    return db.query(
        "SELECT * FROM incident_timers WHERE state = 'pending' AND due_at <= ?"
        " AND kind NOT IN ('snapshot_start', 'snapshot_end')"  # opsbook.incidents.impact
        " ORDER BY due_at, id LIMIT ?",
        (fmt_ts(now or datetime.now(UTC)), limit),
    )


def fire_due(
    *,
    db: Database,
    policy: Policy,
    contacts: Contacts,
    key: bytes,
    owner: str,
    limit: int = 500,
) -> list[Fired]:
    out = []
    for timer in due_timers(db=db, limit=limit):
        fired = fire(db=db, timer=timer, policy=policy, contacts=contacts, key=key, owner=owner)
        if fired is not None:
            out.append(fired)
    return out


def next_due(*, db: Database) -> str | None:
    row = db.one("SELECT MIN(due_at) AS due FROM incident_timers WHERE state = 'pending'")
    return str(row["due"]) if row and row["due"] else None
