"""Real deliveries: an aiosmtpd server, a local HTTP receiver; retries, fallback, records."""

from __future__ import annotations

import asyncio
import hashlib
import hmac

import pytest

from opsbook.incidents.notifications import attempts, list_notifications
from opsbook.incidents.service import declare, get, timeline
from opsbook.notify.channels import SIGNATURE_HEADER, TIMESTAMP_HEADER
from opsbook.notify.deliver import deliver_pending
from tests.incidents.harness import Env


def _deliver(env: Env, **kw: object) -> list[object]:
    return asyncio.run(
        deliver_pending(
            db=env.db,
            settings=env.config.policy.notify,
            key=env.config.webhook_key,
            owner="test",
            **kw,
        )
    )  # type: ignore[arg-type]


def test_a_page_reaches_email_and_the_signed_team_webhook(env: Env) -> None:
    out = declare(
        db=env.db,
        config=env.config,
        title="Accounts down",
        actor="alice",
        services=["account"],
        severity="SEV2",
    )
    done = _deliver(env, incident_id=out.incident.id)
    assert len(done) == 2
    mail = env.smtp.to("l1@bank.test")
    assert len(mail) == 1 and mail[0].subject.startswith("[SEV2] INC-1 Accounts down")
    assert "/incidents/INC-1/ack?t=" in mail[0].body
    (hit,) = env.hooks.on("/hook/l1")
    want = hmac.new(
        env.config.webhook_key,
        hit.headers[TIMESTAMP_HEADER].encode() + b"." + hit.body,
        hashlib.sha256,
    ).hexdigest()
    assert hit.headers[SIGNATURE_HEADER] == f"sha256={want}"
    assert hit.json()["incident"]["ref"] == "INC-1"
    kinds = [e.kind for e in timeline(db=env.db, incident=get(db=env.db, ref="INC-1"))]
    assert kinds.count("notification.sent") == 2
    # delivering again sends nothing: each page is claimed once
    assert _deliver(env, incident_id=out.incident.id) == []
    assert len(env.smtp.mails) == 1


def test_a_failing_webhook_retries_then_falls_back_to_email(env: Env) -> None:
    declare(
        db=env.db,
        config=env.config,
        title="Ledger wrong",
        actor="alice",
        services=["transaction"],
        severity="SEV1",
    )
    _deliver(env)
    broken = next(n for n in list_notifications(db=env.db) if n["recipient"] == "broken")
    assert broken["state"] == "sent" and broken["channel"] == "email"
    tried = [(a["channel"], a["outcome"]) for a in broken["attempts"]]
    assert tried == [("email", "sent")]  # email comes first in the policy's channel order
    assert len(env.smtp.to("broken@bank.test")) == 1


def test_webhook_500_and_timeouts_are_recorded_per_attempt(env: Env) -> None:
    path = env.ws.root / "incident_policy.yaml"
    text = path.read_text().replace(
        "channels: [email, chat, webhook, sms]", "channels: [webhook, email]"
    )
    path.write_text(text.replace("timeout: 2s ", "timeout: 500ms "))
    from opsbook.incidents.config import load_config

    env.config = load_config(env.ws)
    declare(
        db=env.db,
        config=env.config,
        title="Ledger wrong",
        actor="alice",
        services=["transaction"],
        severity="SEV1",
    )
    _deliver(env)
    broken = next(n for n in list_notifications(db=env.db) if n["recipient"] == "broken")
    tried = [(a["channel"], a["outcome"], a["error"]) for a in broken["attempts"]]
    assert tried[:3] == [("webhook", "failed", "HTTP 500")] * 3  # retries: 2
    assert tried[3][:2] == ("email", "sent")
    assert len(env.hooks.on("/fail")) == 3
    # a receiver that hangs: each attempt times out, is recorded, and the page fails
    env.hooks.delay = 1.0
    declare(
        db=env.db,
        config=env.config,
        title="Again",
        actor="alice",
        services=["transaction"],
        severity="SEV4",
    )  # pages level-1 only
    done = {d.recipient: d.outcome for d in _deliver(env)}  # type: ignore[attr-defined]
    assert done == {"l1": "sent", "level-1-channel": "failed"}
    team = next(n for n in list_notifications(db=env.db) if n["recipient"] == "level-1-channel")
    assert [a["error"] for a in team["attempts"]] == ["timed out after 0.5s"] * 3
    inc = get(db=env.db, ref="INC-2")
    failed = [e for e in timeline(db=env.db, incident=inc) if e.kind == "notification.failed"]
    assert failed[0].payload["attempts"] == 3


def test_a_contact_without_channels_is_recorded_as_skipped(env: Env) -> None:
    path = env.ws.root / "contacts.yaml"
    path.write_text(path.read_text().replace(", email: l1@bank.test", ""))
    from opsbook.incidents.config import load_config

    env.config = load_config(env.ws)
    declare(db=env.db, config=env.config, title="x", actor="a", severity="SEV4")
    _deliver(env)
    rows = {n["recipient"]: n for n in list_notifications(db=env.db)}
    assert rows["l1"]["state"] == "skipped"
    assert attempts(db=env.db, notification_id=rows["l1"]["id"]) == []


@pytest.mark.parametrize("contact", ["l2", "Platform Lead"])
def test_notify_test_page(env: Env, contact: str) -> None:
    from opsbook.incidents.notifications import send_test

    d = send_test(db=env.db, config=env.config, contact=contact, actor="alice")
    assert d["outcome"] == "sent" and d["channel"] == "email"
    assert env.smtp.to("l2@bank.test")[0].subject == "[TEST] opsbook test page"
    rows = env.db.query("SELECT action FROM events WHERE subject = 'contact:l2'")
    assert [r["action"] for r in rows] == ["notify.test", "notify.sent"]


def test_sms_goes_through_the_provider_adapter(env: Env) -> None:
    from opsbook.incidents.config import load_config

    path = env.ws.root / "incident_policy.yaml"
    text = path.read_text().replace("channels: [email, chat, webhook, sms]", "channels: [sms]")
    path.write_text(text.replace('sms: {url: ""}', f"sms: {{url: {env.hooks.url}/sms}}"))
    env.config = load_config(env.ws)
    declare(db=env.db, config=env.config, title="Disk full", actor="a", severity="SEV4")
    _deliver(env)
    (hit,) = env.hooks.on("/sms")
    assert hit.json()["to"] == "+1-555-0101"
    assert hit.json()["text"].startswith("[SEV4] INC-1 Disk full http")
