"""Test pages and the record of notifications (``opsbook notify``)."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

from opsbook import audit
from opsbook.db import Database
from opsbook.incidents.config import IncidentConfig
from opsbook.incidents.model import id_of
from opsbook.notify import deliver
from opsbook.notify.channels import Message


def send_test(*, db: Database, config: IncidentConfig, contact: str, actor: str) -> dict[str, Any]:
    """Send a test page to ``contact`` now; returns the outcome and every attempt."""
    r = config.contacts.recipient(contact)
    msg = Message(
        subject="[TEST] opsbook test page",
        text=f"Test page for {r.name} ({r.level}) requested by {actor}. No action needed.",
        event="notify.test",
    )
    with db.transaction():
        nid = deliver.queue(
            db=db, recipient=r, message=msg, kind="test", incident_id=None, level=r.level
        )
        audit.record(
            db=db,
            actor=actor,
            action="notify.test",
            subject=f"contact:{r.key}",
            payload={"notification": nid, "level": r.level},
        )
    done = asyncio.run(
        deliver.deliver_pending(
            db=db,
            settings=config.policy.notify,
            key=config.webhook_key,
            owner=f"cli:{os.getpid()}",
            ids=[nid],
        )
    )
    outcome = done[0] if done else None
    return {
        "notification": nid,
        "recipient": r.key,
        "outcome": outcome.outcome if outcome else "unknown",
        "channel": outcome.channel if outcome else None,
        "attempts": attempts(db=db, notification_id=nid),
    }


def attempts(*, db: Database, notification_id: int) -> list[dict[str, Any]]:
    return db.query(
        "SELECT ts, channel, target, attempt, outcome, error, duration_ms"
        " FROM notification_attempts WHERE notification_id = ? ORDER BY id",
        (notification_id,),
    )


def list_notifications(
    *, db: Database, incident: str | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    sql, args = "SELECT * FROM notifications WHERE kind != 'subscription'", []
    if incident:
        sql += " AND incident_id = ?"
        args.append(id_of(incident))
    rows = db.query(sql + " ORDER BY id DESC LIMIT ?", (*args, limit))
    out = []
    for n in rows:
        recipient = json.loads(n["recipient"])
        out.append(
            {
                "id": n["id"],
                "incident": f"INC-{n['incident_id']}" if n["incident_id"] is not None else None,
                "kind": n["kind"],
                "level": n["level"],
                "recipient": recipient["key"],
                "state": n["state"],
                "channel": n["channel"],
                "created_at": n["created_at"],
                "finished_at": n["finished_at"],
                "attempts": attempts(db=db, notification_id=int(n["id"])),
            }
        )
    return out
