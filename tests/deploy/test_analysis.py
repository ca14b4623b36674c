"""The analysis runner: Argo's semantics over the sandbox's counters (a scripted sampler and a
virtual clock, so nothing waits) and over a real Prometheus (the `prometheus` binary)."""

from __future__ import annotations

import asyncio
import contextvars
import math
import textwrap
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from opsbook.deploy import config
from opsbook.deploy._counters import histogram_quantile
from opsbook.deploy.analysis import (
    AnalysisResult,
    check_runnable,
    problems,
    render,
    run_analysis,
)
from opsbook.deploy.config import AnalysisTemplate
from opsbook.errors import UsageError

# -- a virtual clock and a scripted sampler ---------------------------------------------------

#: Virtual seconds since the analysis started, per metric task (each metric runs in its own
#: task, which has its own copy of the context).
NOW: contextvars.ContextVar[float] = contextvars.ContextVar("now", default=0.0)


class Clock:
    """Sleeps in virtual time: advances the calling task's clock, then yields to the others."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        NOW.set(NOW.get() + seconds)
        await asyncio.sleep(0)


def slot(
    *,
    requests: int = 0,
    errors: int = 0,
    latency: list[tuple[float | str, int]] | None = None,
    succeeded: int = 0,
    failed: int = 0,
) -> dict[str, Any]:
    buckets = [[le, n] for le, n in (latency or [(0.1, 0), ("+Inf", 0)])]
    return {
        "requests": requests,
        "errors": errors,
        "latency": {"buckets": buckets, "count": int(buckets[-1][1]), "sum": 0.0},
        "payments": {"succeeded": succeeded, "failed": failed},
    }


Rates = Callable[[float], Mapping[str, Mapping[str, Any]]]


def steady(
    *,
    canary_rps: float = 10.0,
    canary_error: float = 0.0,
    stable_rps: float = 40.0,
    stable_error: float = 0.0,
    canary_slow: bool = False,
    canary_pay_fail: float = 0.01,
) -> Rates:
    """Counters at virtual time t for constant traffic. Latency: 90 % under 50 ms, the rest
    under 100 ms (or, when ``canary_slow``, every canary request between 0.5 and 1 s)."""

    def counters(rps: float, error: float, t: float, slow: bool, pay_fail: float) -> dict[str, Any]:
        n = int(rps * t)
        if slow:
            latency: list[tuple[float | str, int]] = [
                (0.05, 0),
                (0.1, 0),
                (0.5, 0),
                (1.0, n),
                ("+Inf", n),
            ]
        else:
            latency = [(0.05, int(n * 0.9)), (0.1, n), (0.5, n), (1.0, n), ("+Inf", n)]
        payments = n // 4
        failed = int(payments * pay_fail)
        return slot(
            requests=n,
            errors=int(n * error),
            latency=latency,
            succeeded=payments - failed,
            failed=failed,
        )

    def at(t: float) -> Mapping[str, Mapping[str, Any]]:
        return {
            "canary": counters(canary_rps, canary_error, t, canary_slow, canary_pay_fail),
            "stable": counters(stable_rps, stable_error, t, False, 0.01),
        }

    return at


class Sampler:
    """The ``sandbox`` callable: the scripted counters at the calling metric's virtual time;
    ``fail_at`` virtual times raise (a sandbox that cannot be read)."""

    def __init__(self, rates: Rates, fail_at: set[float] | None = None) -> None:
        self.rates = rates
        self.fail_at = fail_at or set()
        self.calls: list[float] = []

    async def __call__(self) -> Mapping[str, Mapping[str, Any]]:
        t = NOW.get()
        self.calls.append(t)
        if t in self.fail_at:
            raise ConnectionError("the sandbox control socket is not answering")
        return self.rates(t)


def template(text: str, tmp_path: Path, name: str = "t") -> AnalysisTemplate:
    path = tmp_path / "deployments.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return config.load(path).analysis[name]


def sandbox_metric(
    name: str,
    query: str,
    condition: str,
    *,
    count: int = 3,
    failure_limit: int = 1,
    interval: str = "5s",
    extra: str = "",
) -> str:
    return (
        f"      - name: {name}\n        provider: sandbox\n        query: {query}\n"
        f'        success_condition: "{condition}"\n        interval: {interval}\n'
        f"        count: {count}\n        failure_limit: {failure_limit}\n{extra}"
    )


def one_template(*metrics: str, on_inconclusive: str = "continue") -> str:
    return f"analysis:\n  t:\n    on_inconclusive: {on_inconclusive}\n    metrics:\n" + "".join(
        metrics
    )


async def run(
    tmpl: AnalysisTemplate, sampler: Sampler, recorded: list[dict[str, Any]] | None = None
) -> tuple[AnalysisResult, Clock]:
    clock = Clock()
    result = await run_analysis(
        tmpl,
        sandbox=sampler,
        prometheus_url=None,
        context={"service": "payment", "version": "1.5.0", "stable_version": "1.4.2"},
        record=recorded.append if recorded is not None else None,
        clock=clock,
    )
    return result, clock


def by_metric(result: AnalysisResult, name: str) -> list[dict[str, Any]]:
    return [m for m in result.measurements if m["metric"] == name]


# -- the sandbox provider ---------------------------------------------------------------------


async def test_a_healthy_canary_passes_and_every_measurement_is_recorded_live(
    tmp_path: Path,
) -> None:
    tmpl = config.defaults().analysis["canary-default"]
    recorded: list[dict[str, Any]] = []
    result, clock = await run(tmpl, Sampler(steady()), recorded)
    assert result.verdict == "successful", result.reason
    assert result.metrics == {
        "error-ratio": "successful",
        "p99-latency": "successful",
        "payment-success-rate": "successful",
    }
    assert recorded == list(result.measurements)
    assert len(result.measurements) == 13  # error ratio 7 (every 2 s), the others 3 each
    first = by_metric(result, "error-ratio")[0]
    assert set(first) >= {
        "metric",
        "provider",
        "query",
        "at",
        "value",
        "baseline",
        "condition",
        "verdict",
        "reason",
    }
    assert first["provider"] == "sandbox" and first["query"] == "error_ratio"
    assert first["value"] == 0.0 and first["baseline"] == 0.0
    assert first["condition"] == "result <= baseline + 0.02"
    assert first["requests"] == 20  # 10 rps x 2 s
    assert datetime.fromisoformat(first["at"]).utcoffset() is not None
    assert first["at"].endswith("Z")
    # p99 of 90 % < 50 ms, 10 % in 50-100 ms: rank 49.5 of 50 falls in the second bucket
    p99 = by_metric(result, "p99-latency")[0]
    assert p99["value"] == pytest.approx(50.0 + 50.0 * (49.5 - 45) / 5)  # 95 ms
    data = result.to_dict()
    assert data["verdict"] == "successful" and len(data["measurements"]) == 13
    last = by_metric(result, "error-ratio")[-1]
    assert last["requests"] == 140  # cumulative: everything since the start, 10 rps x 14 s
    assert data["started_at"] <= data["finished_at"]
    assert sorted(set(clock.sleeps)) == [2.0, 5.0]
    assert result.reason == (
        "every metric of canary-default passed (error-ratio 7 of 7 successful, "
        "p99-latency 3 of 3 successful, payment-success-rate 3 of 3 successful)"
    )


async def test_metrics_run_at_the_same_time(tmp_path: Path) -> None:
    tmpl = template(
        one_template(
            sandbox_metric("a", "error_ratio", "result < 0.5", interval="5s"),
            sandbox_metric("b", "request_rate", "result > 1.0", interval="7s"),
        ),
        tmp_path,
    )
    result, clock = await run(tmpl, Sampler(steady()))
    assert result.verdict == "successful", result.reason
    # one after the other would sleep 5, 5, 5, 7, 7, 7
    assert clock.sleeps[:2] == [5.0, 7.0]
    rates = [m["value"] for m in by_metric(result, "b")]
    assert rates == [pytest.approx(10.0)] * 3  # Δrequests / interval


async def test_a_failing_metric_stops_the_analysis_at_once(tmp_path: Path) -> None:
    tmpl = template(
        one_template(
            sandbox_metric("error-ratio", "error_ratio", "result <= baseline + 0.02"),
            sandbox_metric("slow-check", "request_rate", "result > 1.0", count=20, failure_limit=0),
        ),
        tmp_path,
    )
    recorded: list[dict[str, Any]] = []
    result, _ = await run(tmpl, Sampler(steady(canary_error=0.10)), recorded)
    assert result.verdict == "failed"
    errors = by_metric(result, "error-ratio")
    assert [m["verdict"] for m in errors] == ["failed", "failed"]  # failure_limit 1: 2nd fails
    assert errors[0]["value"] == pytest.approx(0.10) and errors[0]["baseline"] == 0.0
    assert "does not meet result <= baseline + 0.02" in errors[0]["reason"]
    assert len(by_metric(result, "slow-check")) <= 2  # cancelled, not run to 20
    assert result.metrics == {"error-ratio": "failed"}
    assert result.reason.startswith("error-ratio failed: 2 of 2 measurements failed")
    assert "failure_limit 1" in result.reason
    assert recorded == list(result.measurements)


async def test_a_latency_regression_fails_the_p99_metric() -> None:
    tmpl = config.defaults().analysis["canary-default"]
    result, _ = await run(tmpl, Sampler(steady(canary_slow=True)))
    assert result.verdict == "failed"
    (p99,) = by_metric(result, "p99-latency")[:1]
    # every canary request in (0.5 s, 1 s]: rank 49.5 of 50 -> 500 + 500 * 49.5/50 ms
    assert p99["value"] == pytest.approx(995.0)
    assert p99["baseline"] == pytest.approx(95.0)
    assert result.metrics["p99-latency"] == "failed"


async def test_the_payment_success_rate_is_the_business_kpi() -> None:
    tmpl = config.defaults().analysis["canary-default"]
    result, _ = await run(tmpl, Sampler(steady(canary_pay_fail=0.5)))
    assert result.verdict == "failed"
    pay = by_metric(result, "payment-success-rate")[0]
    assert pay["value"] == pytest.approx(6 / 12)  # 12 payments in 5 s, 6 failed
    assert pay["requests"] == 12
    assert pay["verdict"] == "failed"


async def test_too_few_requests_is_inconclusive_not_a_pass(tmp_path: Path) -> None:
    tmpl = template(one_template(sandbox_metric("e", "error_ratio", "result < 0.5")), tmp_path)
    result, _ = await run(tmpl, Sampler(steady(canary_rps=0.4)))  # 2 requests per 5 s
    assert result.verdict == "inconclusive"
    assert {m["verdict"] for m in result.measurements} == {"inconclusive"}
    assert (
        "too few requests to the new version: 2 in 5s (min_requests 5)"
        in (result.measurements[0]["reason"])
    )
    assert "3 of 3 measurements without a result" in result.reason


async def test_inconclusive_limit_and_no_success_at_all(tmp_path: Path) -> None:
    extra = "        inconclusive_limit: 3\n"
    tmpl = template(
        one_template(sandbox_metric("e", "error_ratio", "result < 0.5", extra=extra)), tmp_path
    )
    result, _ = await run(tmpl, Sampler(steady(canary_rps=0.4)))
    # within the limit, but nothing was ever judged: not a pass
    assert result.verdict == "inconclusive"
    assert "none of 3 measurements succeeded" in result.reason


async def test_no_baseline_when_the_old_version_had_too_few_requests(tmp_path: Path) -> None:
    tmpl = template(
        one_template(
            sandbox_metric("relative", "error_ratio", "result <= baseline + 0.02"),
            sandbox_metric("absolute", "error_ratio", "result <= 0.02"),
        ),
        tmp_path,
    )
    result, _ = await run(tmpl, Sampler(steady(stable_rps=0.2)))
    relative = by_metric(result, "relative")
    assert all(m["baseline"] is None and m["verdict"] == "inconclusive" for m in relative)
    assert "no baseline" in relative[0]["reason"]
    assert {m["verdict"] for m in by_metric(result, "absolute")} == {"successful"}
    assert result.verdict == "inconclusive"
    assert result.metrics == {"relative": "inconclusive", "absolute": "successful"}


async def test_a_sandbox_that_cannot_be_read_is_an_error(tmp_path: Path) -> None:
    extra = "        consecutive_error_limit: 1\n"
    tmpl = template(
        one_template(
            sandbox_metric(
                "e", "error_ratio", "result < 0.5", count=6, failure_limit=0, extra=extra
            )
        ),
        tmp_path,
    )
    sampler = Sampler(steady(), fail_at={10.0, 15.0})
    result, _ = await run(tmpl, sampler)
    assert result.verdict == "error"
    assert [m["verdict"] for m in result.measurements] == ["successful", "error", "error"]
    assert "control socket is not answering" in result.measurements[1]["reason"]
    assert "2 measurements in a row could not be taken" in result.reason
    assert max(sampler.calls) == 15.0  # stopped: no measurement after the limit


async def test_errors_below_the_limit_are_not_a_pass(tmp_path: Path) -> None:
    """Argo would call a metric whose every measurement errored "successful"."""
    tmpl = template(one_template(sandbox_metric("e", "error_ratio", "result < 0.5")), tmp_path)
    result, _ = await run(tmpl, Sampler(steady(), fail_at={0.0, 5.0, 10.0, 15.0}))
    assert result.verdict == "error"
    assert "none of 3 measurements could be taken" in result.reason


async def test_a_failed_first_sample_costs_one_measurement(tmp_path: Path) -> None:
    tmpl = template(one_template(sandbox_metric("e", "error_ratio", "result < 0.5")), tmp_path)
    result, _ = await run(tmpl, Sampler(steady(), fail_at={0.0}))
    assert [m["verdict"] for m in result.measurements] == ["error", "successful", "successful"]
    assert "the first read failed: the sandbox control socket" in result.measurements[0]["reason"]
    assert result.verdict == "inconclusive"  # 1 without a result > inconclusive_limit 0


async def test_a_counter_that_went_back_is_inconclusive(tmp_path: Path) -> None:
    base = steady()

    def restarted(t: float) -> Mapping[str, Mapping[str, Any]]:
        data = dict(base(t))
        if t >= 10.0:  # the canary restarted at 10 s: its counters start again
            data["canary"] = base(t - 10.0)["canary"]
        return data

    tmpl = template(one_template(sandbox_metric("e", "error_ratio", "result < 0.5")), tmp_path)
    result, _ = await run(tmpl, Sampler(restarted))
    verdicts = [m["verdict"] for m in result.measurements]
    assert verdicts == ["successful", "inconclusive", "successful"]
    assert "went back" in result.measurements[1]["reason"]


async def test_no_sandbox_is_refused_before_any_measurement(tmp_path: Path) -> None:
    tmpl = config.defaults().analysis["canary-default"]
    result = await run_analysis(tmpl, sandbox=None, prometheus_url=None, context={})
    assert result.verdict == "error" and result.measurements == ()
    assert "use provider: prometheus" in result.reason
    with pytest.raises(UsageError, match="cannot run") as caught:
        check_runnable(tmpl, sandbox_available=False, prometheus_url=None, context={})
    assert caught.value.exit_code == 2


@pytest.mark.parametrize(
    ("buckets", "expected"),
    [
        # 100 observations, 50 under 0.1, 100 under 0.2: rank 99 -> 0.1 + 0.1 * 49/50
        ([(0.1, 50.0), (0.2, 100.0), (math.inf, 100.0)], 0.198),
        # the rank falls in +Inf: the highest finite bound
        ([(0.1, 50.0), (0.2, 90.0), (math.inf, 100.0)], 0.2),
        # the first bucket interpolates from 0
        ([(0.5, 100.0), (math.inf, 100.0)], 0.495),
        # no observations, or no +Inf bucket: no value (Prometheus: NaN)
        ([(0.1, 0.0), (math.inf, 0.0)], None),
        ([(0.1, 5.0), (0.2, 10.0)], None),
        # a count that goes down is raised to the one below (Prometheus' fix)
        ([(0.1, 60.0), (0.2, 50.0), (math.inf, 100.0)], 0.2),
    ],
)
def test_histogram_quantile_matches_prometheus(
    buckets: list[tuple[float, float]], expected: float | None
) -> None:
    got = histogram_quantile(0.99, buckets)
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected)


def test_placeholders_refuse_values_that_could_break_the_query() -> None:
    q = 'x{service="{{ service }}",version="{{version}}"}'
    assert render(q, {"service": "payment", "version": "1.5.0+build.7"}) == (
        'x{service="payment",version="1.5.0+build.7"}'
    )
    for bad in ['1.5.0"} or vector(1) #', "a b", "", "x\\"]:
        with pytest.raises(ValueError, match="cannot be put in a query"):
            render(q, {"service": "payment", "version": bad})


# -- a real Prometheus ------------------------------------------------------------------------

PROMETHEUS_METRICS = """\
analysis:
  t:
    metrics:
      - name: canary-errors
        provider: prometheus
        query: >-
          (sum(rate(http_requests_total{service="{{ service }}",version="{{ version }}",
          status=~"5.."}[10s])) or vector(0))
          / sum(rate(http_requests_total{service="{{ service }}",version="{{ version }}"}[10s]))
        success_condition: "result <= baseline + 0.02"
        interval: 1s
        count: 2
        failure_limit: 0
"""


def prometheus_template(tmp_path: Path, query: str, condition: str) -> AnalysisTemplate:
    return template(
        "analysis:\n  t:\n    metrics:\n      - name: m\n        provider: prometheus\n"
        f"        query: '{query}'\n        success_condition: \"{condition}\"\n"
        "        interval: 1s\n        count: 1\n",
        tmp_path,
    )


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prometheus scraping a payment service whose canary (1.5.0) answers 10 % 5xx
    and whose stable version (1.4.2) answers none."""
    import threading

    from prometheus_client import CollectorRegistry, Counter

    from tests.monitoring.test_integration_prometheus import (
        PROMETHEUS,
        prometheus_scraping,
        until,
    )

    if PROMETHEUS is None:
        pytest.skip("prometheus is not installed")
    registry = CollectorRegistry()
    requests = Counter("http_requests", "", ["service", "version", "status"], registry=registry)
    stop = threading.Event()

    def traffic() -> None:
        while not stop.wait(0.1):
            requests.labels("payment", "1.5.0", "200").inc(18)
            requests.labels("payment", "1.5.0", "500").inc(2)
            requests.labels("payment", "1.4.2", "200").inc(20)

    feeder = threading.Thread(target=traffic, daemon=True)
    feeder.start()
    try:
        with prometheus_scraping(tmp_path_factory.mktemp("prom"), registry, "payment") as base:
            import httpx

            def ready() -> bool:
                body = httpx.get(
                    base + "/api/v1/query",
                    params={
                        "query": 'rate(http_requests_total{version="1.5.0",status="500"}[10s])'
                    },
                ).json()
                return bool(body["data"]["result"])

            until(ready, 60)
            yield base
    finally:
        stop.set()
        feeder.join(5)


CONTEXT = {"service": "payment", "version": "1.5.0", "stable_version": "1.4.2", "namespace": ""}


@pytest.mark.slow
async def test_prometheus_judges_the_canary_against_its_baseline(
    prometheus: str, tmp_path: Path
) -> None:
    tmpl = template(PROMETHEUS_METRICS, tmp_path)
    recorded: list[dict[str, Any]] = []
    result = await run_analysis(
        tmpl, sandbox=None, prometheus_url=prometheus, context=CONTEXT, record=recorded.append
    )
    assert result.verdict == "failed", result.reason
    m = recorded[0]  # failure_limit 0: the first failed measurement ends it
    assert len(recorded) == 1
    assert m["provider"] == "prometheus"
    assert 'version="1.5.0"' in m["query"] and "{{" not in m["query"]
    assert m["value"] == pytest.approx(0.1, abs=0.03)
    assert m["baseline"] == pytest.approx(0.0, abs=0.001)
    assert m["verdict"] == "failed"


@pytest.mark.slow
async def test_prometheus_passes_the_stable_version(prometheus: str, tmp_path: Path) -> None:
    tmpl = template(PROMETHEUS_METRICS, tmp_path)
    context = {**CONTEXT, "version": "1.4.2", "stable_version": ""}
    result = await run_analysis(tmpl, sandbox=None, prometheus_url=prometheus, context=context)
    # no stable version: nothing to compare with
    assert result.verdict == "inconclusive", result.reason
    absolute = prometheus_template(
        tmp_path,
        'sum(rate(http_requests_total{version="{{ version }}",status=~"5.."}[10s])) or vector(0)',
        "result < 0.01",
    )
    result = await run_analysis(absolute, sandbox=None, prometheus_url=prometheus, context=context)
    assert result.verdict == "successful", result.reason
    assert result.measurements[0]["value"] == 0.0


@pytest.mark.slow
async def test_prometheus_refusing_a_query_is_an_error_with_its_message(
    prometheus: str, tmp_path: Path
) -> None:
    # parses, but rate() needs a range: Prometheus answers 400 bad_data
    tmpl = prometheus_template(tmp_path, "rate(http_requests_total)", "result < 1.0")
    result = await run_analysis(tmpl, sandbox=None, prometheus_url=prometheus, context=CONTEXT)
    (m,) = result.measurements
    assert m["verdict"] == "error"
    assert m["reason"].startswith("Prometheus answered HTTP 400: bad_data:")
    assert "range vector" in m["reason"]
    assert result.verdict == "error"  # its only measurement could not be taken


@pytest.mark.slow
async def test_prometheus_empty_and_multiple_series(prometheus: str, tmp_path: Path) -> None:
    empty = prometheus_template(tmp_path, 'sum(no_such_metric{job="x"})', "result < 1.0")
    result = await run_analysis(empty, sandbox=None, prometheus_url=prometheus, context=CONTEXT)
    assert result.measurements[0]["verdict"] == "inconclusive"
    assert result.measurements[0]["reason"] == "the query returned no data"
    many = prometheus_template(tmp_path, "http_requests_total", "result < 1.0")
    result = await run_analysis(many, sandbox=None, prometheus_url=prometheus, context=CONTEXT)
    assert result.measurements[0]["verdict"] == "error"
    assert "aggregate it" in result.measurements[0]["reason"]


async def test_prometheus_that_cannot_be_reached_is_an_error(tmp_path: Path) -> None:
    from tests.conftest import free_port

    tmpl = prometheus_template(tmp_path, "vector(1)", "result < 2.0")
    url = f"http://127.0.0.1:{free_port()}"
    result = await run_analysis(tmpl, sandbox=None, prometheus_url=url, context=CONTEXT)
    assert result.verdict == "error"
    assert "could not be reached" in result.measurements[0]["reason"]


def test_prometheus_needs_a_url_and_safe_context(tmp_path: Path) -> None:
    tmpl = template(PROMETHEUS_METRICS, tmp_path)
    found = problems(tmpl, sandbox_available=True, prometheus_url=None, context=CONTEXT)
    assert found == [
        "metric canary-errors queries Prometheus, but the environment has no "
        "monitoring.prometheus URL"
    ]
    bad = {**CONTEXT, "version": '1.5.0",x="'}
    found = problems(tmpl, sandbox_available=True, prometheus_url="http://p:9090", context=bad)
    assert len(found) == 1 and "{{ version }} is '1.5.0\",x=\"'" in found[0]
    result = asyncio.run(
        run_analysis(tmpl, sandbox=None, prometheus_url="http://p:9090", context=bad)
    )
    assert result.verdict == "error" and result.measurements == ()
