"""Remediations an operator runs on the sandbox (issue 12): each addresses the cause a fault
models and, on the sandbox, ends that fault (recorded in ``chaos.jsonl`` as cleared with the
remediation as the reason).

The cause each models is said plainly in docs/sandbox.md ("Remediations"); ``Remedy.did``
says what the sandbox does.

A remediation with nothing to end answers ``ended: []`` (running it twice is harmless).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from opsbook.errors import UsageError

if TYPE_CHECKING:
    from opsbook.sandbox.host import Host


@dataclass(frozen=True)
class Remedy:
    name: str
    fault: str
    takes_service: bool
    did: str


REMEDIES = {
    r.name: r
    for r in (
        Remedy(
            "terminate-leaked-sessions",
            "db-connections-exhausted",
            True,
            "terminated the sessions idle in a transaction; the pool refilled",
        ),
        Remedy(
            "reset-db-connections",
            "db-down",
            True,
            "re-established the services' database connections",
        ),
        Remedy("disk-cleanup", "disk-full", False, "removed the runaway file from the data volume"),
        Remedy(
            "failover-dependency",
            "dependency-slow",
            False,
            "routed payments to the payment network's standby endpoint",
        ),
        Remedy("reschedule", "latency", True, "moved the replicas to a healthy node"),
        Remedy(
            "rollback-config", "error-rate", True, "restored the previous runtime configuration"
        ),
        Remedy(
            "renew-certificate",
            "cert-expiring",
            False,
            "re-issued the payment network certificate for a year",
        ),
        Remedy(
            "block-sources",
            "suspicious-logins",
            False,
            "blocked the burst's source addresses at the gateway",
        ),
    )
}


def check(action: str, service: str | None) -> Remedy:
    remedy = REMEDIES.get(action)
    if remedy is None:
        raise UsageError(
            f"unknown remediation {action!r}",
            field="action",
            hint=f"use one of: {', '.join(REMEDIES)}",
        )
    if service and not remedy.takes_service:
        raise UsageError(f"{action} acts on the whole environment: drop service", field="service")
    return remedy


async def remediate(sup: Host, args: dict[str, Any]) -> dict[str, Any]:
    """Apply a remediation: end the faults it addresses (on ``service``, or everywhere)."""
    from opsbook.sandbox.chaos_ops import end_faults  # noqa: PLC0415

    action = str(args.get("action") or "")
    service = args.get("service") or None
    remedy = check(action, service)
    actor = str(args.get("actor") or "operator")
    ended = await end_faults(
        sup,
        fault=remedy.fault,
        service=service,
        actor=actor,
        reason=f"remediation: {action}",
        wide=True,
    )
    return {
        "action": action,
        "service": service,
        "ended": [f["fault"] for f in ended],
        "did": remedy.did if ended else f"nothing to do: no {remedy.fault} condition now",
    }
