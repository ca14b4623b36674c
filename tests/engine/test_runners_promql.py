"""The promql runner against a tiny fake Prometheus (a real HTTP server on 127.0.0.1)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from opsbook.engine.runners.base import RunContext, RunnerInput
from opsbook.engine.runners.promql import PromqlRunner
from opsbook.errors import ValidationError
from opsbook.runbooks.model import Block, Step, StepKind
from tests.actions.fakes import FakeServer, Received, Reply, closed_port_url


def vector(*samples: tuple[dict[str, str], str]) -> dict[str, Any]:
    result = [{"metric": m, "value": [1_700_000_000.0, v]} for m, v in samples]
    return {"status": "success", "data": {"resultType": "vector", "result": result}}


ANSWERS: dict[str, tuple[int, Any]] = {
    "error_rate": (200, vector(({}, "0.25"))),
    "up": (200, vector(({"job": "account"}, "1"), ({"job": "payment"}, "0"))),
    "absent_metric": (200, vector()),
    "scalar(1)": (200, {"status": "success", "data": {"resultType": "scalar", "result": [1, "1"]}}),
    "nan": (200, vector(({}, "NaN"))),
    "up[1m]": (
        200,
        {
            "status": "success",
            "data": {
                "resultType": "matrix",
                "result": [{"metric": {"job": "a"}, "values": [[1, "1"], [2, "0"]]}],
            },
        },
    ),
    "bad(": (
        400,
        {"status": "error", "errorType": "bad_data", "error": "parse error: unexpected end"},
    ),
}


def api(req: Received) -> Reply:
    query = req.query["query"][0]
    status, body = ANSWERS.get(query, (500, "no such canned query"))
    return Reply(status, body)


@pytest.fixture
def prometheus() -> Iterator[FakeServer]:
    with FakeServer({"/api/v1/query": api}) as srv:
        yield srv


def make_input(query: str, prometheus_url: str | None, **kw: Any) -> RunnerInput:
    environment = {"monitoring": {"prometheus": prometheus_url}} if prometheus_url else {}
    step = Step(
        id="p", title="P", kind=StepKind.PROMQL, line=1, block=Block("promql", query, {}, 1)
    )
    ctx = RunContext(
        execution_id="e1",
        environment_name="sandbox",
        environment=environment,
        workspace=Path("."),
        started_by="alice",
        dry_run=kw.pop("dry_run", False),
    )
    return RunnerInput(step=step, body=query, context=ctx, **kw)


async def test_a_single_sample_is_the_value(prometheus: FakeServer) -> None:
    result = await PromqlRunner().run(make_input("error_rate\n", prometheus.url + "/"))
    assert result.ok and result.fields["value"] == 0.25
    assert result.fields["series"] == [{"metric": {}, "value": 0.25}]
    assert prometheus.received[0].path == "/api/v1/query"
    assert prometheus.received[0].query == {"query": ["error_rate"]}


async def test_several_series_have_no_single_value(prometheus: FakeServer) -> None:
    result = await PromqlRunner().run(make_input("up", prometheus.url))
    assert result.ok and result.fields["value"] is None
    assert result.fields["series"] == [
        {"metric": {"job": "account"}, "value": 1.0},
        {"metric": {"job": "payment"}, "value": 0.0},
    ]
    empty = await PromqlRunner().run(make_input("absent_metric", prometheus.url))
    assert empty.ok and empty.fields["value"] is None and empty.fields["series"] == []


async def test_scalars_matrices_and_nan(prometheus: FakeServer) -> None:
    scalar = await PromqlRunner().run(make_input("scalar(1)", prometheus.url))
    assert scalar.fields["value"] == 1.0
    matrix = await PromqlRunner().run(make_input("up[1m]", prometheus.url))
    assert matrix.fields["series"][0]["values"] == [[1.0, 1.0], [2.0, 0.0]]
    nan = await PromqlRunner().run(make_input("nan", prometheus.url))
    assert nan.ok and nan.fields["value"] is None


async def test_a_prometheus_error_fails_the_step(prometheus: FakeServer) -> None:
    result = await PromqlRunner().run(make_input("bad(", prometheus.url))
    assert not result.ok and result.error == "Prometheus: bad_data: parse error: unexpected end"
    odd = await PromqlRunner().run(make_input("unknown", prometheus.url))
    assert not odd.ok and "HTTP 500" in (odd.error or "")


async def test_an_unreachable_prometheus_fails_the_step() -> None:
    url = closed_port_url()
    result = await PromqlRunner().run(make_input("up", url, timeout=5))
    assert not result.ok and result.error == f"Prometheus: connection refused to {url}"


async def test_no_prometheus_configured_is_a_validation_error() -> None:
    with pytest.raises(ValidationError, match=r"monitoring\.prometheus") as info:
        await PromqlRunner().run(make_input("up", None))
    assert info.value.hint and "environments/sandbox.yaml" in info.value.hint


async def test_a_dry_run_queries_nothing(prometheus: FakeServer) -> None:
    result = await PromqlRunner().run(make_input("up", prometheus.url, dry_run=True))
    assert result.ok and result.fields["dry_run"] is True and prometheus.received == []
