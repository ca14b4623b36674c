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
from opsbook.incidents.model import Incident, fmt_ts, parse_ts
from opsbook.incidents.overdue import resolve_overdue

# The paging primitives live in .paging (below .overdue); callers keep using escalation.*.
from opsbook.incidents.paging import SYSTEM as SYSTEM  # noqa: PLC0414 - explicit re-export
from opsbook.incidents.paging import add_timer as add_timer  # noqa: PLC0414 - re-export
from opsbook.incidents.paging import cancel_timers as cancel_timers  # noqa: PLC0414 - re-export
from opsbook.incidents.paging import page_level as page_level  # noqa: PLC0414 - re-export
from opsbook.incidents.paging import page_message as page_message  # noqa: PLC0414 - re-export
from opsbook.incidents.policy import Policy


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


#: The claim of a due timer. On PostgreSQL a row another replica is firing (its transaction
#: open, or left open by a replica that froze mid-fire) is skipped, not waited for: waiting
#: would stall this replica's event loop until that session ends (ADR 0017 §6).
_CLAIM = {
    False: "UPDATE incident_timers SET state = 'fired', fired_by = ?, fired_at = ?"
    " WHERE id = ? AND state = 'pending'",
    True: "UPDATE incident_timers SET state = 'fired', fired_by = ?, fired_at = ?"
    " WHERE id = (SELECT id FROM incident_timers WHERE id = ? AND state = 'pending'"
    " FOR UPDATE SKIP LOCKED)",
}


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
        if not db.execute(_CLAIM[db.dialect == "postgresql"], (owner, ts, timer["id"])):
            return None
        inc = _load(db, int(timer["incident_id"]))
        ids: tuple[int, ...] = ()
        sp = policy.severity(inc.severity)
        if not inc.is_open or (timer["kind"] == "escalate" and inc.acknowledged_at):
            outcome = "skipped"
        elif timer["kind"] == "resolve":
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
