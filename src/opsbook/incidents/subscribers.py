"""Status page subscribers: email addresses that receive the published customer-facing updates,
with double opt-in (issue 16 §4: 9,500 anonymous sign-ups in a minute filled a global cap and
locked out a real customer, and every update would have mailed the fake addresses).

``subscribe`` stores a ``pending`` row in ``status_subscribers`` and queues a confirmation mail
(a ``kind = 'subscription'`` notification, sent by the outbox like every page) with a link
signed by the workspace key: ``/status/confirm?t=TOKEN``. Following it makes the row
``confirmed``. Only confirmed addresses are mailed updates; a pending one expires after
:data:`PENDING_TTL` and is deleted.

Abuse limits never touch confirmed subscribers: a client address keeps at most
:data:`PENDING_PER_CLIENT` pending entries and the whole table :data:`PENDING_MAX`; past either,
the oldest pending entries go first. The answer is the same whether the address was new,
pending or confirmed (no enumeration); a confirmation mail goes to one address at most once per
:data:`RESEND_AFTER`. The per-client request rate is the web adapter's (opsbook.users.throttle).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from opsbook import audit
from opsbook.errors import PermissionDenied, ValidationError
from opsbook.incidents.contacts import Channel, Recipient
from opsbook.incidents.model import fmt_ts, parse_ts
from opsbook.notify.channels import Message

if TYPE_CHECKING:
    from opsbook.db import Database
    from opsbook.incidents.model import Incident

LEVEL = "subscribers"
PENDING_TTL = timedelta(hours=24)
RESEND_AFTER = timedelta(minutes=15)
PENDING_PER_CLIENT = 20
PENDING_MAX = 5_000
_EMAIL = re.compile(r"^[^@\s<>,;\"']+@[^@\s<>,;\"']+\.[^@\s<>,;\"'.]+$")
_PURPOSE = b"opsbook status subscription\x00"  # so no other signed token can stand in


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


# -- the signed confirmation link --------------------------------------------------------------
def _mac(key: bytes, text: str) -> str:
    return hmac.new(key, _PURPOSE + text.encode(), hashlib.sha256).hexdigest()


def make_token(*, key: bytes, subscriber_id: int, email: str, expires: datetime) -> str:
    body = json.dumps(
        {"s": subscriber_id, "m": email, "e": int(expires.timestamp())}, separators=(",", ":")
    )
    text = base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")
    return f"{text}.{_mac(key, text)}"


def _bad_link() -> PermissionDenied:
    return PermissionDenied(
        "this confirmation link is not valid or has expired",
        hint="subscribe again on the status page and follow the link in the newest email",
    )


def _claim(*, key: bytes, token: str, now: datetime) -> tuple[int, str]:
    text, _, mac = token.partition(".")
    if not mac or not hmac.compare_digest(_mac(key, text), mac):
        raise _bad_link()
    try:
        data = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        sid, email, expires = int(data["s"]), str(data["m"]), int(data["e"])
    except (ValueError, KeyError, TypeError) as exc:
        raise _bad_link() from exc
    if expires < now.timestamp():
        raise _bad_link()
    return sid, email


# -- the signed unsubscribe link (in every update) ---------------------------------------------
_UNSUBSCRIBE = b"opsbook status unsubscribe\x00"  # a confirmation token cannot stand in


def unsubscribe_token(*, key: bytes, email: str) -> str:
    """A link token for ``email`` that does not expire (unsubscribing must always work)."""
    text = base64.urlsafe_b64encode(email.encode()).decode().rstrip("=")
    mac = hmac.new(key, _UNSUBSCRIBE + text.encode(), hashlib.sha256).hexdigest()
    return f"{text}.{mac}"


def unsubscribe_link(*, key: bytes, email: str, public_url: str) -> str:
    return (
        f"{public_url.rstrip('/')}/status/unsubscribe?t={unsubscribe_token(key=key, email=email)}"
    )


def email_of_unsubscribe_token(*, key: bytes, token: str) -> str:
    """The address an unsubscribe link is for, or PermissionDenied for a forged one."""
    text, _, mac = token[:800].partition(".")
    want = hmac.new(key, _UNSUBSCRIBE + text.encode(), hashlib.sha256).hexdigest()
    if not mac or not hmac.compare_digest(want, mac):
        raise PermissionDenied(
            "this unsubscribe link is not valid",
            hint="use the link in the newest update email, or ask us to remove the address",
        )
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
    except ValueError as exc:
        raise PermissionDenied("this unsubscribe link is not valid") from exc


def unsubscribe(*, db: Database, key: bytes, token: str) -> str:
    """Follow an unsubscribe link: the address gets no more updates (again is fine; a
    pending subscription of the address goes too). Returns the address."""
    email = email_of_unsubscribe_token(key=key, token=token)
    with db.transaction():
        removed = db.execute("DELETE FROM status_subscribers WHERE email = ?", (email,))
        if removed:
            audit.record(
                db=db,
                actor="public:status-page",
                action="status.unsubscribed",
                subject=f"contact:{recipient_of(email).key}",
                payload={"removed": removed},
            )
    return email


# -- operations ---------------------------------------------------------------------------------
def _expire(db: Database, now: datetime) -> None:
    db.execute(
        "DELETE FROM status_subscribers WHERE state = 'pending' AND expires_at <= ?",
        (fmt_ts(now),),
    )


_TRIM = (
    "DELETE FROM status_subscribers WHERE id IN (SELECT id FROM status_subscribers"
    " WHERE state = 'pending'{} ORDER BY id DESC LIMIT 1000000000 OFFSET ?)"
)
_TRIM_ALL, _TRIM_CLIENT = _TRIM.format(""), _TRIM.format(" AND client = ?")


def _trim(db: Database, *, client: str | None, keep: int) -> None:
    """Delete the oldest pending rows (of ``client``, or of everyone) beyond the newest
    ``keep``. Confirmed rows are never touched."""
    if client is None:
        db.execute(_TRIM_ALL, (keep,))
    else:
        db.execute(_TRIM_CLIENT, (client, keep))


def subscribe(
    *,
    db: Database,
    email: str,
    client: str,
    key: bytes,
    public_url: str,
    source: str = "status-page",
    now: datetime | None = None,
    per_client: int = PENDING_PER_CLIENT,
    max_pending: int = PENDING_MAX,
) -> int | None:
    """Ask ``email`` to confirm. Returns the id of the queued confirmation mail, or None when
    nothing is sent (already confirmed, or a confirmation went out less than
    :data:`RESEND_AFTER` ago). Callers answer the same either way."""
    address = normalise_email(email)
    when = now or datetime.now(UTC)
    expires = when + PENDING_TTL
    who = recipient_of(address)
    client = client[:64] or "-"
    with db.transaction():
        _expire(db, when)
        row = db.one("SELECT * FROM status_subscribers WHERE email = ?", (address,))
        if row is not None and (
            row["state"] == "confirmed"
            or (row["mailed_at"] and parse_ts(str(row["mailed_at"])) > when - RESEND_AFTER)
        ):
            outcome = "already confirmed" if row["state"] == "confirmed" else "recently mailed"
            _audit(db, who, source, client, outcome)
            return None
        if row is None:
            sid = db.insert(
                "INSERT INTO status_subscribers (email, state, client, created_at, mailed_at,"
                " expires_at) VALUES (?, 'pending', ?, ?, ?, ?)",
                (address, client, fmt_ts(when), fmt_ts(when), fmt_ts(expires)),
            )
        else:
            sid = int(row["id"])
            db.execute(
                "UPDATE status_subscribers SET client = ?, mailed_at = ?, expires_at = ?"
                " WHERE id = ?",
                (client, fmt_ts(when), fmt_ts(expires), sid),
            )
        _trim(db, client=client, keep=per_client)
        _trim(db, client=None, keep=max_pending)
        mail = _queue_confirmation(
            db=db, who=who, key=key, sid=sid, expires=expires, public_url=public_url
        )
        _audit(db, who, source, client, "confirmation sent")
    return mail


def _audit(db: Database, who: Recipient, source: str, client: str, outcome: str) -> None:
    audit.record(
        db=db,
        actor=f"public:{source}",
        action="status.subscribe",
        subject=f"contact:{who.key}",
        payload={"source": source, "client": client, "outcome": outcome},
    )


def _queue_confirmation(
    *, db: Database, who: Recipient, key: bytes, sid: int, expires: datetime, public_url: str
) -> int:
    from opsbook.notify import deliver  # noqa: PLC0415

    token = make_token(key=key, subscriber_id=sid, email=who.name, expires=expires)
    link = f"{public_url.rstrip('/')}/status/confirm?t={token}"
    hours = int(PENDING_TTL.total_seconds() // 3600)
    msg = Message(
        subject="Confirm your subscription to service status updates",
        text=(
            "Someone (we hope you) asked to get our service status updates at this address.\n\n"
            f"To confirm, open this link within {hours} hours:\n{link}\n\n"
            "If you did not ask, ignore this email: you will get nothing more from us."
        ),
        event="status.subscribe",
    )
    return deliver.queue(
        db=db, recipient=who, message=msg, kind="subscription", incident_id=None, level=LEVEL
    )


def confirm(*, db: Database, key: bytes, token: str, now: datetime | None = None) -> str:
    """Follow a confirmation link: the address is confirmed (again is fine). Returns it."""
    when = now or datetime.now(UTC)
    sid, email = _claim(key=key, token=token[:600], now=when)
    with db.transaction():
        row = db.one("SELECT * FROM status_subscribers WHERE id = ? AND email = ?", (sid, email))
        if row is None:  # expired and deleted, or replaced by a newer subscription
            raise _bad_link()
        if row["state"] == "confirmed":
            return email
        if row["expires_at"] and parse_ts(str(row["expires_at"])) <= when:
            raise _bad_link()
        db.execute(
            "UPDATE status_subscribers SET state = 'confirmed', confirmed_at = ?,"
            " expires_at = NULL WHERE id = ?",
            (fmt_ts(when), sid),
        )
        audit.record(
            db=db,
            actor="public:status-page",
            action="status.subscribe.confirmed",
            subject=f"contact:{recipient_of(email).key}",
            payload={"client": row["client"]},
        )
    return email


def subscribers(*, db: Database) -> list[Recipient]:
    """Confirmed subscribers only: pending addresses are never mailed updates."""
    rows = db.query("SELECT email FROM status_subscribers WHERE state = 'confirmed' ORDER BY id")
    return [recipient_of(str(r["email"])) for r in rows]


def counts(*, db: Database, now: datetime | None = None) -> dict[str, int]:
    """How many confirmed and (unexpired) pending subscribers there are."""
    when = fmt_ts(now or datetime.now(UTC))
    rows = db.query(
        "SELECT state, COUNT(*) AS n FROM status_subscribers"
        " WHERE state = 'confirmed' OR expires_at > ? GROUP BY state",
        (when,),
    )
    out = {"confirmed": 0, "pending": 0}
    out.update({str(r["state"]): int(r["n"]) for r in rows})
    return out


def queue_update(
    *,
    db: Database,
    incident: Incident,
    text: str,
    services: dict[str, str],
    public_url: str,
    key: bytes,
) -> tuple[int, ...]:
    """Queue the published update to every confirmed subscriber (in the caller's
    transaction), each with its own unsubscribe link."""
    from opsbook.notify import deliver  # noqa: PLC0415

    names = ", ".join(services.get(s, s) for s in incident.services) or "our services"
    status_url = f"{public_url.rstrip('/')}/status"
    out = []
    for r in subscribers(db=db):
        stop = unsubscribe_link(key=key, email=r.name, public_url=public_url)
        msg = Message(
            subject=f"Service status update: incident affecting {names}",
            text=f"{text}\n\nStatus: {incident.status}. Current status: {status_url}\n\n"
            f"To stop these emails: {stop}",
            event="incident.update",
        )
        out.append(
            deliver.queue(
                db=db, recipient=r, message=msg, kind="update", incident_id=incident.id, level=LEVEL
            )
        )
    return tuple(out)
