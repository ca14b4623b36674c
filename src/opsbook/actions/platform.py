"""Built-in ``platform.*`` actions: operate the environment's platform (the sandbox with
``platform: local``, a cluster with ``platform: kubernetes``) from a runbook step.

Every action supports dry run: the kubernetes adapter returns the exact kubectl/helm commands
(``{"would_run": [...]}``), the local one what the supervisor would do.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from typing import Any

from opsbook.actions._registry import ActionContext, ActionSpec, action
from opsbook.actions.core import number_arg
from opsbook.errors import ValidationError
from opsbook.platforms import Platform, platform_for


def platform_of(ctx: ActionContext) -> Platform:
    """The environment's platform for this action's run (actor, dry run)."""
    return platform_for(
        environment=ctx.environment,
        workspace=ctx.workspace,
        env_name=ctx.environment_name,
        actor=ctx.started_by,
        dry_run=ctx.dry_run,
    )


def service_arg(args: Mapping[str, Any], name: str) -> str:
    """The ``service`` argument of action ``name``, checked."""
    value = args.get("service")
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(
            f"{name}: service must be a service name, not {value!r}",
            field="service",
            hint=f"e.g. {name}: {{service: payment}}",
        )
    return value.strip()


def _int(
    args: Mapping[str, Any], key: str, name: str, *, default: int | None = None, low: int = 0
) -> int | None:
    raw = args.get(key, default)
    if raw is None or raw == "":
        return default
    try:
        value = int(str(raw).strip())
    except ValueError:
        value = low - 1
    if isinstance(raw, bool) or value < low:
        raise ValidationError(
            f"{name}: {key} must be a whole number >= {low}, not {raw!r}", field=key
        )
    return value


@action(
    "platform.status",
    description="State of every service: replicas, ready, version, restarts, uptime, CPU, memory "
    "(`kubectl get pods`).",
    supports_dry_run=True,
)
async def status(ctx: ActionContext, args: Mapping[str, Any]) -> Any:
    return await platform_of(ctx).status()


@action(
    "platform.health",
    description="Probe every service's health_url at once (or one service, or any URLs).",
    args={
        "service": "only this service (default: all)",
        "urls": "probe these URLs instead of the services' health_url",
        "timeout": "seconds per probe (default 5)",
        "concurrency": "probes in flight at once (default 500)",
    },
    supports_dry_run=True,
)
async def health(ctx: ActionContext, args: Mapping[str, Any]) -> Any:
    urls = args.get("urls")
    if urls is not None and (
        not isinstance(urls, list) or not all(isinstance(u, str) for u in urls)
    ):
        raise ValidationError("platform.health: urls must be a list of URLs", field="urls")
    timeout = float(args.get("timeout") or 5)
    if not 0 < timeout <= 300:
        raise ValidationError("platform.health: timeout must be 0-300 seconds", field="timeout")
    return await platform_of(ctx).health(
        service=str(args["service"]) if args.get("service") else None,
        urls=urls,
        timeout=timeout,
        concurrency=_int(args, "concurrency", "platform.health", default=500, low=1) or 500,
    )


@action(
    "platform.latency",
    description="Measure one service's health check: call its health_url several times in a "
    "row and report the slowest and median answer and whether every answer was UP.",
    args={
        "service": "the service to measure",
        "samples": "how many calls, one after the other (default 10, at most 100)",
        "timeout": "seconds per call (default 5)",
    },
    required=("service",),
    supports_dry_run=True,
)
async def latency(ctx: ActionContext, args: Mapping[str, Any]) -> Any:
    service = service_arg(args, "platform.latency")
    samples = _int(args, "samples", "platform.latency", default=10, low=1) or 10
    if samples > 100:
        raise ValidationError(
            f"platform.latency: samples must be at most 100, not {samples}",
            field="samples",
            hint="e.g. platform.latency: {service: payment, samples: 10}",
        )
    timeout = number_arg(args, "timeout", action_name="platform.latency", default=5)
    if not 0 < timeout <= 60:
        raise ValidationError("platform.latency: timeout must be 0-60 seconds", field="timeout")
    platform = platform_of(ctx)
    if ctx.dry_run:
        would = await platform.health(service=service, timeout=timeout)
        return {**would, "service": service, "samples": samples}
    answers: list[dict[str, Any]] = []
    for _ in range(samples):
        probed = await platform.health(service=service, timeout=timeout, concurrency=1)
        answers.extend(probed["services"][:1])
    times = [float(a["latency_ms"]) for a in answers]
    down = [a for a in answers if a["status"] != "UP"]
    out: dict[str, Any] = {
        "service": service,
        "url": answers[0]["url"],
        "status": down[-1]["status"] if down else "UP",
        "samples": len(answers),
        "up": len(answers) - len(down),
        "max_ms": round(max(times), 1),
        "median_ms": round(statistics.median(times), 1),
        "min_ms": round(min(times), 1),
    }
    if down and down[-1].get("error"):
        out["error"] = down[-1]["error"]
    return out


@action(
    "platform.restart",
    description="Rolling restart of a service (`kubectl rollout restart`); ends crash, hang and "
    "memory-leak faults in the sandbox.",
    args={"service": "the service to restart"},
    required=("service",),
    supports_dry_run=True,
)
async def restart(ctx: ActionContext, args: Mapping[str, Any]) -> Any:
    return await platform_of(ctx).restart(service=service_arg(args, "platform.restart"))


@action(
    "platform.scale",
    description="Set a service's replica count (`kubectl scale deployment`).",
    args={"service": "the service", "replicas": "how many replicas"},
    required=("service", "replicas"),
    supports_dry_run=True,
)
async def scale(ctx: ActionContext, args: Mapping[str, Any]) -> Any:
    replicas = _int(args, "replicas", "platform.scale")
    assert replicas is not None
    return await platform_of(ctx).scale(
        service=service_arg(args, "platform.scale"), replicas=replicas
    )


@action(
    "platform.deploy",
    description="Blue-green deploy: start the version beside the running one, wait until it is "
    "healthy, then switch traffic (unless switch is false).",
    args={
        "service": "the service",
        "version": "the version to deploy",
        "switch": "switch traffic once healthy (default true)",
    },
    required=("service", "version"),
    supports_dry_run=True,
)
async def deploy(ctx: ActionContext, args: Mapping[str, Any]) -> Any:
    switch = str(args.get("switch", True)).strip().lower() not in ("false", "0", "no", "off")
    return await platform_of(ctx).deploy(
        service=service_arg(args, "platform.deploy"),
        version=str(args["version"]).strip(),
        switch=switch,
    )


@action(
    "platform.switch_traffic",
    description="Switch a service's traffic to its standby (green) release, atomically.",
    args={
        "service": "the service",
        "to": "kubernetes: the slot, blue or green (default: the other one)",
    },
    required=("service",),
    supports_dry_run=True,
)
async def switch_traffic(ctx: ActionContext, args: Mapping[str, Any]) -> Any:
    to = args.get("to")
    return await platform_of(ctx).switch_traffic(
        service=service_arg(args, "platform.switch_traffic"), to=str(to) if to else None
    )


@action(
    "platform.rollback",
    description="Return a service to a recorded revision (default: the previous one; "
    "`helm rollback` on kubernetes).",
    args={"service": "the service", "revision": "the revision (default: the previous one)"},
    required=("service",),
    supports_dry_run=True,
)
async def rollback(ctx: ActionContext, args: Mapping[str, Any]) -> Any:
    revision = _int(args, "revision", "platform.rollback", default=None)
    return await platform_of(ctx).rollback(
        service=service_arg(args, "platform.rollback"), revision=revision or None
    )


@action(
    "platform.logs",
    description="The last lines of a service's logs, parsed (JSON lines become objects).",
    args={"service": "the service", "lines": "how many lines (default 100, at most 10000)"},
    required=("service",),
    supports_dry_run=True,
)
async def logs(ctx: ActionContext, args: Mapping[str, Any]) -> Any:
    lines = _int(args, "lines", "platform.logs", default=100, low=1) or 100
    return await platform_of(ctx).logs(
        service=service_arg(args, "platform.logs"), lines=min(lines, 10_000)
    )


@action(
    "platform.top",
    description="CPU and memory of every service and its replicas (`kubectl top pods`).",
    supports_dry_run=True,
)
async def top(ctx: ActionContext, args: Mapping[str, Any]) -> Any:
    return await platform_of(ctx).top()


ACTIONS: Mapping[str, ActionSpec] = {
    spec.name: spec
    for spec in (
        status,
        health,
        latency,
        restart,
        scale,
        deploy,
        switch_traffic,
        rollback,
        logs,
        top,
    )
}
