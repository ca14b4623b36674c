"""Analysis templates (the ``analysis:`` section of ``deployments.yaml``): what they are and
how one is read and checked (providers, sandbox queries, PromQL, success conditions).
Semantics of a run are in :mod:`opsbook.deploy.analysis`."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from opsbook.deploy._yamlcheck import HINT, Key, known_keys, seconds, valid_name, whole_number
from opsbook.durations import format_duration
from opsbook.errors import ExpressionError, Location, ValidationError

if TYPE_CHECKING:
    from opsbook.incidents._yamlfile import YamlDoc

PROVIDERS = ("sandbox", "prometheus")
#: What the sandbox provider measures (see :mod:`opsbook.deploy.analysis`).
SANDBOX_QUERIES = ("error_ratio", "p99_latency_ms", "payment_success_rate", "request_rate")
#: What a prometheus query may contain as ``{{ name }}``.
PLACEHOLDERS = ("service", "version", "stable_version", "namespace")
ON_INCONCLUSIVE = ("continue", "abort")
VARIABLES = ("result", "baseline")
DEFAULT_CONSECUTIVE_ERROR_LIMIT = 4  # Argo Rollouts' default
DEFAULT_MIN_REQUESTS = 5
MAX_COUNT = 1000
MAX_INTERVAL = 3600.0

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_TEMPLATE_KEYS = ("on_inconclusive", "metrics")
_METRIC_KEYS = (
    "name",
    "provider",
    "query",
    "success_condition",
    "interval",
    "count",
    "failure_limit",
    "inconclusive_limit",
    "consecutive_error_limit",
    "min_requests",
    "window",
)
WINDOWS = ("interval", "cumulative")


@dataclass(frozen=True)
class Metric:
    """One measurement of an analysis, taken ``count`` times ``interval`` seconds apart.

    A measurement fails when ``success_condition`` is false; the metric fails when more than
    ``failure_limit`` measurements fail, errors when more than ``consecutive_error_limit``
    in a row could not be taken, and is inconclusive when more than ``inconclusive_limit``
    had too little data (Argo Rollouts' ``failureLimit``, ``consecutiveErrorLimit``,
    ``inconclusiveLimit``)."""

    name: str
    provider: str
    query: str
    success_condition: str
    interval_s: float
    count: int = 1
    failure_limit: int = 0
    inconclusive_limit: int = 0
    consecutive_error_limit: int = DEFAULT_CONSECUTIVE_ERROR_LIMIT
    min_requests: int = DEFAULT_MIN_REQUESTS  # sandbox only: the canary's Δ denominator
    #: sandbox only: ``interval`` compares each sample with the one before (a rate over the
    #: interval); ``cumulative`` with the analysis' first sample (everything since the step
    #: began: more requests per judgement, so a thin canary share is judged sooner)
    window: str = "interval"

    @property
    def uses_baseline(self) -> bool:
        from opsbook.expressions import variables_of  # noqa: PLC0415 - loads CEL

        return "baseline" in variables_of(self.success_condition)

    def to_dict(self) -> dict[str, Any]:
        """The metric in ``deployments.yaml``'s own format (durations as text)."""
        out: dict[str, Any] = {
            "name": self.name,
            "provider": self.provider,
            "query": self.query,
            "success_condition": self.success_condition,
            "interval": format_duration(self.interval_s),
            "count": self.count,
            "failure_limit": self.failure_limit,
            "inconclusive_limit": self.inconclusive_limit,
            "consecutive_error_limit": self.consecutive_error_limit,
        }
        if self.provider == "sandbox":
            out["min_requests"] = self.min_requests
            out["window"] = self.window
        return out


@dataclass(frozen=True)
class AnalysisTemplate:
    name: str
    metrics: tuple[Metric, ...]
    on_inconclusive: str = "continue"

    @property
    def duration_s(self) -> float:
        """How long a successful run takes (the longest metric: count x interval)."""
        return max((m.count * m.interval_s for m in self.metrics), default=0.0)

    def to_dict(self) -> dict[str, Any]:
        """The template in ``deployments.yaml``'s format (what the Kubernetes adapter
        renders into an Argo ``AnalysisTemplate``)."""
        return {
            "on_inconclusive": self.on_inconclusive,
            "metrics": [m.to_dict() for m in self.metrics],
        }


def parse_template(doc: YamlDoc, name: str, raw: Any) -> AnalysisTemplate:
    key: Key = ("analysis", name)
    valid_name(doc, name, "the analysis template name", *key)
    if not isinstance(raw, dict):
        raise doc.error(
            f"analysis {name} must be a mapping (on_inconclusive, metrics)",
            *key,
            hint=HINT,
        )
    known_keys(doc, raw, _TEMPLATE_KEYS, where=f"analysis {name}", key=key)
    on_inc = raw.get("on_inconclusive", "continue")
    if on_inc not in ON_INCONCLUSIVE:
        raise doc.error(
            f"analysis {name}: on_inconclusive must be continue or abort, not {on_inc!r}",
            *key,
            "on_inconclusive",
            hint="continue: go on when a metric had too little data; abort: treat it as a failure",
        )
    metrics_raw = raw.get("metrics")
    if not isinstance(metrics_raw, list) or not metrics_raw:
        raise doc.error(
            f"analysis {name} needs a list of metrics",
            *key,
            "metrics",
            hint="metrics: [{name: error-ratio, provider: sandbox, query: error_ratio, ...}]",
        )
    metrics: list[Metric] = []
    for i, m in enumerate(metrics_raw):
        metric = _metric(doc, m, (*key, "metrics", i), template=name)
        if any(other.name == metric.name for other in metrics):
            raise doc.error(
                f"analysis {name}: two metrics are named {metric.name!r}",
                *key,
                "metrics",
                i,
                "name",
                hint="give each metric its own name",
            )
        metrics.append(metric)
    return AnalysisTemplate(name=name, metrics=tuple(metrics), on_inconclusive=str(on_inc))


def _metric(doc: YamlDoc, raw: Any, key: Key, *, template: str) -> Metric:
    if not isinstance(raw, dict):
        raise doc.error(f"analysis {template}: each metric must be a mapping", *key, hint=HINT)
    known_keys(doc, raw, _METRIC_KEYS, where=f"analysis {template} metric", key=key)
    for required in ("name", "provider", "query", "success_condition", "interval"):
        if required not in raw:
            raise doc.error(
                f"analysis {template}: a metric has no {required}",
                *key,
                hint=f"add {required}: to the metric (keys: {', '.join(_METRIC_KEYS)})",
            )
    name = valid_name(doc, raw["name"], "the metric name", *key, "name")
    what = f"analysis {template} metric {name}"
    provider = raw["provider"]
    if provider not in PROVIDERS:
        raise doc.error(
            f"{what}: provider must be sandbox or prometheus, not {provider!r}",
            *key,
            "provider",
            hint="sandbox: the sandbox's own counters; prometheus: a PromQL query",
        )
    query = raw["query"]
    if not isinstance(query, str) or not query.strip():
        raise doc.error(f"{what}: query must be text", *key, "query", hint=HINT)
    if provider == "sandbox":
        _sandbox_query(doc, query, key, what)
    else:
        _prometheus_query(doc, query, key, what)
    condition = _condition(doc, raw["success_condition"], key, what)
    interval = seconds(
        doc, raw, "interval", key, low=0.0, high=MAX_INTERVAL, what=what, positive=True
    )
    count = whole_number(
        doc,
        raw,
        "count",
        key,
        default=1,
        low=1,
        high=MAX_COUNT,
        what=what,
        hint="count: how many measurements, e.g. 3",
    )
    failure_limit = whole_number(
        doc,
        raw,
        "failure_limit",
        key,
        default=0,
        low=0,
        high=count - 1,
        what=what,
        hint=f"the metric fails when more than failure_limit of its {count} measurements "
        f"fail, so it must be below count (0 fails on the first failed measurement)",
    )
    inconclusive_limit = whole_number(
        doc,
        raw,
        "inconclusive_limit",
        key,
        default=0,
        low=0,
        high=count,
        what=what,
        hint="how many measurements may lack data before the metric is inconclusive",
    )
    error_limit = whole_number(
        doc,
        raw,
        "consecutive_error_limit",
        key,
        default=DEFAULT_CONSECUTIVE_ERROR_LIMIT,
        low=0,
        high=MAX_COUNT,
        what=what,
        hint="how many measurements in a row may fail to be taken (default 4)",
    )
    if provider == "prometheus" and "min_requests" in raw:
        raise doc.error(
            f"{what}: min_requests applies only to the sandbox provider",
            *key,
            "min_requests",
            hint="remove it; a prometheus query with no data is inconclusive by itself",
        )
    min_requests = whole_number(
        doc,
        raw,
        "min_requests",
        key,
        default=DEFAULT_MIN_REQUESTS,
        low=1,
        high=1_000_000,
        what=what,
        hint="the fewest canary requests a measurement needs, e.g. 5",
    )
    window = str(raw.get("window", "interval"))
    if window not in WINDOWS or (provider == "prometheus" and "window" in raw):
        raise doc.error(
            f"{what}: window must be interval or cumulative (sandbox metrics only), "
            f"not {raw.get('window')!r}",
            *key,
            "window",
            hint="interval: each sample against the one before; cumulative: against the "
            "step's first sample (a prometheus query sets its own range: [1m])",
        )
    if (
        provider == "prometheus"
        and "baseline" in _variables(condition)
        and not any(m.group(1) == "version" for m in PLACEHOLDER.finditer(query))
    ):
        raise doc.error(
            f"{what}: the condition uses baseline but the query has no {{{{ version }}}}",
            *key,
            "success_condition",
            hint="baseline is the same query for the stable version: select the version "
            'in the query (version="{{ version }}"), or compare result with a constant',
        )
    return Metric(
        name=name,
        provider=str(provider),
        query=query,
        success_condition=condition,
        interval_s=interval,
        count=count,
        failure_limit=failure_limit,
        inconclusive_limit=inconclusive_limit,
        consecutive_error_limit=error_limit,
        window=window,
        min_requests=min_requests,
    )


def _sandbox_query(doc: YamlDoc, query: str, key: Key, what: str) -> None:
    if query in SANDBOX_QUERIES:
        return
    close = difflib.get_close_matches(query, SANDBOX_QUERIES, n=1)
    raise doc.error(
        f"{what}: unknown sandbox query {query!r}",
        *key,
        "query",
        hint=(f"did you mean {close[0]}? " if close else "")
        + f"the sandbox measures: {', '.join(SANDBOX_QUERIES)} "
        "(for anything else use provider: prometheus)",
    )


def _prometheus_query(doc: YamlDoc, query: str, key: Key, what: str) -> None:
    from opsbook.deploy import _promql  # noqa: PLC0415

    for m in PLACEHOLDER.finditer(query):
        if m.group(1) not in PLACEHOLDERS:
            close = difflib.get_close_matches(m.group(1), PLACEHOLDERS, n=1)
            raise doc.error(
                f"{what}: unknown placeholder {m.group(0)!r} in the query",
                *key,
                "query",
                hint=(f"did you mean {{{{ {close[0]} }}}}? " if close else "")
                + "placeholders: "
                + ", ".join(f"{{{{ {p} }}}}" for p in PLACEHOLDERS),
            )
    try:
        _promql.check(query)
    except _promql.PromqlError as exc:
        raise doc.error(
            f"{what}: the PromQL query does not parse: {exc.message} "
            f"(at character {exc.position + 1})",
            *key,
            "query",
            hint="fix the query; try it in Prometheus' own expression browser "
            '(placeholders go inside quotes: service="{{ service }}")',
        ) from None


def _variables(condition: str) -> list[str]:
    from opsbook.expressions import variables_of  # noqa: PLC0415

    return variables_of(condition)


def _condition(doc: YamlDoc, raw: Any, key: Key, what: str) -> str:
    """A success condition that compiles, reads only ``result``/``baseline`` and gives
    true or false for numbers (tried with result = baseline = 1.0)."""
    from opsbook.expressions import compile_expression, evaluate  # noqa: PLC0415

    where = Location(str(doc.path), doc.line(*key, "success_condition"))
    if not isinstance(raw, str):
        raise ValidationError(
            f"{what}: success_condition must be text (an expression such as result < 0.01)",
            location=where,
            hint='quote it: success_condition: "result <= baseline + 0.02"',
        )
    try:
        compile_expression(raw, location=where)
    except ExpressionError as exc:
        raise ValidationError(
            f"{what}: success_condition does not compile: {exc.message}",
            location=where,
            hint="an expression over result (the new version's value) and baseline (the "
            "old version's), e.g. result <= baseline + 0.02",
        ) from None
    unknown = [v for v in _variables(raw) if v not in VARIABLES]
    if unknown:
        raise ValidationError(
            f"{what}: success_condition reads {', '.join(unknown)}, which is not measured",
            location=where,
            hint="use result (the new version's value) and baseline (the old version's)",
        )
    try:
        value = evaluate(raw, {"result": 1.0, "baseline": 1.0})
    except ExpressionError as exc:
        raise ValidationError(
            f"{what}: success_condition {raw!r} cannot be evaluated on numbers: {exc.message}",
            location=where,
            hint="values are decimals: write 2.0 and 150.0, not 2 and 150 (CEL does not mix "
            "whole numbers and decimals), e.g. result <= baseline * 2.0 + 150.0",
        ) from None
    if not isinstance(value, bool):
        raise ValidationError(
            f"{what}: success_condition {raw!r} gives {value!r}, not true or false",
            location=where,
            hint="compare the value: e.g. result < 0.01",
        )
    return raw
