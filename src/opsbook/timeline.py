"""The incident timeline (``incident_events``): one row per thing that happened to an incident,
with who and when, plus the timeline's time format and incident references.

Shared by :mod:`opsbook.incidents` and :mod:`opsbook.notify` (delivery puts each page's outcome
on the incident it is about), and below both, so neither has to import the other.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from opsbook.audit._log import utcnow

if TYPE_CHECKING:
    from opsbook.db import Database


def ref_of(incident_id: int) -> str:
    """``INC-12``."""
    return f"INC-{incident_id}"


def fmt_ts(dt: datetime) -> str:
    """A stored timestamp: UTC, microseconds, ``Z``."""
    return dt.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def add_event(
    *,
    db: Database,
    incident_id: int,
    actor: str,
    kind: str,
    payload: dict[str, Any] | None = None,
    ts: str | None = None,
) -> str:
    """Append one event to the incident's timeline (in the caller's transaction); its time."""
    when = ts or utcnow()
    db.execute(
        "INSERT INTO incident_events (incident_id, ts, actor, kind, payload)"
        " VALUES (?, ?, ?, ?, ?)",
        (incident_id, when, actor, kind, json.dumps(payload or {}, default=str)),
    )
    return when
