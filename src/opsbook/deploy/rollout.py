"""The rollout controller: one deployment of one service version with a strategy, judged by
analysis, promoted or rolled back without a person (Argo Rollouts' model, on opsbook's
platform adapter).

- **canary**: the new version starts beside the old one with no traffic; each step sends it a
  share of the traffic and runs the analysis for the step's pause; a failed analysis aborts at
  once (all traffic back on the old version, the canary stopped); after the last step the new
  version is promoted and the old one stays up ``keep_old_for`` seconds for an instant rollback.
- **blue-green**: the new set starts beside the old one, traffic switches in one step, the
  analysis judges the new set with all the traffic; a failure switches back to the old set,
  which is still running.
- **rolling**: the replicas are replaced one at a time, each healthy before the next; the
  analysis then judges the new version; a failure rolls back.

Every decision (each step's weight, each measurement with its value, condition and verdict,
the analysis' verdict, the abort or promotion) is passed to ``note`` as it happens and returned
in the result, which the ``deploy.rollout`` action leaves on the execution."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from opsbook.errors import OpsbookError, UsageError

STRATEGIES = ("rolling", "blue-green", "canary")

_EMPTY_SLOT: dict[str, Any] = {
    "requests": 0,
    "errors": 0,
    "latency": {"buckets": [], "count": 0, "sum": 0.0},
    "payments": {"succeeded": 0, "failed": 0},
}


class Progressive(Protocol):
    """What the controller needs of a platform (``LocalPlatform`` has it)."""

    async def start_release(
        self, *, service: str, version: str, strategy: str
    ) -> dict[str, Any]: ...

    async def set_weight(self, *, service: str, weight: int) -> dict[str, Any]: ...

    async def promote(self, *, service: str, keep_old_for: float) -> dict[str, Any]: ...

    async def abort(self, *, service: str, reason: str) -> dict[str, Any]: ...

    async def slot_metrics(self, *, service: str) -> dict[str, Any]: ...

    async def rollback(self, *, service: str, revision: int | None = None) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Plan:
    service: str
    version: str
    strategy: str
    steps: tuple[tuple[int, float], ...] = ()  # canary: (weight %, pause s)
    analysis: Any = None  # the AnalysisTemplate of the steps (canary) or after the switch
    keep_old_for: float = 60.0
    on_inconclusive: str = "continue"  # or "abort"

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise UsageError(
                f"strategy must be one of {', '.join(STRATEGIES)}, not {self.strategy!r}",
                field="strategy",
            )


@dataclass
class _Run:
    plan: Plan
    note: Callable[[dict[str, Any]], None]
    decisions: list[dict[str, Any]] = field(default_factory=list)
    t0: float = field(default_factory=time.monotonic)
    first_traffic: float | None = None
    analyses: list[dict[str, Any]] = field(default_factory=list)

    def record(self, kind: str, **detail: Any) -> dict[str, Any]:
        entry = {
            "at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "t": round(time.monotonic() - self.t0, 3),
            "kind": kind,
            **detail,
        }
        self.decisions.append(entry)
        self.note(entry)
        return entry


def _slots(metrics: Mapping[str, Any], *, new: str) -> dict[str, Any]:
    """The controller's view: the new version's slot is ``canary``, the old one's ``stable``."""
    active = metrics.get("active") or _EMPTY_SLOT
    standby = metrics.get("standby") or _EMPTY_SLOT
    if new == "standby":
        return {"canary": standby, "stable": active}
    return {"canary": active, "stable": standby}


async def _analyse(
    run: _Run,
    platform: Progressive,
    *,
    new: str,
    step: int | None,
    weight: int,
    prometheus_url: str | None,
    context: Mapping[str, str],
) -> str:
    """Run the plan's analysis once; its verdict (``successful`` when there is none)."""
    from opsbook.deploy.analysis import run_analysis  # noqa: PLC0415

    template = run.plan.analysis
    if template is None:
        return "successful"
    service = run.plan.service

    async def sample() -> Mapping[str, Mapping[str, Any]]:
        return _slots(await platform.slot_metrics(service=service), new=new)

    def measured(m: dict[str, Any]) -> None:
        run.record("measurement", step=step, weight=weight, **m)

    result = await run_analysis(
        template,
        sandbox=sample,
        prometheus_url=prometheus_url,
        context=context,
        record=measured,
    )
    summary = result.to_dict()
    summary.pop("measurements", None)
    run.analyses.append({"step": step, "weight": weight, **summary})
    run.record(
        "analysis",
        step=step,
        weight=weight,
        template=getattr(template, "name", None),
        verdict=result.verdict,
        reason=result.reason,
    )
    return str(result.verdict)


def _bad(verdict: str, on_inconclusive: str) -> bool:
    return verdict in ("failed", "error") or (
        verdict == "inconclusive" and on_inconclusive == "abort"
    )


async def run_rollout(
    *,
    platform: Progressive,
    plan: Plan,
    note: Callable[[dict[str, Any]], None] = lambda entry: None,
    prometheus_url: str | None = None,
    namespace: str = "",
    previous_version: str | None = None,
    sleep: Callable[[float], Awaitable[None]] | None = None,
) -> dict[str, Any]:
    """Carry out ``plan``; the outcome (``promoted``, ``aborted``, ``rolled_back``) with every
    decision. A platform error (the new version does not start) raises; nothing then takes
    traffic from the old version."""
    import asyncio  # noqa: PLC0415

    pause = sleep or asyncio.sleep
    run = _Run(plan, note)
    context = {
        "service": plan.service,
        "version": plan.version,
        "stable_version": previous_version or "",
        "namespace": namespace,
    }
    on_inc = plan.on_inconclusive
    started = await platform.start_release(
        service=plan.service, version=plan.version, strategy=plan.strategy
    )
    run.record(
        "started",
        strategy=plan.strategy,
        version=plan.version,
        revision=started.get("deployed_revision"),
    )
    outcome, reason = "promoted", "every analysis passed"
    if plan.strategy == "canary":
        for i, (weight, hold) in enumerate(plan.steps, start=1):
            await platform.set_weight(service=plan.service, weight=weight)
            if run.first_traffic is None and weight > 0:
                run.first_traffic = time.monotonic()
            run.record("weight", step=i, weight=weight)
            t_step = time.monotonic()
            verdict = await _analyse(
                run,
                platform,
                new="standby",
                step=i,
                weight=weight,
                prometheus_url=prometheus_url,
                context=context,
            )
            if _bad(verdict, on_inc):
                reason = f"analysis {verdict} at step {i} ({weight}% of traffic)"
                await platform.abort(service=plan.service, reason=reason)
                outcome = "aborted"
                run.record(
                    "aborted",
                    step=i,
                    weight=weight,
                    reason=reason,
                    seconds_since_first_traffic=_since(run.first_traffic),
                )
                break
            left = hold - (time.monotonic() - t_step)
            if left > 0:
                await pause(left)
        else:
            await platform.promote(service=plan.service, keep_old_for=plan.keep_old_for)
            run.record("promoted", keep_old_for=plan.keep_old_for)
    else:
        if plan.strategy == "blue-green":
            await platform.promote(service=plan.service, keep_old_for=plan.keep_old_for)
            run.first_traffic = time.monotonic()
            run.record("switched", keep_old_for=plan.keep_old_for)
        else:
            run.first_traffic = time.monotonic()
        verdict = await _analyse(
            run,
            platform,
            new="active",
            step=None,
            weight=100,
            prometheus_url=prometheus_url,
            context=context,
        )
        if _bad(verdict, on_inc):
            reason = f"analysis {verdict} after the {plan.strategy} switch"
            back = await platform.rollback(service=plan.service)
            outcome = "rolled_back"
            run.record(
                "rolled_back",
                reason=reason,
                to_version=back.get("version"),
                seconds_since_first_traffic=_since(run.first_traffic),
            )
        else:
            run.record("promoted", keep_old_for=plan.keep_old_for)
    return {
        "outcome": outcome,
        "reason": reason,
        "service": plan.service,
        "version": plan.version,
        "previous_version": previous_version,
        "strategy": plan.strategy,
        "seconds": round(time.monotonic() - run.t0, 3),
        "seconds_after_first_traffic": _since(run.first_traffic),
        "analyses": run.analyses,
        "decisions": run.decisions,
    }


def _since(mark: float | None) -> float | None:
    return None if mark is None else round(time.monotonic() - mark, 3)


def describe(plan: Plan) -> list[str]:
    """What the rollout would do, in words (a dry run)."""
    if plan.strategy == "canary":
        lines = [f"start {plan.service} {plan.version} beside the running version, no traffic"]
        for weight, hold in plan.steps:
            lines.append(f"send it {weight}% of the traffic, analyse for {hold:g}s")
        lines.append(
            f"promote; keep the old version {plan.keep_old_for:g}s; "
            "a failed analysis aborts and returns all traffic at once"
        )
        return lines
    if plan.strategy == "blue-green":
        return [
            f"start {plan.service} {plan.version} beside the running version",
            "switch all traffic to it in one step, analyse",
            "a failed analysis switches back to the old version, still running",
        ]
    return [
        f"replace {plan.service}'s replicas one at a time with {plan.version}",
        "analyse; a failed analysis rolls back",
    ]


class RolloutError(OpsbookError):
    """A rollout that could not be carried out (the platform refused a step)."""
