"""Runbook actions that fix what diagnosis finds (issue 12): ``platform.remediate``, the
remediations of the troubleshooting runbook's fixing procedures, on the sandbox (where each ends
the fault it addresses) and, as commands, on Kubernetes. Dry runs describe what would be done."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opsbook.actions._registry import ActionContext, ActionSpec, action
from opsbook.errors import ValidationError

_NAME = "platform.remediate"
NAMES = (
    "terminate-leaked-sessions",
    "reset-db-connections",
    "disk-cleanup",
    "failover-dependency",
    "reschedule",
    "rollback-config",
    "renew-certificate",
    "block-sources",
)


@action(
    _NAME,
    description="Apply a remediation: " + ", ".join(NAMES) + " (docs/sandbox.md, Remediations).",
    args={
        "action": "the remediation, e.g. renew-certificate",
        "service": "the service it applies to (for the per-service ones; optional)",
        "sources": "block-sources: the addresses to block (optional on the sandbox)",
    },
    required=("action",),
    supports_dry_run=True,
)
async def remediate(ctx: ActionContext, args: Mapping[str, Any]) -> Any:
    from opsbook.platforms import platform_for  # noqa: PLC0415

    name = str(args.get("action") or "")
    if name not in NAMES:
        raise ValidationError(
            f"{_NAME}: unknown action {name!r}",
            field="action",
            hint=f"use one of: {', '.join(NAMES)}",
        )
    service = args.get("service") or None
    if service is not None and not isinstance(service, str):
        raise ValidationError(f"{_NAME}: service must be a name", field="service")
    sources = args.get("sources") or ()
    if isinstance(sources, str):
        sources = [sources]
    if not isinstance(sources, list | tuple) or not all(isinstance(s, str) for s in sources):
        raise ValidationError(f"{_NAME}: sources must be a list of addresses", field="sources")
    platform = platform_for(
        environment=ctx.environment,
        workspace=ctx.workspace,
        env_name=ctx.environment_name,
        actor=ctx.started_by,
        dry_run=ctx.dry_run,
    )
    return await platform.remediate(action=name, service=service, sources=tuple(sources))


ACTIONS: Mapping[str, ActionSpec] = {spec.name: spec for spec in (remediate,)}
