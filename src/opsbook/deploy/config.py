"""``deployments.yaml``: the strategies (canary steps, blue-green, rolling) and the analysis
templates that judge a new version (issue 11). A missing file means the built-in defaults,
which are the template ``opsbook init`` writes (the same file is read).

::

    analysis:
      canary-default:
        on_inconclusive: continue          # or abort
        metrics:
          - name: error-ratio
            provider: sandbox              # sandbox | prometheus
            query: error_ratio
            success_condition: "result <= baseline + 0.02"
            interval: 5s
            count: 3
            failure_limit: 1
    strategies:
      canary: {steps: [{weight: 10, pause: 15s}], analysis: canary-default, keep_old_for: 60s}
      blue-green: {analysis: post-switch, keep_old_for: 60s}
      rolling: {analysis: post-switch, max_surge: 1, keep_old_for: 60s}

Every mistake is a :class:`~opsbook.errors.ValidationError` at ``deployments.yaml:LINE`` with
the fix: an unknown key (with a suggestion), a weight outside 1-100 or not increasing, a bad
duration, an unknown sandbox query, a success condition that does not compile or does not
give true/false, a PromQL query that does not parse, an unknown analysis name, a count or
limit out of range. Analysis semantics are in :mod:`opsbook.deploy.analysis`."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opsbook.durations import format_duration
from opsbook.errors import ExpressionError, Location, ValidationError

if TYPE_CHECKING:
    from opsbook.incidents._yamlfile import YamlDoc

FILE = "deployments.yaml"
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
MAX_PAUSE = 3600.0
MAX_KEEP_OLD = 86400.0

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_TOP_KEYS = ("analysis", "strategies")
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
)
_STRATEGY_KEYS = {
    "canary": ("steps", "analysis", "keep_old_for"),
    "blue-green": ("analysis", "keep_old_for"),
    "rolling": ("analysis", "max_surge", "keep_old_for"),
}
_STEP_KEYS = ("weight", "pause")
_HINT = "see the deployments.yaml that `opsbook init` writes (docs in its comments)"


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


@dataclass(frozen=True)
class CanaryStrategy:
    steps: tuple[tuple[int, float], ...]  # (weight %, pause seconds)
    analysis: str | None
    keep_old_for_s: float = 60.0


@dataclass(frozen=True)
class BlueGreenStrategy:
    analysis: str | None
    keep_old_for_s: float = 60.0


@dataclass(frozen=True)
class RollingStrategy:
    analysis: str | None
    max_surge: int = 1
    keep_old_for_s: float = 60.0


@dataclass(frozen=True)
class Strategies:
    canary: CanaryStrategy
    blue_green: BlueGreenStrategy
    rolling: RollingStrategy


@dataclass(frozen=True)
class DeploymentsConfig:
    strategies: Strategies
    analysis: dict[str, AnalysisTemplate] = field(default_factory=dict)
    source: str = FILE

    def strategy(self, name: str) -> CanaryStrategy | BlueGreenStrategy | RollingStrategy:
        """The settings of ``canary``, ``blue-green`` or ``rolling``."""
        by_name: dict[str, CanaryStrategy | BlueGreenStrategy | RollingStrategy] = {
            "canary": self.strategies.canary,
            "blue-green": self.strategies.blue_green,
            "rolling": self.strategies.rolling,
        }
        found = by_name.get(name)
        if found is None:
            raise ValidationError(
                f"unknown strategy {name!r}",
                field="strategy",
                hint=f"strategies: {', '.join(_STRATEGY_KEYS)}",
            )
        return found

    def analysis_for(self, strategy: str) -> AnalysisTemplate | None:
        """The analysis template a strategy runs (None: the strategy has no analysis)."""
        name = self.strategy(strategy).analysis
        return self.analysis[name] if name is not None else None

    def to_dict(self) -> dict[str, Any]:
        s = self.strategies
        return {
            "source": self.source,
            "analysis": {name: t.to_dict() for name, t in self.analysis.items()},
            "strategies": {
                "canary": {
                    "steps": [
                        {"weight": w, "pause": format_duration(p)} for w, p in s.canary.steps
                    ],
                    "analysis": s.canary.analysis,
                    "keep_old_for": format_duration(s.canary.keep_old_for_s),
                },
                "blue-green": {
                    "analysis": s.blue_green.analysis,
                    "keep_old_for": format_duration(s.blue_green.keep_old_for_s),
                },
                "rolling": {
                    "analysis": s.rolling.analysis,
                    "max_surge": s.rolling.max_surge,
                    "keep_old_for": format_duration(s.rolling.keep_old_for_s),
                },
            },
        }


# -- loading ----------------------------------------------------------------------------------


def load(path: Path) -> DeploymentsConfig:
    """Read ``deployments.yaml`` (``path``); a missing file gives the built-in defaults.

    The file is read over the defaults: the built-in analysis templates (``canary-default``,
    ``post-switch``) stay available unless the file defines one of the same name, and a
    strategy key the file leaves out keeps its default. ``analysis: none`` turns a
    strategy's analysis off."""
    from opsbook.incidents._yamlfile import load_yaml  # noqa: PLC0415 - YAML with lines

    base = defaults()
    if not path.is_file():
        return base
    return _parse(load_yaml(path, what="the deployments file"), base)


def defaults() -> DeploymentsConfig:
    """The settings of the ``deployments.yaml`` template ``opsbook init`` writes."""
    from importlib.resources import as_file, files  # noqa: PLC0415

    from opsbook.incidents._yamlfile import load_yaml  # noqa: PLC0415

    template = files("opsbook.workspace").joinpath("templates", FILE)
    with as_file(template) as real:
        return _parse(load_yaml(Path(real), what="the built-in deployments file"), None)


_NO_BASE = DeploymentsConfig(
    strategies=Strategies(
        canary=CanaryStrategy(steps=(), analysis=None),
        blue_green=BlueGreenStrategy(analysis=None),
        rolling=RollingStrategy(analysis=None),
    )
)


def _parse(doc: YamlDoc, base: DeploymentsConfig | None) -> DeploymentsConfig:
    under = base or _NO_BASE
    data = doc.data
    if not isinstance(data, dict):
        raise doc.error(f"{FILE} must be a mapping (analysis:, strategies:)", hint=_HINT)
    _known_keys(doc, data, _TOP_KEYS, where=FILE)
    raw_analysis = data.get("analysis") or {}
    if not isinstance(raw_analysis, dict):
        raise doc.error(
            "analysis must be a mapping of template names", "analysis", hint="analysis: {NAME: …}"
        )
    templates = dict(under.analysis)
    for name, raw in raw_analysis.items():
        templates[str(name)] = _template(doc, str(name), raw)
    raw_strategies = data.get("strategies") or {}
    if not isinstance(raw_strategies, dict):
        raise doc.error(
            "strategies must be a mapping (canary, blue-green, rolling)",
            "strategies",
            hint="strategies: {canary: {...}}",
        )
    _known_keys(doc, raw_strategies, tuple(_STRATEGY_KEYS), where="strategies", key=("strategies",))
    old = under.strategies
    strategies = Strategies(
        canary=_canary(doc, raw_strategies.get("canary"), templates, old.canary),
        blue_green=_blue_green(doc, raw_strategies.get("blue-green"), templates, old.blue_green),
        rolling=_rolling(doc, raw_strategies.get("rolling"), templates, old.rolling),
    )
    return DeploymentsConfig(strategies=strategies, analysis=templates, source=str(doc.path))


def _known_keys(
    doc: YamlDoc,
    data: dict[Any, Any],
    known: tuple[str, ...],
    *,
    where: str,
    key: tuple[str | int, ...] = (),
) -> None:
    for k in data:
        if k not in known:
            close = difflib.get_close_matches(str(k), known, n=1)
            raise doc.error(
                f"{where}: unknown key {k!r}",
                *key,
                str(k),
                hint=(f"did you mean {close[0]!r}? " if close else "")
                + f"the keys here are: {', '.join(known)}",
            )


def _name(doc: YamlDoc, value: Any, what: str, *key: str | int) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise doc.error(
            f"{what} {value!r} is not a valid name",
            *key,
            hint="use letters, digits, '-', '_' or '.', starting with a letter or digit",
        )
    return value


def _template(doc: YamlDoc, name: str, raw: Any) -> AnalysisTemplate:
    key: tuple[str | int, ...] = ("analysis", name)
    _name(doc, name, "the analysis template name", *key)
    if not isinstance(raw, dict):
        raise doc.error(
            f"analysis {name} must be a mapping (on_inconclusive, metrics)",
            *key,
            hint=_HINT,
        )
    _known_keys(doc, raw, _TEMPLATE_KEYS, where=f"analysis {name}", key=key)
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


def _int(
    doc: YamlDoc,
    raw: dict[str, Any],
    name: str,
    key: tuple[str | int, ...],
    *,
    default: int,
    low: int,
    high: int,
    what: str,
    hint: str,
) -> int:
    value = raw.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise doc.error(
            f"{what}: {name} must be a whole number from {low} to {high}, not {value!r}",
            *key,
            name,
            hint=hint,
        )
    return value


def _seconds(
    doc: YamlDoc,
    raw: dict[str, Any],
    name: str,
    key: tuple[str | int, ...],
    *,
    low: float,
    high: float,
    what: str,
    positive: bool = False,
) -> float:
    from opsbook.incidents._yamlfile import duration  # noqa: PLC0415

    seconds = duration(doc, raw[name], *key, name)
    if (positive and seconds <= 0) or seconds < low or seconds > high:
        bound = "longer than 0 and " if positive else ""
        if low > 0:
            bound = f"at least {format_duration(low)} and "
        raise doc.error(
            f"{what}: {name} must be {bound}at most {format_duration(high)}, not {raw[name]!r}",
            *key,
            name,
            hint=f"e.g. {name}: 15s",
        )
    return seconds


def _metric(doc: YamlDoc, raw: Any, key: tuple[str | int, ...], *, template: str) -> Metric:
    if not isinstance(raw, dict):
        raise doc.error(f"analysis {template}: each metric must be a mapping", *key, hint=_HINT)
    _known_keys(doc, raw, _METRIC_KEYS, where=f"analysis {template} metric", key=key)
    for required in ("name", "provider", "query", "success_condition", "interval"):
        if required not in raw:
            raise doc.error(
                f"analysis {template}: a metric has no {required}",
                *key,
                hint=f"add {required}: to the metric (keys: {', '.join(_METRIC_KEYS)})",
            )
    name = _name(doc, raw["name"], "the metric name", *key, "name")
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
        raise doc.error(f"{what}: query must be text", *key, "query", hint=_HINT)
    if provider == "sandbox":
        _sandbox_query(doc, query, key, what)
    else:
        _prometheus_query(doc, query, key, what)
    condition = _condition(doc, raw["success_condition"], key, what)
    interval = _seconds(
        doc, raw, "interval", key, low=0.0, high=MAX_INTERVAL, what=what, positive=True
    )
    count = _int(
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
    failure_limit = _int(
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
    inconclusive_limit = _int(
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
    error_limit = _int(
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
    min_requests = _int(
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
        min_requests=min_requests,
    )


def _sandbox_query(doc: YamlDoc, query: str, key: tuple[str | int, ...], what: str) -> None:
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


def _prometheus_query(doc: YamlDoc, query: str, key: tuple[str | int, ...], what: str) -> None:
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


def _condition(doc: YamlDoc, raw: Any, key: tuple[str | int, ...], what: str) -> str:
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


def _analysis_ref(
    doc: YamlDoc,
    raw: dict[str, Any],
    key: tuple[str | int, ...],
    templates: dict[str, AnalysisTemplate],
    what: str,
    inherited: str | None,
) -> str | None:
    if "analysis" not in raw:
        return inherited
    name = raw["analysis"]
    if name is None or name == "none":
        return None
    if not isinstance(name, str) or name not in templates:
        close = difflib.get_close_matches(str(name), list(templates), n=1)
        raise doc.error(
            f"{what}: unknown analysis {name!r}",
            *key,
            "analysis",
            hint=(f"did you mean {close[0]}? " if close else "")
            + f"analysis templates: {', '.join(templates) or 'none'} "
            "(or analysis: none for no analysis)",
        )
    return name


def _section(doc: YamlDoc, raw: Any, name: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise doc.error(f"strategies.{name} must be a mapping", "strategies", name, hint=_HINT)
    _known_keys(
        doc, raw, _STRATEGY_KEYS[name], where=f"strategies.{name}", key=("strategies", name)
    )
    return raw


def _keep_old(doc: YamlDoc, raw: dict[str, Any], name: str, inherited: float) -> float:
    if "keep_old_for" not in raw:
        return inherited
    return _seconds(
        doc,
        raw,
        "keep_old_for",
        ("strategies", name),
        low=0.0,
        high=MAX_KEEP_OLD,
        what=f"strategies.{name}",
    )


def _blue_green(
    doc: YamlDoc, raw: Any, templates: dict[str, AnalysisTemplate], base: BlueGreenStrategy
) -> BlueGreenStrategy:
    sec = _section(doc, raw, "blue-green")
    key: tuple[str | int, ...] = ("strategies", "blue-green")
    return BlueGreenStrategy(
        analysis=_analysis_ref(doc, sec, key, templates, "strategies.blue-green", base.analysis),
        keep_old_for_s=_keep_old(doc, sec, "blue-green", base.keep_old_for_s),
    )


def _rolling(
    doc: YamlDoc, raw: Any, templates: dict[str, AnalysisTemplate], base: RollingStrategy
) -> RollingStrategy:
    sec = _section(doc, raw, "rolling")
    key: tuple[str | int, ...] = ("strategies", "rolling")
    return RollingStrategy(
        analysis=_analysis_ref(doc, sec, key, templates, "strategies.rolling", base.analysis),
        max_surge=_int(
            doc,
            sec,
            "max_surge",
            key,
            default=base.max_surge,
            low=1,
            high=100,
            what="strategies.rolling",
            hint="how many extra replicas may start at once, e.g. 1",
        ),
        keep_old_for_s=_keep_old(doc, sec, "rolling", base.keep_old_for_s),
    )


def _canary(
    doc: YamlDoc, raw: Any, templates: dict[str, AnalysisTemplate], base: CanaryStrategy
) -> CanaryStrategy:
    sec = _section(doc, raw, "canary")
    key: tuple[str | int, ...] = ("strategies", "canary")
    analysis = _analysis_ref(doc, sec, key, templates, "strategies.canary", base.analysis)
    keep = _keep_old(doc, sec, "canary", base.keep_old_for_s)
    if "steps" not in sec and base.steps:
        return CanaryStrategy(steps=base.steps, analysis=analysis, keep_old_for_s=keep)
    steps_raw = sec.get("steps")
    if not isinstance(steps_raw, list) or not steps_raw:
        raise doc.error(
            "strategies.canary needs steps",
            *key,
            hint="steps: [{weight: 10, pause: 15s}, {weight: 25, pause: 15s}, "
            "{weight: 50, pause: 15s}]",
        )
    steps: list[tuple[int, float]] = []
    for i, step in enumerate(steps_raw):
        skey = (*key, "steps", i)
        what = f"strategies.canary step {i + 1}"
        if not isinstance(step, dict):
            raise doc.error(f"{what} must be a mapping", *skey, hint="{weight: 10, pause: 15s}")
        _known_keys(doc, step, _STEP_KEYS, where=what, key=skey)
        for required in _STEP_KEYS:
            if required not in step:
                raise doc.error(f"{what} has no {required}", *skey, hint="{weight: 10, pause: 15s}")
        weight = _int(
            doc,
            step,
            "weight",
            skey,
            default=0,
            low=1,
            high=100,
            what=what,
            hint="weight: the percentage of traffic the new version gets at this step",
        )
        if steps and weight <= steps[-1][0]:
            raise doc.error(
                f"{what}: weight {weight} is not above the previous step's {steps[-1][0]}",
                *skey,
                "weight",
                hint="weights must increase, e.g. 10, 25, 50",
            )
        pause = _seconds(doc, step, "pause", skey, low=0.0, high=MAX_PAUSE, what=what)
        steps.append((weight, pause))
    return CanaryStrategy(steps=tuple(steps), analysis=analysis, keep_old_for_s=keep)
