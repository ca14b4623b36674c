"""The supervisor's control commands: one table from a command name to the operation
(:mod:`.ops` for the platform, :mod:`.chaos_ops` for faults)."""

from __future__ import annotations

from typing import Any

from opsbook.errors import UsageError
from opsbook.sandbox.chaos_ops import clear, inject
from opsbook.sandbox.containment import contain
from opsbook.sandbox.credential import rotate_credential
from opsbook.sandbox.fault_book import list_faults
from opsbook.sandbox.host import Host
from opsbook.sandbox.ops import deploy, history, restart, rollback, scale, status, switch_traffic
from opsbook.sandbox.remedies import remediate
from opsbook.sandbox.rollout_ops import abort, promote, rolling, set_weight, slot_metrics
from opsbook.sandbox.rotation import rotate_certificate


async def dispatch(sup: Host, op: str, args: dict[str, Any]) -> Any:
    if op == "status":
        return status(sup)
    if op == "ping":
        return {"phase": sup.phase}
    if op == "shutdown":
        sup.stopping.set()
        return {"stopping": True}
    table = {
        "restart": restart,
        "scale": scale,
        "deploy": deploy,
        "switch": switch_traffic,
        "rollback": rollback,
        "weight": set_weight,
        "promote": promote,
        "abort": abort,
        "rolling": rolling,
        "slot-metrics": slot_metrics,
        "inject": inject,
        "clear": clear,
        "remediate": remediate,
        "rotate-cert": rotate_certificate,
        "contain": contain,
        "rotate-db-credential": rotate_credential,
    }
    if op in table:
        return await table[op](sup, args)
    if op == "history":
        return history(sup, args)
    if op == "faults":
        return {"faults": list_faults(sup)}
    raise UsageError(f"unknown supervisor operation {op!r}")
