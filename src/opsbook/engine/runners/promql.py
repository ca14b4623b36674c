"""``promql`` blocks: an instant query against the environment's Prometheus.

``GET {monitoring.prometheus}/api/v1/query?query=BODY``. Fields: ``value`` (the sample's value
when the result is exactly one sample or a scalar, else None), ``series`` (``[{metric,
value}]``; a range-vector result also gives each series its ``values``), ``duration``.
Non-finite samples (NaN, ±Inf) read as None. Prometheus unreachable or answering an error is
``ok=False`` with the reason.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any, ClassVar

from opsbook.engine.runners._common import bounded, seconds
from opsbook.engine.runners.base import RunnerInput, RunnerResult
from opsbook.engine.runners.http import describe_error, ssl_context
from opsbook.errors import ValidationError

DEFAULT_TIMEOUT = 30.0


def prometheus_url(environment: Any, environment_name: str) -> str:
    monitoring = environment.get("monitoring") if isinstance(environment, Mapping) else None
    url = monitoring.get("prometheus") if isinstance(monitoring, Mapping) else None
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ValidationError(
            f"environment {environment_name!r} has no Prometheus URL (monitoring.prometheus)",
            hint=f"add `monitoring: {{prometheus: http://HOST:9090}}` to "
            f"environments/{environment_name}.yaml",
        )
    return url.rstrip("/")


def _number(text: Any) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def read_result(data: Any) -> tuple[float | None, list[dict[str, Any]]]:
    """(value, series) from the ``data`` of a Prometheus query response."""
    kind = data.get("resultType")
    result = data.get("result")
    if kind == "scalar" and isinstance(result, list) and len(result) == 2:
        return _number(result[1]), []
    if kind == "vector" and isinstance(result, list):
        series: list[dict[str, Any]] = [
            {"metric": dict(s.get("metric") or {}), "value": _number((s.get("value") or [0, 0])[1])}
            for s in result
        ]
        return (series[0]["value"] if len(series) == 1 else None), series
    if kind == "matrix" and isinstance(result, list):
        series = []
        for s in result:  # a range vector: every sample, and the last as the value
            values = [[float(t), _number(v)] for t, v in s.get("values") or []]
            last = values[-1][1] if values else None
            series.append({"metric": dict(s.get("metric") or {}), "value": last, "values": values})
        return None, series
    return None, []


async def _query(base: str, query: str) -> tuple[int, Any]:
    import httpx  # noqa: PLC0415 - deferred: import cost

    # No client timeout: bounded() in run() times the whole query out.
    async with httpx.AsyncClient(verify=ssl_context(), timeout=None) as client:  # noqa: S113
        response = await client.get(f"{base}/api/v1/query", params={"query": query})
        try:
            payload = response.json()
        except ValueError:
            payload = None
        return response.status_code, payload


class PromqlRunner:
    kind: ClassVar[str] = "promql"
    supports_dry_run: ClassVar[bool] = False

    async def run(self, inp: RunnerInput) -> RunnerResult:
        started = time.perf_counter()
        base = prometheus_url(inp.context.environment, inp.context.environment_name)
        query = inp.body.strip()
        if inp.context.dry_run:
            return RunnerResult(True, {"would_query": query, "dry_run": True}, 0.0)
        timeout = inp.timeout if inp.timeout is not None else DEFAULT_TIMEOUT
        try:
            state, answer = await bounded(_query(base, query), timeout=timeout, cancel=inp.cancel)
        except Exception as exc:  # httpx's error tree: a failed step, not a crash
            return _failed(started, f"Prometheus: {describe_error(exc, base)}")
        if state == "timeout":
            return _failed(started, f"timed out after {seconds(timeout)}", timed_out=True)
        if state == "cancelled" or answer is None:
            return _failed(started, "cancelled")
        status, payload = answer
        if not isinstance(payload, dict) or payload.get("status") != "success":
            detail = (
                f"{payload.get('errorType', 'error')}: {payload.get('error', '')}"
                if isinstance(payload, dict)
                else f"HTTP {status}, not a Prometheus API answer"
            )
            return _failed(started, f"Prometheus: {detail}")
        value, series = read_result(payload.get("data") or {})
        duration = time.perf_counter() - started
        fields: dict[str, Any] = {"value": value, "series": series, "duration": duration}
        return RunnerResult(True, fields, duration)


def _failed(started: float, error: str, *, timed_out: bool = False) -> RunnerResult:
    duration = time.perf_counter() - started
    fields: dict[str, Any] = {"value": None, "series": [], "duration": duration}
    return RunnerResult(False, fields, duration, error=error, timed_out=timed_out)
