"""deployments.yaml: the defaults (= the template `opsbook init` writes), a custom file read
over them, and every mistake reported at file:line with its fix (exit 2)."""

from __future__ import annotations

import textwrap
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from opsbook.deploy import config
from opsbook.deploy.config import AnalysisTemplate, DeploymentsConfig
from opsbook.errors import ValidationError
from opsbook.expressions import evaluate

TEMPLATE = Path(config.__file__).parents[1] / "workspace" / "templates" / "deployments.yaml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "deployments.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_a_missing_file_gives_the_template_settings(tmp_path: Path) -> None:
    built_in = config.load(tmp_path / "deployments.yaml")
    from_template = config.load(TEMPLATE)
    assert replace(built_in, source="") == replace(from_template, source="")
    canary = built_in.strategies.canary
    assert canary.steps == ((10, 15.0), (25, 15.0), (50, 15.0))
    assert canary.analysis == "canary-default" and canary.keep_old_for_s == 60.0
    assert built_in.strategies.blue_green.analysis == "post-switch"
    assert built_in.strategies.blue_green.keep_old_for_s == 60.0
    assert built_in.strategies.rolling.max_surge == 1
    default = built_in.analysis_for("canary")
    assert isinstance(default, AnalysisTemplate)
    assert [(m.name, m.query, m.success_condition) for m in default.metrics] == [
        ("error-ratio", "error_ratio", "result <= baseline + 0.02"),
        ("p99-latency", "p99_latency_ms", "result <= baseline * 2.0 + 150.0"),
        ("payment-success-rate", "payment_success_rate", "result >= baseline - 0.05"),
    ]
    shapes = [(m.interval_s, m.count, m.failure_limit, m.min_requests) for m in default.metrics]
    assert shapes == [(2.0, 7, 1, 3), (5.0, 3, 1, 5), (5.0, 3, 1, 5)]
    for m in default.metrics:
        assert m.provider == "sandbox" and m.window == "cumulative"
        assert m.consecutive_error_limit == 4 and m.uses_baseline
    assert default.duration_s == 15.0
    post = built_in.analysis_for("blue-green")
    assert post is not None and post.name == "post-switch"
    assert not any(m.uses_baseline for m in post.metrics)  # the old version has no traffic


def test_the_default_conditions_judge_numbers() -> None:
    default = config.defaults().analysis["canary-default"]
    error, latency, payments = (m.success_condition for m in default.metrics)
    assert evaluate(error, {"result": 0.021, "baseline": 0.002}) is True
    assert evaluate(error, {"result": 0.03, "baseline": 0.002}) is False
    assert evaluate(latency, {"result": 189.0, "baseline": 20.0}) is True
    assert evaluate(latency, {"result": 420.0, "baseline": 20.0}) is False  # +400 ms release
    assert evaluate(payments, {"result": 0.92, "baseline": 0.99}) is False  # 8 % failing


def test_a_file_is_read_over_the_defaults(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        analysis:
          prom-errors:
            on_inconclusive: abort
            metrics:
              - name: error-ratio
                provider: prometheus
                query: >-
                  sum(rate(http_requests_total{service="{{ service }}",version="{{ version }}",
                  status=~"5.."}[1m])) / sum(rate(http_requests_total{service="{{ service }}",
                  version="{{ version }}"}[1m]))
                success_condition: "result <= baseline + 0.01"
                interval: 30s
                count: 5
                failure_limit: 2
                inconclusive_limit: 1
                consecutive_error_limit: 2
        strategies:
          canary:
            steps: [{weight: 5, pause: 1m}, {weight: 100, pause: 0}]
            analysis: prom-errors
          rolling:
            analysis: none
        """,
    )
    cfg = config.load(path)
    assert cfg.source == str(path)
    assert cfg.strategies.canary.steps == ((5, 60.0), (100, 0.0))
    assert cfg.strategies.canary.keep_old_for_s == 60.0  # kept from the defaults
    assert cfg.analysis_for("rolling") is None
    assert cfg.analysis_for("blue-green") is cfg.analysis["post-switch"]  # built-in, kept
    prom = cfg.analysis_for("canary")
    assert prom is not None and prom.on_inconclusive == "abort"
    (m,) = prom.metrics
    assert (m.interval_s, m.count, m.failure_limit, m.inconclusive_limit) == (30.0, 5, 2, 1)
    assert m.consecutive_error_limit == 2 and m.uses_baseline


def test_to_dict_is_the_file_format(tmp_path: Path) -> None:
    """What the Kubernetes adapter and `--json` get is itself a valid deployments.yaml."""
    original = config.defaults()
    data = original.to_dict()
    data.pop("source")
    path = write(tmp_path, yaml.safe_dump(data, sort_keys=False))
    again = config.load(path)
    assert replace(again, source="") == replace(original, source="")


def test_an_unknown_strategy_name_is_refused() -> None:
    with pytest.raises(ValidationError, match="unknown strategy 'canery'") as caught:
        config.defaults().strategy("canery")
    assert caught.value.field == "strategy"


METRIC = """\
analysis:
  checks:
    metrics:
      - name: m
        provider: {provider}
        query: {query}
        success_condition: {condition}
        interval: {interval}
        count: {count}
        failure_limit: {failure_limit}
"""


def metric_file(**over: object) -> str:
    values: dict[str, object] = {
        "provider": "sandbox",
        "query": "error_ratio",
        "condition": '"result < 0.01"',
        "interval": "5s",
        "count": 3,
        "failure_limit": 1,
    }
    values.update(over)
    return METRIC.format(**values)


BAD = [
    # (file text, line, words in the message, words in the hint)
    ("stratgies: {}\n", 1, "unknown key 'stratgies'", "did you mean 'strategies'"),
    (
        metric_file().replace("failure_limit:", "failure_limt:"),
        10,
        "unknown key 'failure_limt'",
        "did you mean 'failure_limit'",
    ),
    (metric_file(interval="5 sec"), 8, "is not a duration", "30s"),
    (metric_file(interval="0s"), 8, "interval must be longer than 0", "interval"),
    (metric_file(query="error_rate"), 6, "unknown sandbox query 'error_rate'", "error_ratio,"),
    (metric_file(query="errors"), 6, "unknown sandbox query", "p99_latency_ms"),
    (metric_file(condition='"result <="'), 7, "does not compile", "baseline"),
    (
        metric_file(condition='"result <= baseline * 2 + 150"'),
        7,
        "cannot be evaluated on numbers",
        "write 2.0",
    ),
    (metric_file(condition='"value < 1.0"'), 7, "reads value, which is not measured", "result"),
    (metric_file(condition='"result + 1.0"'), 7, "not true or false", "result < 0.01"),
    (metric_file(condition="42"), 7, "success_condition must be text", "quote"),
    (metric_file(count=0), 9, "count must be a whole number from 1 to 1000", "measurements"),
    (
        metric_file(count=3, failure_limit=3),
        10,
        "failure_limit must be a whole number from 0 to 2",
        "below count",
    ),
    (metric_file(failure_limit=-1), 10, "failure_limit must be", "below count"),
    (
        metric_file(provider="prometheus", query="'sum(rate(x[5m])'"),
        6,
        "does not parse: the '(' is never closed (at character 4)",
        "expression browser",
    ),
    (
        metric_file(provider="prometheus", query="'rat(x[5m])'"),
        6,
        "unknown function 'rat' (did you mean rate?)",
        "expression browser",
    ),
    (
        metric_file(provider="prometheus", query="'x{service={{ service }}}'"),
        6,
        "must be a quoted string (\"...\"), found '{{ service }}'",
        'service="{{ service }}"',
    ),
    (
        metric_file(provider="prometheus", query="'x{job=\"a}'"),
        6,
        "unterminated string",
        "expression browser",
    ),
    (
        metric_file(provider="prometheus", query="'x{job=\"{{ serivce }}\"}'"),
        6,
        "unknown placeholder '{{ serivce }}'",
        "did you mean {{ service }}",
    ),
    (
        metric_file(
            provider="prometheus", query="'up{job=\"a\"}'", condition='"result >= baseline"'
        ),
        7,
        "uses baseline but the query has no {{ version }}",
        'version="{{ version }}"',
    ),
    (metric_file(provider="kubernetes"), 5, "provider must be sandbox or prometheus", "PromQL"),
    (
        metric_file() + "        min_requests: 0\n",
        11,
        "min_requests must be a whole number from 1",
        "fewest",
    ),
    (
        metric_file(provider="prometheus", query="up") + "        min_requests: 5\n",
        11,
        "min_requests applies only to the sandbox provider",
        "remove it",
    ),
    (
        metric_file() + "      - name: m\n        provider: sandbox\n        query: request_rate\n"
        '        success_condition: "result > 1.0"\n        interval: 5s\n',
        11,
        "two metrics are named 'm'",
        "own name",
    ),
    (
        metric_file().replace("    metrics:", "    on_inconclusive: maybe\n    metrics:"),
        3,
        "on_inconclusive must be continue or abort",
        "abort",
    ),
    ("analysis:\n  checks:\n    metrics: []\n", 3, "needs a list of metrics", "metrics:"),
    (
        "strategies:\n  canary:\n    steps: [{weight: 0, pause: 5s}]\n",
        3,
        "weight must be a whole number from 1 to 100, not 0",
        "percentage",
    ),
    (
        "strategies:\n  canary:\n    steps:\n      - {weight: 10, pause: 5s}\n"
        "      - {weight: 150, pause: 5s}\n",
        5,
        "step 2: weight must be a whole number from 1 to 100, not 150",
        "percentage",
    ),
    (
        "strategies:\n  canary:\n    steps:\n      - {weight: 50, pause: 5s}\n"
        "      - {weight: 25, pause: 5s}\n",
        5,
        "weight 25 is not above the previous step's 50",
        "increase",
    ),
    (
        "strategies:\n  canary:\n    steps: [{weight: 10}]\n",
        3,
        "step 1 has no pause",
        "pause: 15s",
    ),
    (
        "strategies:\n  canary:\n    steps: [{weight: 10, pause: 2h}]\n",
        3,
        "pause must be at most 1h",
        "pause: 15s",
    ),
    (
        "strategies:\n  canary:\n    analysis: canary-defualt\n",
        3,
        "unknown analysis 'canary-defualt'",
        "did you mean canary-default?",
    ),
    ("strategies:\n  blue_green: {}\n", 2, "unknown key 'blue_green'", "did you mean 'blue-green'"),
    (
        "strategies:\n  rolling:\n    max_surge: 0\n",
        3,
        "max_surge must be a whole number from 1 to 100",
        "replicas",
    ),
    ("analysis: [1, 2]\n", 1, "analysis must be a mapping", "NAME"),
    ("analysis:\n  bad name!: {}\n", 2, "is not a valid name", "letters"),
]


@pytest.mark.parametrize(("text", "line", "message", "hint"), BAD)
def test_mistakes_are_reported_at_their_line(
    tmp_path: Path, text: str, line: int, message: str, hint: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ValidationError) as caught:
        config.load(path)
    err = caught.value
    assert err.exit_code == 2
    assert message in err.message, err.render()
    assert err.hint is not None and hint in err.hint, err.render()
    assert err.location is not None
    assert (err.location.path, err.location.line) == (str(path), line), err.render()


def test_invalid_yaml_is_reported_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "strategies:\n  canary:\n    steps: [{weight: 10\n")
    with pytest.raises(ValidationError, match="invalid YAML") as caught:
        config.load(path)
    assert caught.value.location is not None and caught.value.location.path == str(path)


def test_every_error_names_a_fix_and_the_file_is_unchanged(tmp_path: Path) -> None:
    """Loading is read-only: a refused file is left exactly as written."""
    text = metric_file(query="error_rate")
    path = write(tmp_path, text)
    before = path.read_bytes()
    with pytest.raises(ValidationError):
        config.load(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deployments.yaml"]


def test_the_config_object_is_frozen() -> None:
    cfg: DeploymentsConfig = config.defaults()
    with pytest.raises(AttributeError):
        cfg.strategies.canary.steps = ()  # type: ignore[misc]
