"""The outbox: queue pages in the caller's transaction, deliver them later exactly once.

``queue`` inserts a ``pending`` row. ``deliver_pending`` claims rows one by one with a
conditional UPDATE (``pending`` → ``sending``; only one process can win), tries the recipient's
channels in order with retries, records every attempt in ``notification_attempts``, and puts the
outcome on the incident's timeline and in the audit trail. A row left ``sending`` by a process
that died is marked ``unknown`` (never re-sent: a duplicate page is worse than a missing one,
and escalation pages the next level anyway).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from opsbook import audit
from opsbook.audit._log import utcnow
from opsbook.notify import channels as ch
from opsbook.notify.channels import DeliveryFailed, Message
from opsbook.timeline import add_event, fmt_ts, ref_of

if TYPE_CHECKING:
    import httpx

    from opsbook.db import Database
    from opsbook.notify.model import NotifySettings, Recipient

ACTOR = "system:notify"
STALE_AFTER = timedelta(minutes=5)


@dataclass(frozen=True)
class Delivery:
    notification_id: int
    recipient: str
    outcome: str  # sent | failed | skipped
    channel: str | None
    attempts: int


def queue(
    *,
    db: Database,
    recipient: Recipient,
    message: Message,
    kind: str,
    incident_id: int | None,
    level: str | None,
) -> int:
    return db.insert(
        "INSERT INTO notifications (incident_id, kind, level, recipient, message, state,"
        " created_at) VALUES (?, ?, ?, ?, ?, 'pending', ?)",
        (
            incident_id,
            kind,
            level,
            json.dumps(recipient.to_dict()),
            json.dumps(message.to_dict()),
            utcnow(),
        ),
    )


def _claim(db: Database, nid: int, owner: str) -> bool:
    with db.transaction():
        n = db.execute(
            "UPDATE notifications SET state = 'sending', claimed_by = ?, claimed_at = ?"
            " WHERE id = ? AND state = 'pending'",
            (owner, utcnow(), nid),
        )
    return n == 1


async def _attempt(
    *,
    client: httpx.AsyncClient,
    settings: NotifySettings,
    key: bytes,
    kind: str,
    target: str,
    msg: Message,
) -> None:
    t = settings.timeout
    if kind == "email":
        await ch.send_email(
            host=settings.smtp_host,
            port=settings.smtp_port,
            sender=settings.smtp_from,
            to=target,
            msg=msg,
            timeout=t,
            starttls=settings.smtp_starttls,
        )
    elif kind == "webhook":
        await ch.post_webhook(client=client, url=target, msg=msg, key=key, timeout=t)
    elif kind == "chat":
        await ch.post_chat(client=client, url=target, msg=msg, timeout=t)
    elif kind == "sms":
        await ch.send_sms(client=client, url=settings.sms_url, to=target, msg=msg, timeout=t)
    else:
        raise DeliveryFailed(f"unknown channel {kind}")


async def deliver_one(
    *,
    db: Database,
    row: dict[str, Any],
    settings: NotifySettings,
    key: bytes,
    client: httpx.AsyncClient,
    owner: str,
) -> Delivery | None:
    nid = int(row["id"])
    if not _claim(db, nid, owner):
        return None  # someone else has it
    recipient = json.loads(row["recipient"])
    msg = Message.from_dict(json.loads(row["message"]))
    attempts = 0
    errors: list[str] = []
    for channel in recipient["channels"]:
        for n in range(1, settings.retries + 2):
            attempts += 1
            t0 = time.perf_counter()
            try:
                await _attempt(
                    client=client,
                    settings=settings,
                    key=key,
                    kind=channel["kind"],
                    target=channel["target"],
                    msg=msg,
                )
            except DeliveryFailed as exc:
                error = str(exc)[:500]
                _record_attempt(db, nid, channel, n, "failed", error, t0)
                errors.append(f"{channel['kind']}: {error}")
                if n <= settings.retries:
                    await asyncio.sleep(settings.retry_delay)
                continue
            _record_attempt(db, nid, channel, n, "sent", None, t0)
            return _finish(db, row, recipient, "sent", channel["kind"], attempts, errors)
    outcome = "failed" if recipient["channels"] else "skipped"
    if not recipient["channels"]:
        errors.append("no channel: give the contact an email, chat or webhook in contacts.yaml")
    return _finish(db, row, recipient, outcome, None, attempts, errors)


def _record_attempt(
    db: Database,
    nid: int,
    channel: dict[str, str],
    n: int,
    outcome: str,
    error: str | None,
    t0: float,
) -> None:
    db.execute(
        "INSERT INTO notification_attempts (notification_id, ts, channel, target, attempt,"
        " outcome, error, duration_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            nid,
            utcnow(),
            channel["kind"],
            channel["target"],
            n,
            outcome,
            error,
            int((time.perf_counter() - t0) * 1000),
        ),
    )


def _finish(
    db: Database,
    row: dict[str, Any],
    recipient: dict[str, Any],
    outcome: str,
    channel: str | None,
    attempts: int,
    errors: list[str],
) -> Delivery:
    nid = int(row["id"])
    incident_id = row["incident_id"]
    payload = {
        "notification": nid,
        "kind": row["kind"],
        "recipient": recipient["key"],
        "name": recipient["name"],
        "level": row["level"],
        "channel": channel,
        "attempts": attempts,
        "errors": errors[-5:],
    }
    with db.transaction():
        now = utcnow()
        db.execute(
            "UPDATE notifications SET state = ?, channel = ?, finished_at = ? WHERE id = ?",
            (outcome, channel, now, nid),
        )
        if incident_id is not None:
            add_event(
                db=db,
                incident_id=int(incident_id),
                actor=ACTOR,
                kind=f"notification.{outcome}",
                payload=payload,
                ts=now,
            )
        audit.record(
            db=db,
            actor=ACTOR,
            action=f"notify.{outcome}",
            subject=ref_of(int(incident_id))
            if incident_id is not None
            else f"contact:{recipient['key']}",
            payload=payload,
        )
    return Delivery(nid, recipient["key"], outcome, channel, attempts)


async def deliver_pending(
    *,
    db: Database,
    settings: NotifySettings,
    key: bytes,
    owner: str,
    incident_id: int | None = None,
    ids: list[int] | None = None,
    concurrency: int = 16,
    limit: int = 500,
) -> list[Delivery]:
    """Deliver queued notifications (all, one incident's, or ``ids``); returns what this call
    delivered (rows another process claimed first are skipped)."""
    import httpx  # noqa: PLC0415

    sql = "SELECT * FROM notifications WHERE state = 'pending'"
    args: list[Any] = []
    if incident_id is not None:
        sql += " AND incident_id = ?"
        args.append(incident_id)
    if ids is not None:
        if not ids:
            return []
        sql += f" AND id IN ({', '.join('?' for _ in ids)})"
        args.extend(ids)
    rows = db.query(sql + " ORDER BY id LIMIT ?", (*args, limit))
    if not rows:
        return []
    sem = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(trust_env=False) as client:

        async def one(row: dict[str, Any]) -> Delivery | None:
            async with sem:
                return await deliver_one(
                    db=db, row=row, settings=settings, key=key, client=client, owner=owner
                )

        done = await asyncio.gather(*(one(r) for r in rows))
    return [d for d in done if d is not None]


def mark_stale(*, db: Database, now: datetime | None = None) -> int:
    """Rows left ``sending`` by a process that died become ``unknown`` (not re-sent)."""
    cutoff = fmt_ts((now or datetime.now(UTC)) - STALE_AFTER)
    rows = db.query(
        "SELECT id, incident_id FROM notifications WHERE state = 'sending' AND claimed_at < ?",
        (cutoff,),
    )
    for r in rows:
        with db.transaction():
            if (
                db.execute(
                    "UPDATE notifications SET state = 'unknown' WHERE id = ? AND state = 'sending'",
                    (r["id"],),
                )
                and r["incident_id"] is not None
            ):
                add_event(
                    db=db,
                    incident_id=int(r["incident_id"]),
                    actor=ACTOR,
                    kind="notification.unknown",
                    payload={"notification": r["id"]},
                )
    return len(rows)
