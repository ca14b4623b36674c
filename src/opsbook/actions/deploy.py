"""Runbook actions of deployments (issue 11): what runbook 03's procedures call.

- ``deploy.begin`` {service, version, strategy, ticket, reason, security_impact, backout,
  emergency}: open the release's change record, or refuse it (a freeze window, no testing
  evidence, another deployment of the service in progress) — the refusal is recorded too;
- ``deploy.rollout`` {service, version, strategy}: carry the release out with the strategy and
  the workspace's analysis (``deployments.yaml``), promote or abort/roll back without a person;
  every decision is in the result (so on the execution) and on the change record;
- ``deploy.rollback`` {service, revision, ticket}: the emergency rollback, recorded on the
  release it undoes (a change failure for DORA).

On Kubernetes ``deploy.rollout`` runs the Helm/kubectl/Argo Rollouts commands
(:mod:`opsbook.platforms.k8s_rollouts`; Argo runs the analysis there), described in a dry run."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from opsbook.actions._registry import ActionContext, ActionSpec, action
from opsbook.actions.platform import platform_of, service_arg
from opsbook.errors import ValidationError

_VERSION = re.compile(r"^[0-9]+\.[0-9]+\.[0-9]+([.+-][0-9A-Za-z.-]+)?$")


def _db_call(ctx: ActionContext, fn: Callable[..., Any], **kw: Any) -> Any:
    """Run ``fn(db, **kw)`` in a thread on a connection of its own."""

    def work() -> Any:
        from opsbook.config import Settings  # noqa: PLC0415
        from opsbook.db import open_database  # noqa: PLC0415
        from opsbook.workspace import Workspace  # noqa: PLC0415

        ws = Workspace.load(Path(ctx.workspace))
        db = open_database(Settings.from_env().database_url_for(ws.state_dir))
        try:
            return fn(db, **kw)
        finally:
            db.close()

    return asyncio.to_thread(work)


def _str(args: Mapping[str, Any], key: str, *, required: bool = True, default: str = "") -> str:
    value = str(args.get(key) or default).strip()
    if required and not value:
        raise ValidationError(f"{key} is required", field=key)
    return value


def _version(args: Mapping[str, Any]) -> str:
    version = _str(args, "version")
    if not _VERSION.match(version):
        raise ValidationError(
            f"version must be a semantic version such as 1.5.0, not {version!r}", field="version"
        )
    return version


def _strategy(args: Mapping[str, Any]) -> str:
    from opsbook.deploy.rollout import STRATEGIES  # noqa: PLC0415

    strategy = _str(args, "strategy", default="canary")
    if strategy not in STRATEGIES:
        raise ValidationError(
            f"strategy must be one of {', '.join(STRATEGIES)}, not {strategy!r}",
            field="strategy",
        )
    return strategy


def _bool(args: Mapping[str, Any], key: str) -> bool:
    value = args.get(key, False)
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "1"):
        return True
    if text in ("false", "no", "0", "", "none"):
        return False
    raise ValidationError(f"{key} must be true or false, not {value!r}", field=key)


def active_freezes(workspace: Path, at: datetime | None = None) -> list[dict[str, Any]]:
    """The change calendar's windows active at ``at`` (now), as dicts."""
    from opsbook.deploy import calendar  # noqa: PLC0415

    cal = calendar.load(Path(workspace) / "change_calendar.yaml")
    return [f.to_dict() for f in cal.active(at or datetime.now(UTC))]


async def running_version(ctx: ActionContext, service: str) -> str | None:
    if ctx.dry_run:
        return None
    status = await platform_of(ctx).status()
    for svc in status.get("services", []):
        if svc.get("name") == service:
            return str(svc.get("version") or "") or None
    return None


@action(
    "deploy.begin",
    description="Open the release's change record (ticket, reason, security impact, back-out,"
    " testing evidence), or refuse it: a change freeze, no testing evidence, an overlapping"
    " deployment of the service.",
    args={
        "service": "the service",
        "version": "the release",
        "strategy": "rolling, blue-green or canary",
        "ticket": "the change ticket (CHG-…)",
        "reason": "why the change is made",
        "security_impact": "the change's security impact (PCI DSS 6.5.1)",
        "backout": "the back-out procedure",
        "emergency": "an emergency change (allowed in a freeze; needs the extra approval)",
    },
    required=("service", "version", "ticket", "reason", "backout"),
    supports_dry_run=True,
)
async def begin(ctx: ActionContext, args: Mapping[str, Any]) -> Any:
    from opsbook.deploy import records  # noqa: PLC0415

    service = service_arg(args, "deploy.begin")
    version, strategy = _version(args), _strategy(args)
    emergency = _bool(args, "emergency")
    freezes = active_freezes(ctx.workspace)
    if ctx.dry_run:
        return {
            "would": f"open the change record of {service} {version} ({strategy})",
            "freezes": freezes,
        }
    previous = await running_version(ctx, service)
    return await _db_call(
        ctx,
        lambda db: records.begin(
            db,
            environment_name=ctx.environment_name,
            environment=ctx.environment,
            service=service,
            version=version,
            strategy=strategy,
            ticket=_str(args, "ticket"),
            reason=_str(args, "reason"),
            security_impact=_str(args, "security_impact", required=False),
            backout=_str(args, "backout"),
            emergency=emergency,
            actor=ctx.started_by,
            execution_id=ctx.execution_id,
            freezes=freezes,
            previous_version=previous,
        ),
    )


def plan_for(
    workspace: Path,
    *,
    service: str,
    version: str,
    strategy: str,
    environment: Mapping[str, Any] | None = None,
) -> Any:
    """The rollout plan from the workspace's ``deployments.yaml`` (defaults when absent); an
    environment's ``deployments: {analysis: NAME}`` picks the template for every strategy
    there (production's Prometheus template, say)."""
    from opsbook.deploy import config  # noqa: PLC0415
    from opsbook.deploy.rollout import Plan  # noqa: PLC0415

    cfg = config.load(Path(workspace) / "deployments.yaml")
    s = cfg.strategies
    if strategy == "canary":
        name = s.canary.analysis
        steps = tuple((int(w), float(p)) for w, p in s.canary.steps)
        keep = float(s.canary.keep_old_for_s)
    elif strategy == "blue-green":
        name, steps, keep = s.blue_green.analysis, (), float(s.blue_green.keep_old_for_s)
    else:
        name, steps, keep = s.rolling.analysis, (), 0.0
    override = (environment or {}).get("deployments") or {}
    if isinstance(override, Mapping) and override.get("analysis"):
        name = str(override["analysis"])
        if name not in cfg.analysis:
            raise ValidationError(
                f"the environment's deployments.analysis names {name!r}, which "
                "deployments.yaml does not define",
                field="deployments.analysis",
                hint=f"templates: {', '.join(sorted(cfg.analysis))}",
            )
    template = cfg.analysis.get(name) if name else None
    return Plan(
        service=service,
        version=version,
        strategy=strategy,
        steps=steps,
        analysis=template,
        keep_old_for=keep,
        on_inconclusive=str(getattr(template, "on_inconclusive", "continue")),
    )


@action(
    "deploy.rollout",
    description="Deploy the release with the strategy: canary steps or a blue-green/rolling"
    " switch, each judged by the workspace's analysis; a failed analysis returns all traffic to"
    " the old version without a person. Every decision is in the result.",
    args={
        "service": "the service",
        "version": "the release",
        "strategy": "rolling, blue-green or canary (default canary)",
    },
    required=("service", "version"),
    supports_dry_run=True,
)
async def rollout(ctx: ActionContext, args: Mapping[str, Any]) -> Any:
    from opsbook.deploy.rollout import describe, run_rollout  # noqa: PLC0415

    service = service_arg(args, "deploy.rollout")
    version, strategy = _version(args), _strategy(args)
    platform = platform_of(ctx)
    if getattr(platform, "name", "") == "kubernetes":
        out = await _kubernetes(ctx, platform, service=service, version=version, strategy=strategy)
        if not ctx.dry_run:
            await _close(ctx, await _open_release(ctx, service, version), out)
        return out
    from opsbook.sandbox.releases import release_of  # noqa: PLC0415

    release_of(service, version)  # an unknown version: refused before anything changes
    plan = plan_for(
        ctx.workspace,
        service=service,
        version=version,
        strategy=strategy,
        environment=ctx.environment,
    )
    if ctx.dry_run:
        return {"would_run": describe(plan), "platform": getattr(platform, "name", "")}
    release = await _open_release(ctx, service, version)
    previous = await running_version(ctx, service)

    def note(entry: dict[str, Any]) -> None:
        ctx.progress(_line(entry))

    monitoring = ctx.environment.get("monitoring") or {}
    try:
        result = await run_rollout(
            platform=platform,  # type: ignore[arg-type]
            plan=plan,
            note=note,
            prometheus_url=monitoring.get("prometheus")
            if isinstance(monitoring, Mapping)
            else None,
            namespace=str(ctx.environment.get("namespace") or ""),
            previous_version=previous,
        )
    except Exception as exc:
        await _close(ctx, release, {"outcome": "failed", "reason": str(exc)})
        raise
    await _close(ctx, release, result)
    return result


async def _open_release(ctx: ActionContext, service: str, version: str) -> Any:
    from opsbook.deploy import records  # noqa: PLC0415

    return await _db_call(
        ctx,
        lambda db: records.latest_running(
            db, environment=ctx.environment_name, service=service, version=version
        ),
    )


async def _close(ctx: ActionContext, release: Any, result: dict[str, Any]) -> None:
    """The rollout's outcome on the release's change record (when ``deploy.begin`` opened one)."""
    from opsbook.deploy import records  # noqa: PLC0415

    if release is None:
        return
    result["release"] = release["id"]
    failed = result["outcome"] == "failed"
    await _db_call(
        ctx,
        lambda db: records.finish(
            db,
            release_id=release["id"],
            state=str(result["outcome"]),
            rollout=result,
            actor=ctx.started_by,
            detail=str(result.get("reason"))[:2000] if failed else None,
        ),
    )


def _num(value: Any) -> str:
    """A measured value for a person: 4 significant digits, ``-`` when there was none."""
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _line(entry: Mapping[str, Any]) -> str:
    kind = entry.get("kind")
    t = f"[{entry.get('t', 0):7.1f}s]"
    if kind == "measurement":
        return (
            f"{t} step {entry.get('step') or '-'} {entry.get('metric')}: "
            f"{_num(entry.get('value'))} (baseline {_num(entry.get('baseline'))}) "
            f"{entry.get('condition')} -> {entry.get('verdict')}"
        )
    if kind == "weight":
        return f"{t} step {entry['step']}: {entry['weight']}% of traffic to the new version"
    if kind == "analysis":
        return f"{t} analysis: {entry.get('verdict')} ({entry.get('reason')})"
    detail = {k: v for k, v in entry.items() if k not in ("at", "t", "kind")}
    return f"{t} {kind}: {detail}"


async def _kubernetes(
    ctx: ActionContext, platform: Any, *, service: str, version: str, strategy: str
) -> Any:
    from opsbook.platforms.k8s_rollouts import KubernetesRollouts  # noqa: PLC0415

    plan = plan_for(
        ctx.workspace,
        service=service,
        version=version,
        strategy=strategy,
        environment=ctx.environment,
    )
    steps = [{"weight": w, "pause": f"{p:g}s"} for w, p in plan.steps]
    template = plan.analysis
    note = None
    monitoring = ctx.environment.get("monitoring") or {}
    if ctx.dry_run and not (isinstance(monitoring, Mapping) and monitoring.get("prometheus")):
        # a dry run still shows the manifests; the real run refuses until it is set
        from opsbook.platforms import platform_for  # noqa: PLC0415

        unset = "http://MONITORING-PROMETHEUS-NOT-SET:9090"
        environment = {**ctx.environment, "monitoring": {**dict(monitoring), "prometheus": unset}}
        platform = platform_for(
            environment=environment,
            workspace=ctx.workspace,
            env_name=ctx.environment_name,
            actor=ctx.started_by,
            dry_run=True,
        )
        note = (
            "monitoring.prometheus is not set in the environment: the analysis' address is a "
            "placeholder here, and the real run refuses until it is set"
        )
    rollouts = KubernetesRollouts(platform)
    out: dict[str, Any] = await rollouts.start(
        service=service,
        version=version,
        strategy=strategy,
        steps=steps or None,
        analysis_name=getattr(template, "name", None),
        analysis_template=template.to_dict() if template is not None else None,
        keep_old_for=plan.keep_old_for,
    )
    if note:
        out["note"] = f"{out['note']}; {note}" if out.get("note") else note
    if ctx.dry_run:
        return out
    # the cluster's Argo Rollouts controller runs the steps and the analysis: follow it
    return {**out, **await _follow(ctx, rollouts, service=service, version=version)}


async def _follow(
    ctx: ActionContext,
    rollouts: Any,
    *,
    service: str,
    version: str,
    every: float = 10.0,
    limit: float = 3600.0,
) -> dict[str, Any]:
    """Poll the Rollout until Argo promotes it (``promoted``) or aborts it (``aborted``)."""
    import time  # noqa: PLC0415

    deadline = time.monotonic() + limit
    seen: list[dict[str, Any]] = []
    while True:
        st = await rollouts.status(service=service)
        line = (
            f"{st.get('phase')} step {st.get('step')} weight {st.get('weight')}%"
            f" stable {st.get('stable_version')} canary {st.get('canary_version')}"
        )
        if not seen or seen[-1].get("line") != line:
            seen.append({"line": line, "status": st})
            ctx.progress(line)
        if st.get("aborted"):
            return {
                "outcome": "aborted",
                "reason": st.get("message") or "aborted by Argo",
                "decisions": seen,
            }
        if st.get("phase") == "Healthy" and st.get("stable_version") == version:
            return {"outcome": "promoted", "reason": "Argo promoted it", "decisions": seen}
        if time.monotonic() > deadline:
            return {"outcome": "failed", "reason": f"not done after {limit:g}s", "decisions": seen}
        await asyncio.sleep(every)


@action(
    "deploy.rollback",
    description="Return a service to an earlier release (the previous one by default) and record"
    " the rollback on the release it undoes.",
    args={
        "service": "the service",
        "revision": "the revision to return to (0 or empty: the previous one)",
        "ticket": "the incident or change ticket",
    },
    required=("service",),
    supports_dry_run=True,
)
async def rollback(ctx: ActionContext, args: Mapping[str, Any]) -> Any:
    from opsbook.deploy import records  # noqa: PLC0415

    service = service_arg(args, "deploy.rollback")
    raw = str(args.get("revision") or "0").strip()
    if not raw.isdigit():
        raise ValidationError(f"revision must be a number, not {raw!r}", field="revision")
    revision = int(raw) or None
    platform = platform_of(ctx)
    before = await running_version(ctx, service)
    started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    result: dict[str, Any] = await platform.rollback(service=service, revision=revision)
    if ctx.dry_run or before is None:
        return result
    restored = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    marked = await _db_call(
        ctx,
        lambda db: records.rolled_back(
            db,
            environment=ctx.environment_name,
            service=service,
            from_version=before,
            actor=ctx.started_by,
            execution_id=ctx.execution_id,
            ticket=str(args.get("ticket") or "") or None,
            rolled_back_at=started,
            restored_at=restored,
        ),
    )
    result["release"] = marked["id"] if marked else None
    return result


@action(
    "deploy.release_info",
    description="Whether the sandbox's release catalogue has this version of the service, and"
    " how that release behaves.",
    args={"service": "the service", "version": "the release"},
    required=("service", "version"),
    supports_dry_run=True,
)
async def release_info(ctx: ActionContext, args: Mapping[str, Any]) -> Any:
    from opsbook.errors import NotFoundError  # noqa: PLC0415
    from opsbook.sandbox.releases import release_of, versions  # noqa: PLC0415

    service = service_arg(args, "deploy.release_info")
    version = _version(args)
    try:
        release = release_of(service, version)
    except NotFoundError:
        return {"exists": False, "service": service, "version": version, "known": versions()}
    return {"exists": True, "service": service, **release.view()}


ACTIONS: Mapping[str, ActionSpec] = {
    spec.name: spec for spec in (begin, rollout, rollback, release_info)
}
