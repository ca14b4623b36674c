"""The analysis runner: judge a new version by measurements (Argo Rollouts' AnalysisRun).

Semantics (Argo's, with the differences said):

- every metric of the template runs at the same time; each takes ``count`` measurements,
  ``interval`` seconds apart (a first sample is taken at the start: a measurement is what
  happened between two samples);
- a measurement is ``successful`` when the success condition holds, ``failed`` when it does
  not, ``inconclusive`` when there is too little data (fewer than ``min_requests`` new-version
  requests, an empty Prometheus answer, NaN, or a condition reading ``baseline`` when the old
  version had too few requests: baseline is then ``None``), ``error`` when it could not be
  taken (sampler or Prometheus unreachable, a query Prometheus refuses, a condition that
  cannot be evaluated);
- a metric **fails** as soon as more than ``failure_limit`` measurements failed, and is an
  **error** as soon as more than ``consecutive_error_limit`` measurements in a row errored;
  either stops the whole analysis at once (the other metrics are cancelled: the rollout must
  abort fast);
- after its ``count`` measurements a metric is ``error`` when none of them could be taken
  (Argo calls that successful; a bank should not), ``inconclusive`` when more than
  ``inconclusive_limit`` lacked data or errored, or when none succeeded, else
  ``successful``. Unlike Argo, an
  inconclusive metric does not stop the others: a metric without data must not hide one
  that is failing;
- the verdict: ``failed`` if any metric failed, else ``error``, else ``inconclusive``, else
  ``successful``.

Sandbox queries (counters per slot, deltas over one interval): ``error_ratio`` =
Δerrors/Δrequests; ``p99_latency_ms`` = the 0.99 quantile of the Δ histogram, interpolated
inside its bucket as Prometheus' ``histogram_quantile`` does; ``payment_success_rate`` =
Δsucceeded/(Δsucceeded+Δfailed); ``request_rate`` = Δrequests/interval (no ``min_requests``:
zero traffic is a value). ``result`` is the canary slot's value, ``baseline`` the stable
slot's over the same interval, or ``None`` when the stable slot had fewer than
``min_requests``. A counter that went back (a restarted process) makes that measurement
inconclusive.

Each measurement is handed to ``record`` as it is taken and kept in the result."""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from opsbook.deploy._counters import CounterReset, sandbox_value
from opsbook.deploy.config import PLACEHOLDER, AnalysisTemplate, Metric
from opsbook.errors import ExpressionError, UsageError

Sampler = Callable[[], Awaitable[Mapping[str, Mapping[str, Any]]]]
Clock = Callable[[float], Awaitable[Any]]
VERDICTS = ("successful", "failed", "inconclusive", "error")
HTTP_TIMEOUT = 10.0
#: Values put into a PromQL query: no quote, backslash, brace or space can break out of it.
_SAFE_VALUE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+-]{0,127}")


@dataclass(frozen=True)
class AnalysisResult:
    verdict: str  # successful | failed | inconclusive | error
    reason: str
    measurements: tuple[dict[str, Any], ...]
    started_at: str
    finished_at: str
    metrics: dict[str, str] = field(default_factory=dict)  # metric -> its verdict

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "reason": self.reason,
            "metrics": dict(self.metrics),
            "measurements": [dict(m) for m in self.measurements],
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _shown(value: float | None) -> float | str | None:
    """A value as JSON can hold it (``+Inf`` as text)."""
    if value is None or math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")


def problems(
    template: AnalysisTemplate,
    *,
    sandbox_available: bool,
    prometheus_url: str | None,
    context: Mapping[str, str],
) -> list[str]:
    """What keeps ``template`` from running here (empty: it can run). The rollout checks this
    before any traffic moves; :func:`run_analysis` returns ``error`` for the same reasons."""
    out: list[str] = []
    for m in template.metrics:
        if m.provider == "sandbox" and not sandbox_available:
            out.append(
                f"metric {m.name} measures the sandbox, but this environment is not the "
                "sandbox: use provider: prometheus"
            )
        if m.provider == "prometheus":
            if not prometheus_url:
                out.append(
                    f"metric {m.name} queries Prometheus, but the environment has no "
                    "monitoring.prometheus URL"
                )
            for ph in sorted({p.group(1) for p in PLACEHOLDER.finditer(m.query)}):
                value = context.get(ph, "")
                if ph == "stable_version" and not value:
                    continue  # no old version: the query then measures nothing (inconclusive)
                if not _SAFE_VALUE.fullmatch(value):
                    out.append(
                        f"metric {m.name}: {{{{ {ph} }}}} is {value!r}, which cannot be put "
                        "into a query (letters, digits, '.', '_', ':', '+', '-' only)"
                    )
    return out


def check_runnable(
    template: AnalysisTemplate,
    *,
    sandbox_available: bool,
    prometheus_url: str | None,
    context: Mapping[str, str],
) -> None:
    """Raise :class:`~opsbook.errors.UsageError` (exit 2) when ``template`` cannot run here."""
    found = problems(
        template,
        sandbox_available=sandbox_available,
        prometheus_url=prometheus_url,
        context=context,
    )
    if found:
        raise UsageError(
            f"analysis {template.name} cannot run: " + "; ".join(found),
            hint="change the strategy's analysis in deployments.yaml (or analysis: none)",
        )


def render(query: str, context: Mapping[str, str]) -> str:
    """``query`` with its ``{{ name }}`` placeholders filled in; a value that could break
    out of a PromQL string raises ``ValueError``."""

    def one(m: re.Match[str]) -> str:
        value = context.get(m.group(1), "")
        if not _SAFE_VALUE.fullmatch(value):
            raise ValueError(f"{{{{ {m.group(1)} }}}} is {value!r}, which cannot be put in a query")
        return value

    return PLACEHOLDER.sub(one, query)


# -- the runner -------------------------------------------------------------------------------


@dataclass
class _Outcome:
    metric: str
    verdict: str
    reason: str
    taken: int = 0
    succeeded: int = 0


@dataclass
class _Run:
    template: AnalysisTemplate
    sandbox: Sampler | None
    prometheus_url: str | None
    context: Mapping[str, str]
    record: Callable[[dict[str, Any]], None] | None
    clock: Clock
    measurements: list[dict[str, Any]] = field(default_factory=list)
    stopped: bool = False  # a metric failed or errored: the others take no more measurements

    def keep(self, m: dict[str, Any]) -> None:
        self.measurements.append(m)
        if self.record is not None:
            self.record(m)


async def run_analysis(
    template: AnalysisTemplate,
    *,
    sandbox: Sampler | None,
    prometheus_url: str | None,
    context: Mapping[str, str],
    record: Callable[[dict[str, Any]], None] | None = None,
    clock: Clock = asyncio.sleep,
) -> AnalysisResult:
    """Run ``template`` once (see the module docstring for the semantics).

    ``sandbox`` returns cumulative counters ``{"canary": SLOT, "stable": SLOT}``;
    ``prometheus_url`` is the base URL for prometheus metrics; ``context`` fills the query
    placeholders (``service``, ``version``, ``stable_version``, ``namespace``); ``clock``
    sleeps between measurements (a fake one in tests). Never raises for a measurement that
    cannot be taken: that is an ``error`` measurement."""
    started = _now()
    run = _Run(template, sandbox, prometheus_url, context, record, clock)
    found = problems(
        template,
        sandbox_available=sandbox is not None,
        prometheus_url=prometheus_url,
        context=context,
    )
    if found:
        return AnalysisResult("error", "; ".join(found), (), started, _now())
    tasks = [asyncio.create_task(_run_metric(run, m)) for m in template.metrics]
    outcomes: dict[str, _Outcome] = {}
    try:
        for next_done in asyncio.as_completed(tasks):
            outcome = await next_done
            if outcome.verdict == "stopped":
                continue
            outcomes[outcome.metric] = outcome
            if outcome.verdict in ("failed", "error"):
                break  # stop at once: the rollout must abort fast
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    verdict, reason = _overall(template, outcomes)
    return AnalysisResult(
        verdict=verdict,
        reason=reason,
        measurements=tuple(run.measurements),
        started_at=started,
        finished_at=_now(),
        metrics={name: o.verdict for name, o in outcomes.items()},
    )


def _overall(template: AnalysisTemplate, outcomes: dict[str, _Outcome]) -> tuple[str, str]:
    order = [m.name for m in template.metrics]  # the template's order, not finishing order
    outcomes = dict(sorted(outcomes.items(), key=lambda kv: order.index(kv[0])))
    for verdict in ("failed", "error", "inconclusive"):
        bad = [o for o in outcomes.values() if o.verdict == verdict]
        if bad:
            return verdict, "; ".join(f"{o.metric} {verdict}: {o.reason}" for o in bad)
    passed = ", ".join(
        f"{o.metric} {o.succeeded} of {o.taken} successful" for o in outcomes.values()
    )
    return "successful", f"every metric of {template.name} passed ({passed})"


async def _run_metric(run: _Run, metric: Metric) -> _Outcome:
    outcome = await _measure_metric(run, metric)
    if outcome.verdict in ("failed", "error"):
        run.stopped = True
    return outcome


async def _measure_metric(run: _Run, metric: Metric) -> _Outcome:
    measure = (
        _SandboxMeasure(run, metric) if metric.provider == "sandbox" else _PromMeasure(run, metric)
    )
    await measure.start()
    failed = inconclusive = errors = consecutive = 0
    last_failure = ""
    for i in range(metric.count):
        await run.clock(metric.interval_s)
        if run.stopped:
            return _Outcome(metric.name, "stopped", "another metric ended the analysis", i)
        m = await measure.take()
        run.keep(m)
        if m["verdict"] == "error":
            errors += 1
            consecutive += 1
            if consecutive > metric.consecutive_error_limit:
                return _Outcome(
                    metric.name,
                    "error",
                    f"{consecutive} measurements in a row could not be taken (more than "
                    f"consecutive_error_limit {metric.consecutive_error_limit}): {m['reason']}",
                    i + 1,
                )
            continue
        consecutive = 0
        if m["verdict"] == "failed":
            failed += 1
            last_failure = m["reason"]
            if failed > metric.failure_limit:
                return _Outcome(
                    metric.name,
                    "failed",
                    f"{failed} of {i + 1} measurements failed (more than failure_limit "
                    f"{metric.failure_limit}); last: {last_failure}",
                    i + 1,
                )
        elif m["verdict"] == "inconclusive":
            inconclusive += 1
    if errors == metric.count:
        return _Outcome(
            metric.name,
            "error",
            f"none of {metric.count} measurements could be taken",
            metric.count,
        )
    if inconclusive + errors > metric.inconclusive_limit:
        return _Outcome(
            metric.name,
            "inconclusive",
            f"{inconclusive + errors} of {metric.count} measurements without a result (more "
            f"than inconclusive_limit {metric.inconclusive_limit})",
            metric.count,
        )
    if failed + inconclusive + errors == metric.count:
        return _Outcome(
            metric.name,
            "inconclusive",
            f"none of {metric.count} measurements succeeded ({failed} failed, within "
            f"failure_limit {metric.failure_limit}; {inconclusive + errors} without a result)",
            metric.count,
        )
    succeeded = metric.count - failed - inconclusive - errors
    return _Outcome(metric.name, "successful", "passed", metric.count, succeeded)


def _judge(metric: Metric, value: float | None, baseline: float | None) -> tuple[str, str]:
    """(verdict, reason) of one measurement with a value."""
    from opsbook.expressions import evaluate  # noqa: PLC0415 - loads CEL

    cond = metric.success_condition
    if value is None or math.isnan(value):
        return "inconclusive", "no value"
    if baseline is None and metric.uses_baseline:
        return "inconclusive", "no baseline: the old version had too little traffic"
    variables: dict[str, float] = {"result": float(value)}
    if baseline is not None:
        variables["baseline"] = float(baseline)
    try:
        ok = evaluate(cond, variables)
    except ExpressionError as exc:
        return "error", f"the condition {cond!r} could not be evaluated: {exc.message}"
    if not isinstance(ok, bool):
        return "error", f"the condition {cond!r} gave {ok!r}, not true or false"
    against = f" (baseline {_fmt(baseline)})" if metric.uses_baseline else ""
    if ok:
        return "successful", f"{_fmt(value)} meets {cond}{against}"
    return "failed", f"{_fmt(value)} does not meet {cond}{against}"


def _fmt(value: float | None) -> str:
    if value is None:
        return "none"
    return f"{value:.6g}"


def _measurement(
    metric: Metric,
    *,
    query: str,
    value: float | None,
    baseline: float | None,
    verdict: str,
    reason: str,
    requests: int | None = None,
) -> dict[str, Any]:
    return {
        "metric": metric.name,
        "provider": metric.provider,
        "query": query,
        "at": _now(),
        "value": _shown(value),
        "baseline": _shown(baseline),
        "condition": metric.success_condition,
        "verdict": verdict,
        "reason": reason,
        "requests": requests,
    }


# -- the sandbox provider ---------------------------------------------------------------------


class _SandboxMeasure:
    def __init__(self, run: _Run, metric: Metric) -> None:
        self.run, self.metric = run, metric
        self.previous: Mapping[str, Mapping[str, Any]] | None = None
        self.first_error = ""
        self.taken = 0  # measurements so far (a cumulative window spans all of them)

    async def _sample(self) -> Mapping[str, Mapping[str, Any]]:
        assert self.run.sandbox is not None  # problems() refused the run otherwise
        return await self.run.sandbox()

    async def start(self) -> None:
        try:
            self.previous = await self._sample()
        except Exception as exc:  # the first measurement reports it as an error
            self.previous, self.first_error = None, str(exc)

    async def take(self) -> dict[str, Any]:
        metric = self.metric
        query = metric.query
        try:
            now = await self._sample()
        # Any failure of the sampler (a process that is down, a malformed answer) is an error
        # measurement: an exception here would leave the traffic split half-way.
        except Exception as exc:
            return _measurement(
                metric,
                query=query,
                value=None,
                baseline=None,
                verdict="error",
                reason=f"the sandbox's counters could not be read: {exc}",
            )
        before = self.previous
        self.taken += 1
        seconds = metric.interval_s
        if metric.window == "cumulative":  # always against the first sample
            seconds *= self.taken
        else:
            self.previous = now
        if before is None:
            return _measurement(
                metric,
                query=query,
                value=None,
                baseline=None,
                verdict="error",
                reason=f"no earlier sample to compare with (the first read failed: "
                f"{self.first_error})",
            )
        try:
            value, requests = sandbox_value(query, before.get("canary"), now.get("canary"), seconds)
            baseline, base_requests = sandbox_value(
                query, before.get("stable"), now.get("stable"), seconds
            )
        except CounterReset as exc:
            self.previous, self.taken = now, 0  # a cumulative window starts afresh too
            return _measurement(
                metric,
                query=query,
                value=None,
                baseline=None,
                verdict="inconclusive",
                reason=f"{exc}; the next measurement starts afresh",
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            return _measurement(
                metric,
                query=query,
                value=None,
                baseline=None,
                verdict="error",
                reason=f"the sandbox's counters are malformed: {exc!r}",
            )
        needs = query != "request_rate"
        if needs and base_requests < metric.min_requests:
            baseline = None
        if needs and requests < metric.min_requests:
            return _measurement(
                metric,
                query=query,
                value=None,
                baseline=baseline,
                verdict="inconclusive",
                reason=f"too few requests to the new version: {requests} in "
                f"{seconds:g}s (min_requests {metric.min_requests})",
                requests=requests,
            )
        verdict, reason = _judge(metric, value, baseline)
        return _measurement(
            metric,
            query=query,
            value=value,
            baseline=baseline,
            verdict=verdict,
            reason=reason,
            requests=requests,
        )


# -- the prometheus provider ------------------------------------------------------------------


class _PromMeasure:
    def __init__(self, run: _Run, metric: Metric) -> None:
        self.run, self.metric = run, metric

    async def start(self) -> None:
        return None  # an instant query needs no first sample

    async def take(self) -> dict[str, Any]:
        import httpx  # noqa: PLC0415 - deferred: CLI start-up

        metric = self.metric
        context = self.run.context
        try:
            query = render(metric.query, context)  # problems() checked the values
        except ValueError as exc:  # {{ stable_version }} when there is no old version
            return _measurement(
                metric,
                query=metric.query,
                value=None,
                baseline=None,
                verdict="inconclusive",
                reason=str(exc),
            )
        base_query = None
        if metric.uses_baseline and context.get("stable_version"):
            base_query = render(metric.query, {**context, "version": context["stable_version"]})
        url = str(self.run.prometheus_url).rstrip("/") + "/api/v1/query"
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as client:
            value, problem = await _instant(client, url, query)
            baseline: float | None = None
            if problem is None and base_query is not None:
                baseline, base_problem = await _instant(client, url, base_query)
                if base_problem is not None and base_problem[0] == "error":
                    problem = (base_problem[0], f"baseline query: {base_problem[1]}")
        if problem is not None:
            return _measurement(
                metric,
                query=query,
                value=value,
                baseline=baseline,
                verdict=problem[0],
                reason=problem[1],
            )
        verdict, reason = _judge(metric, value, baseline)
        return _measurement(
            metric, query=query, value=value, baseline=baseline, verdict=verdict, reason=reason
        )


async def _instant(
    client: Any, url: str, query: str
) -> tuple[float | None, tuple[str, str] | None]:
    """(value, None) or (None, (verdict, reason)) for one instant query."""
    import httpx  # noqa: PLC0415

    try:
        response = await client.get(url, params={"query": query})
    except httpx.HTTPError as exc:
        return None, ("error", f"Prometheus at {url} could not be reached: {exc!r}")
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code != 200 or not isinstance(body, dict) or body.get("status") != "success":
        detail = ""
        if isinstance(body, dict) and body.get("error"):
            detail = f": {body.get('errorType', 'error')}: {body['error']}"
        return None, ("error", f"Prometheus answered HTTP {response.status_code}{detail}")
    data = body.get("data") or {}
    kind, result = data.get("resultType"), data.get("result")
    if not isinstance(result, list):
        return None, ("error", f"Prometheus' answer has no result list: {data!r:.200}")
    try:
        if kind == "scalar":
            value = float(result[1])
        elif kind == "vector":
            if not result:
                return None, ("inconclusive", "the query returned no data")
            if len(result) > 1:
                labels = ", ".join(str(r.get("metric", {})) for r in result[:3])
                return None, (
                    "error",
                    f"the query returned {len(result)} series ({labels}); aggregate it "
                    "(sum(), max()) so it returns one value",
                )
            value = float(result[0]["value"][1])
        else:
            return None, (
                "error",
                f"the query returned a {kind}, not one number (a range vector needs rate() or "
                "another function around it)",
            )
    except (TypeError, ValueError, KeyError, IndexError) as exc:
        return None, ("error", f"Prometheus' answer is malformed: {exc!r}")
    if math.isnan(value):
        return None, ("inconclusive", "Prometheus returned NaN (no traffic in the window?)")
    return value, None
