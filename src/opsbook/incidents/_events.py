"""Timeline events: one row per thing that happened to an incident, with who and when."""

from __future__ import annotations

import json
from typing import Any

from opsbook.audit._log import utcnow
from opsbook.db import Database


def add_event(
    *,
    db: Database,
    incident_id: int,
    actor: str,
    kind: str,
    payload: dict[str, Any] | None = None,
    ts: str | None = None,
) -> str:
    when = ts or utcnow()
    db.execute(
        "INSERT INTO incident_events (incident_id, ts, actor, kind, payload)"
        " VALUES (?, ?, ?, ?, ?)",
        (incident_id, when, actor, kind, json.dumps(payload or {}, default=str)),
    )
    return when
