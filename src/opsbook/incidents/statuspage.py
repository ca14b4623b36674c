"""What the public status page (``/status``) shows: components (the policy's services) with
their state from the open incidents, current incidents with their published customer
updates, and the last 30 days. Never drills, titles, notes or people."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opsbook.db import Database
    from opsbook.workspace import Workspace


def component_state(worst: int) -> str:
    """The state of a component from the highest severity (1..4, 0 = none) hitting it."""
    if not worst:
        return "Operational"
    if worst <= 1:
        return "Major outage"
    if worst == 2:
        return "Partial outage"
    return "Degraded performance"


def status_view(*, db: Database, workspace: Workspace) -> dict[str, Any]:
    from opsbook.incidents.comms import public_updates  # noqa: PLC0415
    from opsbook.incidents.model import fmt_ts, rank  # noqa: PLC0415
    from opsbook.incidents.policy import load_policy  # noqa: PLC0415
    from opsbook.incidents.service import list_incidents  # noqa: PLC0415

    services = load_policy(workspace).services
    since = fmt_ts(datetime.now(UTC) - timedelta(days=30))
    recent = [i for i in list_incidents(db=db, since=since, limit=500) if not i.drill]
    current = [i for i in recent if i.is_open]
    history = [i for i in recent if not i.is_open]
    components = []
    for sid, name in services.items():
        hit = [i for i in current if sid in i.services]
        worst = min((rank(i.severity) for i in hit), default=0)
        components.append({"id": sid, "name": name, "state": component_state(worst)})
    return {
        "components": components,
        "current": current,
        "history": history,
        "updates": public_updates(db=db, incident_ids=[i.id for i in current]),
        "services": services,
    }
