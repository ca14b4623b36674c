"""Stakeholder updates: internal at once, customer-facing only after the commander approves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from opsbook.errors import ConflictError, PermissionDenied
from opsbook.incidents import comms, lifecycle
from opsbook.incidents.service import declare, get, timeline
from tests.incidents.harness import Env

T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


def test_customer_facing_updates_need_the_commander(env: Env) -> None:
    ref = declare(
        db=env.db,
        config=env.config,
        title="Payments slow",
        actor="alice",
        services=["payment"],
        severity="SEV2",
        now=T0,
    ).incident.ref
    up = comms.post_update(
        db=env.db,
        config=env.config,
        ref=ref,
        actor="alice",
        text="Payments are slow; we are on it",
        audience="public",
    )
    assert up["state"] == "pending"
    with pytest.raises(PermissionDenied, match="not assigned"):
        comms.approve_update(db=env.db, config=env.config, update_id=up["id"], actor="alice")
    lifecycle.assign(db=env.db, ref=ref, actor="alice", role="commander", person="carol")
    with pytest.raises(PermissionDenied, match="carol"):
        comms.approve_update(db=env.db, config=env.config, update_id=up["id"], actor="alice")
    comms.approve_update(db=env.db, config=env.config, update_id=up["id"], actor="carol")
    with pytest.raises(ConflictError):
        comms.approve_update(db=env.db, config=env.config, update_id=up["id"], actor="carol")
    inc = get(db=env.db, ref=ref)
    published = comms.public_updates(db=env.db, incident_ids=[inc.id])[inc.id]
    assert [u["text"] for u in published] == ["Payments are slow; we are on it"]
    kinds = [e.kind for e in timeline(db=env.db, incident=inc)]
    assert "update.public" in kinds and "update.published" in kinds


def test_an_internal_update_restarts_the_cadence(env: Env) -> None:
    ref = declare(
        db=env.db, config=env.config, title="x", actor="alice", severity="SEV2", now=T0
    ).incident.ref
    later = T0 + timedelta(minutes=50)
    out = comms.post_update(
        db=env.db, config=env.config, ref=ref, actor="carol", text="rolled back", now=later
    )
    assert out["text"].startswith(f"{ref} SEV2 (investigating) — rolled back")
    (timer,) = env.db.query(
        "SELECT due_at FROM incident_timers WHERE kind = 'update_reminder' AND state = 'pending'"
    )
    assert timer["due_at"] == "2026-11-26T11:50:00.000000Z"  # 50 min + the SEV2 hour


def test_internal_updates_use_the_template_and_reach_everyone_paged(env: Env) -> None:
    import asyncio

    from opsbook.notify.deliver import deliver_pending

    policy = env.ws.root / "incident_policy.yaml"
    policy.write_text(
        policy.read_text()
        + "\ntemplates:\n  internal: '[{ref} {severity}] {title} ({services}): {text}'\n"
    )
    from opsbook.incidents.config import load_config

    config = load_config(env.ws)
    declared = declare(
        db=env.db,
        config=config,
        title="Payments failing",
        actor="alice",
        services=["payment"],
        severity="SEV2",
        now=T0,
    )
    ref = declared.incident.ref
    # Level 1 was paged at declaration (e-mail and the team's webhook).
    asyncio.run(
        deliver_pending(
            db=env.db,
            settings=config.policy.notify,
            key=config.webhook_key,
            owner="test",
            ids=list(declared.notifications),
        )
    )
    out = comms.post_update(
        db=env.db, config=config, ref=ref, actor="carol", text="rolled back to 1.4.1"
    )
    assert out["text"] == f"[{ref} SEV2] Payments failing (payment): rolled back to 1.4.1"
    assert out["notifications"], "the people paged so far are told"
    asyncio.run(
        deliver_pending(
            db=env.db,
            settings=config.policy.notify,
            key=config.webhook_key,
            owner="test",
            ids=list(out["notifications"]),
        )
    )
    updates = [m for m in env.smtp.to("l1@bank.test") if "update" in m.subject]
    assert len(updates) == 1 and "rolled back to 1.4.1" in updates[0].body


def test_a_template_with_an_unknown_placeholder_names_the_line(env: Env) -> None:
    from opsbook.errors import ValidationError
    from opsbook.incidents.config import load_config

    policy = env.ws.root / "incident_policy.yaml"
    policy.write_text(policy.read_text() + "\ntemplates:\n  internal: '{ref}: {mood}'\n")
    with pytest.raises(ValidationError, match="unknown placeholder") as info:
        load_config(env.ws)
    assert info.value.location is not None and "incident_policy.yaml" in str(info.value.location)
