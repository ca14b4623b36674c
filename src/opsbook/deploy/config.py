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
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opsbook.deploy._analysis_spec import (
    PLACEHOLDER,
    PLACEHOLDERS,
    PROVIDERS,
    SANDBOX_QUERIES,
    AnalysisTemplate,
    Metric,
    parse_template,
)
from opsbook.deploy._yamlcheck import HINT, known_keys, seconds, whole_number
from opsbook.durations import format_duration
from opsbook.errors import ValidationError

if TYPE_CHECKING:
    from opsbook.incidents._yamlfile import YamlDoc

__all__ = [
    "PLACEHOLDER",
    "PLACEHOLDERS",
    "PROVIDERS",
    "SANDBOX_QUERIES",
    "AnalysisTemplate",
    "BlueGreenStrategy",
    "CanaryStrategy",
    "DeploymentsConfig",
    "Metric",
    "RollingStrategy",
    "Strategies",
    "defaults",
    "load",
]

FILE = "deployments.yaml"
MAX_PAUSE = 3600.0
MAX_KEEP_OLD = 86400.0
_TOP_KEYS = ("analysis", "strategies")
_STRATEGY_KEYS = {
    "canary": ("steps", "analysis", "keep_old_for"),
    "blue-green": ("analysis", "keep_old_for"),
    "rolling": ("analysis", "max_surge", "keep_old_for"),
}
_STEP_KEYS = ("weight", "pause")


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
        raise doc.error(f"{FILE} must be a mapping (analysis:, strategies:)", hint=HINT)
    known_keys(doc, data, _TOP_KEYS, where=FILE)
    raw_analysis = data.get("analysis") or {}
    if not isinstance(raw_analysis, dict):
        raise doc.error(
            "analysis must be a mapping of template names", "analysis", hint="analysis: {NAME: …}"
        )
    templates = dict(under.analysis)
    for name, raw in raw_analysis.items():
        templates[str(name)] = parse_template(doc, str(name), raw)
    raw_strategies = data.get("strategies") or {}
    if not isinstance(raw_strategies, dict):
        raise doc.error(
            "strategies must be a mapping (canary, blue-green, rolling)",
            "strategies",
            hint="strategies: {canary: {...}}",
        )
    known_keys(doc, raw_strategies, tuple(_STRATEGY_KEYS), where="strategies", key=("strategies",))
    old = under.strategies
    strategies = Strategies(
        canary=_canary(doc, raw_strategies.get("canary"), templates, old.canary),
        blue_green=_blue_green(doc, raw_strategies.get("blue-green"), templates, old.blue_green),
        rolling=_rolling(doc, raw_strategies.get("rolling"), templates, old.rolling),
    )
    return DeploymentsConfig(strategies=strategies, analysis=templates, source=str(doc.path))


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
        raise doc.error(f"strategies.{name} must be a mapping", "strategies", name, hint=HINT)
    known_keys(doc, raw, _STRATEGY_KEYS[name], where=f"strategies.{name}", key=("strategies", name))
    return raw


def _keep_old(doc: YamlDoc, raw: dict[str, Any], name: str, inherited: float) -> float:
    if "keep_old_for" not in raw:
        return inherited
    return seconds(
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
        max_surge=whole_number(
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
        known_keys(doc, step, _STEP_KEYS, where=what, key=skey)
        for required in _STEP_KEYS:
            if required not in step:
                raise doc.error(f"{what} has no {required}", *skey, hint="{weight: 10, pause: 15s}")
        weight = whole_number(
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
        pause = seconds(doc, step, "pause", skey, low=0.0, high=MAX_PAUSE, what=what)
        steps.append((weight, pause))
    return CanaryStrategy(steps=tuple(steps), analysis=analysis, keep_old_for_s=keep)
