"""Fault injection from the outside: validate, ask the supervisor, audit.

The supervisor applies the fault and appends it to ``chaos.jsonl``; these functions then record
it in the caller's :class:`~opsbook.sandbox.faults.AuditSink` (the hash-chained audit log) as
``sandbox.fault.injected`` / ``sandbox.fault.cleared``.
"""

from __future__ import annotations

from typing import Any

from opsbook.sandbox.control import Control
from opsbook.sandbox.faults import AuditSink, check_request, get_spec, parse_duration


def inject(
    *,
    control: Control,
    fault: str,
    service: str | None = None,
    duration: str | float | None = None,
    actor: str,
    sink: AuditSink | None = None,
) -> dict[str, Any]:
    """Inject ``fault``; the active fault as the supervisor recorded it."""
    spec, target = check_request(fault, service)
    seconds = parse_duration(duration)
    result: dict[str, Any] = control.call(
        "inject", {"fault": spec.name, "service": target, "duration": seconds, "actor": actor}
    )
    if sink is not None:
        sink.record(
            actor=actor,
            action="sandbox.fault.injected",
            subject=f"sandbox:fault:{spec.name}:{result.get('target')}",
            payload={
                "fault": spec.name,
                "service": target,
                "duration": seconds,
                "id": result.get("id"),
                "until": result.get("until"),
                # what a backup fault did (the damaged file and bytes, the paused replicas)
                **{k: result[k] for k in ("damaged", "paused") if k in result},
            },
        )
    return result


def clear(
    *,
    control: Control,
    fault: str | None = None,
    service: str | None = None,
    actor: str,
    sink: AuditSink | None = None,
) -> dict[str, Any]:
    """End the active faults that match (all of them by default)."""
    if fault:
        get_spec(fault)
    if service:
        from opsbook.sandbox.config import check_service  # noqa: PLC0415

        check_service(service)
    result: dict[str, Any] = control.call(
        "clear", {"fault": fault, "service": service, "actor": actor}
    )
    if sink is not None:
        for ended in result.get("cleared", []):
            sink.record(
                actor=actor,
                action="sandbox.fault.cleared",
                subject=f"sandbox:fault:{ended['fault']}:{ended.get('target')}",
                payload={
                    "fault": ended["fault"],
                    "service": ended.get("service"),
                    "id": ended.get("id"),
                },
            )
    return result


def active(*, control: Control) -> list[dict[str, Any]]:
    faults: list[dict[str, Any]] = control.call("faults")["faults"]
    return faults
