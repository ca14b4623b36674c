"""Runbook actions for operating opsbook's own cluster (issue 17; runbook 07):

- ``cluster.status``: workers (alive, draining, dead), each queue's backlog and consumers, queues
  that wait with nobody consuming them (``result.unconsumed_queues``), and the runs waiting for a
  recovery decision (``result.awaiting_recovery``).

It opens its own connection to opsbook's database (the engine's is busy with the journal)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from opsbook.actions._registry import ActionContext, ActionSpec, action


def _status(workspace: Path) -> dict[str, Any]:
    from opsbook.cluster.status import cluster_status  # noqa: PLC0415
    from opsbook.config import Settings  # noqa: PLC0415
    from opsbook.db import open_database  # noqa: PLC0415
    from opsbook.workspace import Workspace  # noqa: PLC0415

    ws = Workspace.load(workspace)
    db = open_database(Settings.from_env().database_url_for(ws.state_dir))
    try:
        return cluster_status(db=db)
    finally:
        db.close()


@action(
    "cluster.status",
    description="opsbook's workers and queues: who is alive or dead, what waits on each queue and"
    " whether anybody consumes it, and the runs waiting for a recovery decision.",
    supports_dry_run=True,
)
async def status(ctx: ActionContext, args: Mapping[str, Any]) -> Any:
    return await asyncio.to_thread(_status, Path(ctx.workspace))


ACTIONS: Mapping[str, ActionSpec] = {status.name: status}
