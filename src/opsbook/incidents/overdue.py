"""The resolve target (``contacts.yaml`` ``escalation_policy.resolve_timeout``): an incident
not resolved within its severity's target pages the next escalation level, once.

The timer is armed at declaration (opsbook.incidents.escalation.start) as an
``incident_timers`` row of kind ``resolve`` and fired like the acknowledgement timers (a
conditional UPDATE in the same transaction as the pages), so it survives restarts and never
fires twice; it is never re-armed after it pages. Resolving cancels it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from opsbook.db import Database
from opsbook.incidents.contacts import Contacts
from opsbook.incidents.model import Incident, fmt_ts, parse_ts
from opsbook.incidents.paging import SYSTEM, add_timer, cancel_timers, page_level
from opsbook.incidents.policy import Policy


def resolve_overdue(
    *,
    db: Database,
    timer_id: int,
    inc: Incident,
    policy: Policy,
    contacts: Contacts,
    key: bytes,
    when: datetime,
) -> tuple[str, tuple[int, ...]]:
    """The resolve target passed: page the level after the current one (the last level when
    there is none) once. A timer armed for a severity since lowered (by a caller that did not
    :func:`retarget`) is moved to the lower severity's later target; it pages at most once."""
    ts = fmt_ts(when)
    target_s = contacts.resolve_timeout.get(inc.severity)
    if target_s is None:
        return "skipped", ()
    due = parse_ts(inc.declared_at) + timedelta(seconds=target_s)
    if due > when + timedelta(seconds=1):
        add_timer(db=db, incident_id=inc.id, kind="resolve", due=due, now=ts)
        return "postponed", ()
    names = [lv.name for lv in contacts.levels]
    current = names[min(inc.level, len(names) - 1)]
    level = contacts.next_level(current) or current
    ids = page_level(
        db=db,
        incident=inc,
        level=level,
        contacts=contacts,
        policy=policy,
        key=key,
        reason=f"not resolved within {_span(target_s)} (the {inc.severity} resolve target)",
        actor=SYSTEM,
        ts=ts,
    )
    db.execute(
        "UPDATE incidents SET level = ?, updated_at = ? WHERE id = ?",
        (max(names.index(level), inc.level), ts, inc.id),
    )
    # attempt = 1 marks the resolve timer that paged: retarget() never arms another
    db.execute("UPDATE incident_timers SET attempt = 1 WHERE id = ?", (timer_id,))
    return f"resolve:{level}", ids


def retarget(*, db: Database, inc: Incident, contacts: Contacts, now: datetime) -> None:
    """After a severity change (in the caller's transaction): the resolve target becomes the
    new severity's, counted from declaration (a raise can make it due at once). Nothing
    changes once the resolve page went out (never twice) or the incident is not open."""
    if not inc.is_open or db.one(
        "SELECT id FROM incident_timers WHERE incident_id = ? AND kind = 'resolve' AND attempt = 1",
        (inc.id,),
    ):
        return
    target = contacts.resolve_timeout.get(inc.severity)
    pending = db.one(
        "SELECT id FROM incident_timers WHERE incident_id = ? AND kind = 'resolve'"
        " AND state = 'pending'",
        (inc.id,),
    )
    if target is None:
        if pending:
            cancel_timers(db=db, incident_id=inc.id, kind="resolve")
        return
    due = parse_ts(inc.declared_at) + timedelta(seconds=target)
    if pending:
        db.execute(
            "UPDATE incident_timers SET due_at = ? WHERE id = ? AND state = 'pending'",
            (fmt_ts(due), pending["id"]),
        )
    else:
        add_timer(db=db, incident_id=inc.id, kind="resolve", due=due, now=fmt_ts(now))


def _span(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"
