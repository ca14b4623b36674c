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
