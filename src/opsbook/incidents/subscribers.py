"""Status page subscribers: email addresses that receive the published customer-facing updates.

Stored without a new table: a subscription is a row of ``notifications`` with
``kind = 'subscription'`` and ``state = 'active'`` (never ``pending``, so the outbox never
sends it), ``level = 'subscribers'`` and the subscriber as its recipient (one email channel).
When the incident commander publishes an update (opsbook.incidents.comms.approve_update), one
``kind = 'update'`` notification per subscriber is queued in the same transaction and delivered
by the outbox like every page: claimed once, retried, every attempt recorded.
No confirmation round-trip (the issue does not ask for one); the same address twice is one
subscription.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import TYPE_CHECKING, Any

from opsbook import audit
from opsbook.audit._log import utcnow
from opsbook.errors import ConflictError, ValidationError
from opsbook.incidents.contacts import Channel, Recipient
from opsbook.notify.channels import Message

if TYPE_CHECKING:
    from opsbook.db import Database
    from opsbook.incidents.model import Incident

LEVEL = "subscribers"
MAX_SUBSCRIBERS = 10_000  # the endpoint is public and unconfirmed: a ceiling on abuse
_EMAIL = re.compile(r"^[^@\s<>,;\"']+@[^@\s<>,;\"']+\.[^@\s<>,;\"'.]+$")


def normalise_email(text: str) -> str:
    email = str(text).strip().lower()
    if len(email) > 254 or not _EMAIL.match(email):
        raise ValidationError(
            f"{text!r} is not an email address" if text.strip() else "give an email address",
            field="email",
            hint="write it like name@example.com",
        )
    return email


def email_of_json(body: bytes) -> str:
    """``{"email": …}`` from a JSON body ("" when it is not one)."""
    if len(body) > 4096:
        return ""
    try:
        data = json.loads(body)
    except ValueError:
        return ""
    return str(data.get("email", ""))[:320] if isinstance(data, dict) else ""


def recipient_of(email: str) -> Recipient:
    key = "subscriber-" + hashlib.sha256(email.encode()).hexdigest()[:12]
    return Recipient(key, email, LEVEL, (Channel("email", email),))


def subscribe(*, db: Database, email: str, source: str = "status-page") -> bool:
    """Store ``email``; False when it was already subscribed (nothing changes)."""
    address = normalise_email(email)
    who = recipient_of(address)
    recipient = json.dumps(who.to_dict())
    with db.transaction():
        if db.one(
            "SELECT id FROM notifications WHERE kind = 'subscription' AND recipient = ?",
            (recipient,),
        ):
            return False
        count = db.one(
            "SELECT COUNT(*) AS n FROM notifications WHERE kind = 'subscription'"
            " AND state = 'active'"
        )
        if count is not None and int(count["n"]) >= MAX_SUBSCRIBERS:
            raise ConflictError(
                "the status page has too many subscribers",
                hint="ask the operations team to clear old subscriptions",
            )
        marker = Message(subject="status page subscription", text=source, event="status.subscribe")
        db.insert(
            "INSERT INTO notifications (incident_id, kind, level, recipient, message, state,"
            " created_at) VALUES (NULL, 'subscription', ?, ?, ?, 'active', ?)",
            (LEVEL, recipient, json.dumps(marker.to_dict()), utcnow()),
        )
        audit.record(
            db=db,
            actor=f"public:{source}",
            action="status.subscribe",
            subject=f"contact:{who.key}",
            payload={"source": source},
        )
    return True


def subscribers(*, db: Database) -> list[Recipient]:
    rows = db.query(
        "SELECT recipient FROM notifications WHERE kind = 'subscription' AND state = 'active'"
        " ORDER BY id"
    )
    out = []
    for r in rows:
        d: dict[str, Any] = json.loads(r["recipient"])
        out.append(recipient_of(str(d["name"])))
    return out


def queue_update(
    *,
    db: Database,
    incident: Incident,
    text: str,
    services: dict[str, str],
    status_url: str,
) -> tuple[int, ...]:
    """Queue the published update to every subscriber (in the caller's transaction)."""
    from opsbook.notify import deliver  # noqa: PLC0415

    names = ", ".join(services.get(s, s) for s in incident.services) or "our services"
    msg = Message(
        subject=f"Service status update: incident affecting {names}",
        text=f"{text}\n\nStatus: {incident.status}. Current status: {status_url}",
        event="incident.update",
    )
    return tuple(
        deliver.queue(
            db=db, recipient=r, message=msg, kind="update", incident_id=incident.id, level=LEVEL
        )
        for r in subscribers(db=db)
    )
