"""Status page subscribers: stored once, emailed the published customer updates through the
notification outbox (a real SMTP server), never for drills, never listed as pages."""

from __future__ import annotations

import asyncio
import re

import pytest

from opsbook.errors import ValidationError
from opsbook.incidents import comms, lifecycle, subscribers
from opsbook.incidents.notifications import list_notifications
from opsbook.incidents.service import declare
from opsbook.notify.deliver import deliver_pending
from tests.incidents.harness import Env


def _published(env: Env, *, drill: bool = False) -> tuple[str, list[int]]:
    ref = declare(
        db=env.db,
        config=env.config,
        title="Secret title",
        actor="alice",
        services=["payment"],
        severity="SEV2",
        commander="carol",
        drill=drill,
    ).incident.ref
    up = comms.post_update(
        db=env.db,
        config=env.config,
        ref=ref,
        actor="alice",
        text="Card payments are failing; next update in 30 minutes",
        audience="public",
    )
    out = comms.approve_update(db=env.db, config=env.config, update_id=up["id"], actor="carol")
    return ref, list(out["notifications"])


def _subscribe(env: Env, email: str) -> int | None:
    return subscribers.subscribe(
        db=env.db, email=email, client="10.0.0.1", key=env.config.key, public_url="http://x"
    )


def _subscribed(env: Env, email: str) -> None:
    """Subscribe and follow the link in the confirmation (double opt-in, issue 16 §4)."""
    nid = _subscribe(env, email)
    row = env.db.one("SELECT message FROM notifications WHERE id = ?", (nid,))
    assert row is not None
    token = re.search(r"confirm\?t=([\w\-]+\.[0-9a-f]+)", row["message"])
    assert token
    subscribers.confirm(db=env.db, key=env.config.key, token=token.group(1))


def test_addresses_are_checked_and_stored_once(env: Env) -> None:
    assert _subscribe(env, " Ann@Example.COM ") is not None  # a confirmation mail
    assert _subscribe(env, "ann@example.com") is None  # one already went out
    for bad in ("", "ann", "ann@", "a b@example.com", "ann@example", "x@y.z, evil@example.com"):
        with pytest.raises(ValidationError) as err:
            _subscribe(env, bad)
        assert err.value.field == "email"
    assert subscribers.subscribers(db=env.db) == []  # not confirmed yet
    _subscribed(env, "bob@example.com")
    assert [r.name for r in subscribers.subscribers(db=env.db)] == ["bob@example.com"]
    assert subscribers.email_of_json(b'{"email": "x@example.com"}') == "x@example.com"
    assert subscribers.email_of_json(b"[1]") == "" and subscribers.email_of_json(b"{") == ""


def test_published_updates_are_emailed_to_subscribers_with_attempts(env: Env) -> None:
    _subscribed(env, "ann@example.com")
    _subscribed(env, "bob@example.com")
    ref, ids = _published(env)
    assert len(ids) == 2
    done = asyncio.run(
        deliver_pending(
            db=env.db,
            settings=env.config.policy.notify,
            key=env.config.webhook_key,
            owner="test",
            ids=ids,
        )
    )
    assert {d.outcome for d in done} == {"sent"}
    mails = env.smtp.wait_for(len(env.smtp.mails))
    to_ann = [m for m in mails if m.to == "ann@example.com"]
    assert len(to_ann) == 1
    assert to_ann[0].subject == "Service status update: incident affecting Payments"
    assert "Card payments are failing" in to_ann[0].body
    assert "Secret title" not in to_ann[0].body + to_ann[0].subject
    attempts = env.db.query(
        "SELECT outcome, channel, target FROM notification_attempts WHERE notification_id IN"
        f" ({', '.join('?' for _ in ids)}) ORDER BY target",
        ids,
    )
    assert [(a["outcome"], a["channel"], a["target"]) for a in attempts] == [
        ("sent", "email", "ann@example.com"),
        ("sent", "email", "bob@example.com"),
    ]
    listed = list_notifications(db=env.db, incident=ref)
    assert {n["kind"] for n in listed} >= {"update", "page"}
    assert all(n["kind"] != "subscription" for n in list_notifications(db=env.db, limit=500))


def test_drills_are_never_emailed_to_customers(env: Env) -> None:
    _subscribed(env, "ann@example.com")
    _, ids = _published(env, drill=True)
    assert ids == []


def test_no_subscribers_no_mail(env: Env) -> None:
    ref, ids = _published(env)
    assert ids == []
    lifecycle.resolve(db=env.db, ref=ref, actor="carol")
