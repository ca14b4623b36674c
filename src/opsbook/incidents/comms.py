"""Stakeholder communications: internal updates (timeline) and customer-facing updates that the
incident commander approves before they appear on the public status page (``/status``).

Either kind of update restarts the severity's update-cadence reminder.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from opsbook import audit
from opsbook.db import Database
from opsbook.errors import ConflictError, NotFoundError, PermissionDenied, ValidationError
from opsbook.incidents import escalation
from opsbook.incidents._events import add_event
from opsbook.incidents.config import IncidentConfig
from opsbook.incidents.model import fmt_ts
from opsbook.incidents.service import get

TEMPLATE = "{ref} {severity} ({status}) — {text}"


def _rearm(
    db: Database, config: IncidentConfig, incident_id: int, severity: str, now: datetime
) -> None:
    escalation.cancel_timers(db=db, incident_id=incident_id, kind="update_reminder")
    every = config.policy.severity(severity).update_every
    escalation.add_timer(
        db=db,
        incident_id=incident_id,
        kind="update_reminder",
        due=now + timedelta(seconds=every),
        now=fmt_ts(now),
    )


def post_update(
    *,
    db: Database,
    config: IncidentConfig,
    ref: str | int,
    actor: str,
    text: str,
    audience: str = "internal",
    now: datetime | None = None,
) -> dict[str, Any]:
    """An internal update is published at once (on the timeline); a public one waits for the
    incident commander's approval (:func:`approve_update`)."""
    if audience not in ("internal", "public"):
        raise ValidationError(
            f"unknown audience {audience!r}", field="audience", hint="internal or public"
        )
    if not text.strip():
        raise ValidationError("the update is empty", field="text", hint="say what changed")
    when = now or datetime.now(UTC)
    ts = fmt_ts(when)
    with db.transaction():
        inc = get(db=db, ref=ref)
        if not inc.is_open:
            raise ConflictError(f"{inc.ref} is {inc.status}", hint="updates are for open incidents")
        body = render_update(config, inc, audience=audience, text=text)
        state = "published" if audience == "internal" else "pending"
        uid = db.insert(
            "INSERT INTO status_updates (incident_id, text, audience, state, created_by,"
            " created_at, published_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (inc.id, text, audience, state, actor, ts, ts if state == "published" else None),
        )
        payload = {"update": uid, "audience": audience, "state": state, "text": body}
        add_event(
            db=db,
            incident_id=inc.id,
            actor=actor,
            kind=f"update.{audience}",
            payload=payload,
            ts=ts,
        )
        audit.record(
            db=db,
            actor=actor,
            action=f"incident.update.{audience}",
            subject=inc.ref,
            payload=payload,
            ts=ts,
        )
        sent: list[int] = []
        if state == "published":
            _rearm(db, config, inc.id, inc.severity, when)
            sent = _tell_responders(db, inc, body)
    # ``notifications``: queued messages to the people already paged (send them, or let
    # `opsbook serve` do it).
    return {"id": uid, **payload, "notifications": sent}


def render_update(config: IncidentConfig, inc: Any, *, audience: str, text: str) -> str:
    """The update's text through the policy's template for its audience."""
    values = {
        "ref": inc.ref,
        "severity": inc.severity,
        "status": inc.status,
        "title": inc.title,
        "services": ", ".join(inc.services) or "-",
        "commander": (inc.roles or {}).get("commander") or "not assigned",
        "text": text,
    }
    return config.policy.templates.get(audience, TEMPLATE).format_map(values)


def _tell_responders(db: Database, inc: Any, body: str) -> list[int]:
    """Queue an internal update to everyone this incident has paged (once per person)."""
    import json  # noqa: PLC0415

    from opsbook.incidents.contacts import Channel, Recipient  # noqa: PLC0415
    from opsbook.notify import deliver  # noqa: PLC0415
    from opsbook.notify.channels import Message  # noqa: PLC0415

    seen: dict[str, Recipient] = {}
    for row in db.query(
        "SELECT recipient FROM notifications WHERE incident_id = ? AND kind = 'page' ORDER BY id",
        (inc.id,),
    ):
        r = json.loads(row["recipient"])
        if r.get("key") in seen:
            continue
        seen[str(r["key"])] = Recipient(
            key=str(r["key"]),
            name=str(r.get("name", r["key"])),
            level=str(r.get("level", "")),
            channels=tuple(Channel(str(c["kind"]), str(c["target"])) for c in r["channels"]),
        )
    msg = Message(
        subject=f"[{inc.ref}] update: {inc.title}",
        text=body,
        event="incident.update",
        incident={"ref": inc.ref, "severity": inc.severity, "status": inc.status},
    )
    return [
        deliver.queue(
            db=db, recipient=r, message=msg, kind="update", incident_id=inc.id, level=r.level
        )
        for r in seen.values()
    ]


def approve_update(
    *, db: Database, config: IncidentConfig, update_id: int, actor: str, now: datetime | None = None
) -> dict[str, Any]:
    """Publish a customer-facing update: only the incident commander may."""
    when = now or datetime.now(UTC)
    ts = fmt_ts(when)
    with db.transaction():
        row = db.one("SELECT * FROM status_updates WHERE id = ?", (update_id,))
        if row is None:
            raise NotFoundError(f"no update {update_id}", hint="see `incidents show REF`")
        inc = get(db=db, ref=int(row["incident_id"]))
        commander = inc.roles.get("commander")
        if actor != commander:
            raise PermissionDenied(
                f"only the incident commander ({commander or 'not assigned'}) may publish"
                " customer-facing updates",
                hint=f"`opsbook incidents assign {inc.ref} commander USER` first"
                if not commander
                else f"ask {commander}",
            )
        if row["state"] != "pending":
            raise ConflictError(
                f"update {update_id} is already {row['state']}", hint="nothing to do"
            )
        db.execute(
            "UPDATE status_updates SET state = 'published', approved_by = ?,"
            " published_at = ? WHERE id = ?",
            (actor, ts, update_id),
        )
        payload = {"update": update_id, "text": row["text"]}
        add_event(
            db=db, incident_id=inc.id, actor=actor, kind="update.published", payload=payload, ts=ts
        )
        audit.record(
            db=db,
            actor=actor,
            action="incident.update.publish",
            subject=inc.ref,
            payload=payload,
            ts=ts,
        )
        _rearm(db, config, inc.id, inc.severity, when)
        mails: tuple[int, ...] = ()
        if not inc.drill:
            from opsbook.incidents.subscribers import queue_update  # noqa: PLC0415

            mails = queue_update(
                db=db,
                incident=inc,
                text=str(row["text"]),
                services=config.policy.services,
                public_url=config.policy.notify.public_url,
                key=config.key,
            )
    return {
        "id": update_id,
        "state": "published",
        "approved_by": actor,
        "notifications": list(mails),
    }


def public_updates(*, db: Database, incident_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """Published customer-facing updates per incident, newest first (for /status)."""
    out: dict[int, list[dict[str, Any]]] = {}
    for iid in incident_ids:
        out[iid] = db.query(
            "SELECT text, published_at FROM status_updates WHERE incident_id = ?"
            " AND audience = 'public' AND state = 'published' ORDER BY published_at DESC",
            (iid,),
        )
    return out


def updates_of(*, db: Database, incident_id: int) -> list[dict[str, Any]]:
    """Every internal and customer-facing update of one incident, newest first (console)."""
    return db.query(
        "SELECT id, text, audience, state, created_by, created_at, approved_by, published_at"
        " FROM status_updates WHERE incident_id = ? ORDER BY id DESC",
        (incident_id,),
    )
