"""Built-in ``core.*`` actions: ``core.sleep``, ``core.echo``, ``core.fail`` (and, in the same
table, ``incidents.classify`` from :mod:`opsbook.actions.incidents`)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from opsbook.actions import incidents as incident_actions
from opsbook.actions._registry import ActionContext, ActionSpec, action
from opsbook.errors import StepError, ValidationError


def number_arg(
    args: Mapping[str, Any], name: str, *, action_name: str, default: float | None = None
) -> float:
    """``args[name]`` as a non-negative number (numeric strings accepted)."""
    raw = args.get(name, default)
    try:
        value = float(raw) if not isinstance(raw, bool) else float("nan")
    except (TypeError, ValueError):
        value = float("nan")
    if not value >= 0:  # also rejects NaN
        raise ValidationError(
            f"{action_name}: {name} must be a number of seconds >= 0, not {raw!r}",
            field=name,
            hint=f"e.g. {action_name}: {{{name}: 5}}",
        )
    return value


@action(
    "core.sleep",
    description="Wait a number of seconds.",
    args={"seconds": "how long to wait (a number >= 0)"},
    required=("seconds",),
    supports_dry_run=True,
)
async def sleep(ctx: ActionContext, args: Mapping[str, Any]) -> Any:
    seconds = number_arg(args, "seconds", action_name="core.sleep")
    if ctx.dry_run:
        return {"would_sleep": seconds}
    await asyncio.sleep(seconds)
    return {"slept": seconds}


@action(
    "core.echo",
    description="Return the arguments as the result (for trying out runbooks and templates).",
    args={"message": "any value; every argument is returned as given"},
    supports_dry_run=True,
)
async def echo(ctx: ActionContext, args: Mapping[str, Any]) -> Any:
    return dict(args)


@action(
    "core.fail",
    description="Fail the step with a message (for trying out on_failure and retries).",
    args={"message": "the reason to report"},
    supports_dry_run=True,
)
async def fail(ctx: ActionContext, args: Mapping[str, Any]) -> Any:
    message = str(args.get("message") or "failed on purpose (core.fail)")
    if ctx.dry_run:
        return {"would_fail": message}
    raise StepError(message)


# The ``core`` entry point also carries the small domain action modules (no entry point each).
ACTIONS: Mapping[str, ActionSpec] = {
    **{spec.name: spec for spec in (sleep, echo, fail)},
    **incident_actions.ACTIONS,
}
