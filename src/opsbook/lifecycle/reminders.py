"""Owners reminded of what the update process asks of them (issue 15): runbook reviews that are
overdue or due soon, emergency procedures due for their quarterly drill, and certifications
expired or expiring soon (under the owner ``training``).

One message a day per owner lists everything that owner has due. The day is claimed in
``schedule_claims`` (ref ``reminder:<owner>``, due_at the date) before the message is queued, so
several ``opsbook serve`` replicas, or ``opsbook changes remind`` run by cron beside a server,
send it once. The message goes through the notification queue (the channels of
``incident_policy.yaml``), to the contacts ``[changes] owner_contacts`` names for the owner
(``"platform-engineering=platform-engineering-lead"``), else to a contact whose key is the
owner's name, else to ``[changes] reminder_contacts`` (default: the Operations Lead).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from opsbook import audit
from opsbook.errors import DatabaseError
from opsbook.lifecycle.changes_config import load_settings
from opsbook.lifecycle.reviews_due import drills_due, reviews_due

if TYPE_CHECKING:
    from opsbook.db import Database
    from opsbook.incidents.contacts import Contacts, Recipient
    from opsbook.notify.deliver import Delivery
    from opsbook.workspace import Workspace

ACTOR = "system:lifecycle"
#: The owner certifications due for renewal are reminded under (map it in owner_contacts).
TRAINING_OWNER = "training"
KIND = "runbook.reminder"


@dataclass(frozen=True)
class Reminder:
    owner: str
    recipients: tuple[str, ...]  # contact keys
    items: tuple[str, ...]  # one line each: what is due
    state: str  # queued | already-sent | no-recipient | would-send (dry run)
    notifications: tuple[int, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "owner": self.owner,
            "recipients": list(self.recipients),
            "items": list(self.items),
            "state": self.state,
            "notifications": list(self.notifications),
        }


def due_items(
    *, db: Database, workspace: Workspace, today: date | None = None
) -> dict[str, list[str]]:
    """What each owner has due today: reviews overdue or due soon, drills never done, overdue
    or due soon (runbooks without a review cadence are left to ``opsbook changes due``)."""
    day = today or datetime.now(UTC).date()
    now = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
    out: dict[str, list[str]] = {}
    for r in reviews_due(db=db, workspace=workspace, today=day):
        if r.status not in ("overdue", "due-soon") or r.days_left is None:
            continue
        when = f"{-r.days_left} days overdue" if r.days_left < 0 else f"due in {r.days_left} days"
        out.setdefault(r.owner, []).append(
            f"review runbook {r.runbook_id} ({r.title}): {when}, due {r.due}"
            + (f"; change {r.open_change} is open" if r.open_change else "")
        )
    for d in drills_due(db=db, workspace=workspace, now=now):
        what = (
            "never drilled"
            if d.status == "never"
            else f"last drilled {(d.last_drill or '')[:10]}, due {d.due}"
        )
        out.setdefault(d.owner, []).append(f"drill {d.ref} ({d.title}): {what}")
    for c in _certifications_due(db=db, workspace=workspace, now=now):
        when = "expired" if c.status == "expired" else "expires"
        out.setdefault(TRAINING_OWNER, []).append(
            f"recertify {c.person} in {c.area}: {when} {c.expires_at[:10]}"
            f" (opsbook training assess --area {c.area})"
        )
    return out


def _certifications_due(*, db: Database, workspace: Workspace, now: datetime) -> list[Any]:
    from opsbook.lifecycle.certifications import due  # noqa: PLC0415
    from opsbook.lifecycle.training_config import load_training  # noqa: PLC0415

    return due(db=db, config=load_training(workspace), now=now)


def recipients_for(
    owner: str, *, contacts: Contacts, owner_contacts: tuple[str, ...], fallback: tuple[str, ...]
) -> list[Recipient]:
    from opsbook.errors import NotFoundError  # noqa: PLC0415

    mapped = [
        pair.split("=", 1)[1].strip()
        for pair in owner_contacts
        if "=" in pair and pair.split("=", 1)[0].strip() == owner
    ]
    for keys in (mapped, [owner], list(fallback)):
        found = []
        for key in keys:
            try:
                found.append(contacts.recipient(key))
            except NotFoundError:
                continue
        if found:
            return found
    return []


def send_reminders(
    *,
    db: Database,
    workspace: Workspace,
    today: date | None = None,
    dry_run: bool = False,
    actor: str = ACTOR,
) -> list[Reminder]:
    """Queue today's reminder for each owner with something due (once a day per owner)."""
    from opsbook.incidents.config import load_config  # noqa: PLC0415
    from opsbook.notify.channels import Message  # noqa: PLC0415
    from opsbook.notify.deliver import queue  # noqa: PLC0415

    day = today or datetime.now(UTC).date()
    settings = load_settings(workspace)
    contacts = load_config(workspace).contacts
    out: list[Reminder] = []
    for owner, items in sorted(due_items(db=db, workspace=workspace, today=day).items()):
        people = recipients_for(
            owner,
            contacts=contacts,
            owner_contacts=settings.owner_contacts,
            fallback=settings.reminder_contacts,
        )
        keys = tuple(p.key for p in people)
        if not people:
            out.append(Reminder(owner, keys, tuple(items), "no-recipient"))
            continue
        if dry_run:
            out.append(Reminder(owner, keys, tuple(items), "would-send"))
            continue
        try:  # the claim commits on its own: a replica that loses it sends nothing
            db.execute(
                "INSERT INTO schedule_claims (ref, due_at, claimed_by) VALUES (?, ?, ?)",
                (f"reminder:{owner}", day.isoformat(), actor),
            )
        except DatabaseError:
            out.append(Reminder(owner, keys, tuple(items), "already-sent"))
            continue
        with db.transaction():
            n = len(items)
            message = Message(
                subject=f"opsbook: {n} runbook task{'s' if n != 1 else ''} due for {owner}",
                text="\n".join(
                    [
                        f"Runbook reminders for {owner} ({day.isoformat()}):",
                        *(f"- {line}" for line in items),
                        "",
                        "See them with `opsbook changes due` and `opsbook changes drills-due`;"
                        " start a review with `opsbook changes propose RUNBOOK`.",
                    ]
                ),
                event=KIND,
            )
            ids = tuple(
                queue(
                    db=db,
                    recipient=p,
                    message=message,
                    kind=KIND,
                    incident_id=None,
                    level=p.level,
                )
                for p in people
            )
            audit.record(
                db=db,
                actor=actor,
                action="lifecycle.reminder.queued",
                subject=f"owner:{owner}",
                payload={"day": day.isoformat(), "recipients": list(keys), "items": items},
            )
        out.append(Reminder(owner, keys, tuple(items), "queued", ids))
    return out


def deliver_now(*, db: Database, workspace: Workspace, ids: tuple[int, ...]) -> list[Delivery]:
    """Send queued reminders now (the CLI; ``opsbook serve``'s outbox loop sends them itself)."""
    import asyncio  # noqa: PLC0415
    import os  # noqa: PLC0415

    from opsbook.incidents.config import load_config  # noqa: PLC0415
    from opsbook.notify.deliver import deliver_pending  # noqa: PLC0415

    if not ids:
        return []
    config = load_config(workspace)
    return asyncio.run(
        deliver_pending(
            db=db,
            settings=config.policy.notify,
            key=config.webhook_key,
            owner=f"cli:{os.getpid()}",
            ids=list(ids),
        )
    )
