"""Built-in ``incidents.*`` actions: ``incidents.classify``.

Registered through :data:`opsbook.actions.core.ACTIONS` (the ``core`` entry point), so no new
entry point is needed. The incident domain is imported when an action runs, not at import time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opsbook.actions._registry import ActionContext, ActionSpec, action
from opsbook.errors import ValidationError

_NAME = "incidents.classify"


def _choice(args: Mapping[str, Any], key: str, allowed: tuple[str, ...], default: str = "") -> str:
    value = str(args.get(key) or default).strip().lower()
    if value not in allowed:
        raise ValidationError(
            f"{_NAME}: {key} must be one of {', '.join(allowed)}, not {args.get(key)!r}",
            field=key,
            hint=f"e.g. {_NAME}: {{impact: significant, urgency: high}}",
        )
    return value


def _services(args: Mapping[str, Any]) -> tuple[str, ...]:
    raw = args.get("services") or ()
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list | tuple) or not all(isinstance(s, str) for s in raw):
        raise ValidationError(
            f"{_NAME}: services must be a list of service names, not {raw!r}",
            field="services",
            hint="e.g. services: [payment]",
        )
    return tuple(s.strip() for s in raw if s.strip())


def _ledger_total(args: Mapping[str, Any], *, dry_run: bool) -> int | str | None:
    """The ledger's sum in cents; None when it was not checked (absent, '' or 'unknown'); in a
    dry run, the text standing in for an earlier step's result that did not run."""
    raw = args.get("ledger_total")
    if raw is None or str(raw).strip().lower() in ("", "unknown", "none"):
        return None
    try:
        return int(str(raw).strip())
    except ValueError:
        if dry_run:
            return str(raw)
        raise ValidationError(
            f"{_NAME}: ledger_total must be a whole number of cents or 'unknown', not {raw!r}",
            field="ledger_total",
            hint="pass the ledger check's SUM(amount_cents), or 'unknown' when it did not run",
        ) from None


def dashed(severity: str) -> str:
    """``SEV2`` as the runbooks write it: ``SEV-2``."""
    return severity.replace("SEV", "SEV-", 1)


@action(
    _NAME,
    description="Classify an incident with the workspace's incident policy "
    "(incident_policy.yaml): impact x urgency, then its rules; an unbalanced ledger is SEV-1.",
    args={
        "impact": "extensive | significant | moderate | minor",
        "urgency": "critical | high | medium | low",
        "type": "outage | security | performance | data | other (default other)",
        "services": "the affected services (for service rules), e.g. [payment]",
        "ledger_total": "the ledger's sum in cents (0 = balanced), or 'unknown' if not checked",
    },
    required=("impact", "urgency"),
    supports_dry_run=True,  # reads the policy and computes; changes nothing
)
async def classify(ctx: ActionContext, args: Mapping[str, Any]) -> Any:
    from opsbook.durations import format_duration  # noqa: PLC0415 - deferred with the domain
    from opsbook.incidents.model import IMPACTS, MAJOR, TYPES, URGENCIES  # noqa: PLC0415
    from opsbook.incidents.policy import load_policy  # noqa: PLC0415
    from opsbook.workspace import Workspace  # noqa: PLC0415

    impact = _choice(args, "impact", IMPACTS)
    urgency = _choice(args, "urgency", URGENCIES)
    type_ = _choice(args, "type", TYPES, default="other")
    services = _services(args)
    ledger_total = _ledger_total(args, dry_run=ctx.dry_run)
    policy = load_policy(Workspace.load(ctx.workspace))
    found = policy.classify(impact=impact, urgency=urgency, type_=type_, services=services)
    severity, reasons = found.severity, list(found.reasons)
    if ledger_total is None:
        reasons.append("ledger not checked: the database did not answer")
    elif isinstance(ledger_total, str):
        reasons.append(f"ledger: {ledger_total} (dry run: SEV1 if it is not 0)")
    elif ledger_total != 0:
        reasons.append(f"ledger out of balance by {ledger_total} cents → SEV1")
        severity = "SEV1"
    level = policy.severity(severity)
    return {
        "severity": dashed(severity),
        "policy_severity": severity,
        "major": severity in MAJOR,
        "type": type_,
        "services": list(services),
        "update_interval": format_duration(level.update_every),
        "ack_target": format_duration(level.ack_target),
        "page": list(level.page),
        "reasons": reasons,
    }


ACTIONS: Mapping[str, ActionSpec] = {spec.name: spec for spec in (classify,)}
