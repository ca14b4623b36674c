"""http.wait_until against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from opsbook.actions import ActionContext
from opsbook.actions.http import ACTIONS
from opsbook.errors import StepError, ValidationError

from .fakes import FakeServer, Received, Reply, Route, closed_port_url

wait_until = ACTIONS["http.wait_until"]


def ctx(*, dry_run: bool = False) -> ActionContext:
    return ActionContext("sandbox", {}, Path("."), "e1", "alice", dry_run=dry_run)


class Flaky:
    """503 for the first ``failures`` requests, then 200 with a JSON status."""

    def __init__(self, failures: int, status: str = "UP") -> None:
        self.failures = failures
        self.status = status
        self.calls = 0

    def __call__(self, req: Received) -> Reply:
        self.calls += 1
        if self.calls <= self.failures:
            return Reply(503, "starting")
        return Reply(200, {"status": self.status, "checks": [{"name": "db", "ok": True}]})


@pytest.fixture
def server() -> Iterator[FakeServer]:
    routes: dict[str, Route] = {
        "/flaky": Flaky(2),
        "/starting": Flaky(0, status="STARTING"),
        "/health": lambda req: Reply(200, {"status": "UP"}),
    }
    with FakeServer(routes) as srv:
        yield srv


async def test_polls_until_the_expected_status(server: FakeServer) -> None:
    result = await wait_until.func(ctx(), {"url": f"{server.url}/flaky", "interval": 0.01})
    assert result["attempts"] == 3 and result["status"] == 200
    assert 0 <= result["elapsed"] < 10


async def test_a_json_field_must_have_the_value(server: FakeServer) -> None:
    args = {"url": f"{server.url}/health", "json_field": "status", "equals": "UP"}
    assert (await wait_until.func(ctx(), args))["attempts"] == 1
    deep = {"url": f"{server.url}/flaky", "json_field": "checks.0.ok", "interval": 0.01}
    assert (await wait_until.func(ctx(), deep))["attempts"] == 3


async def test_gives_up_with_a_clear_message(server: FakeServer) -> None:
    args = {
        "url": f"{server.url}/starting",
        "json_field": "status",
        "equals": "UP",
        "timeout": 0.3,
        "interval": 0.05,
    }
    with pytest.raises(StepError) as info:
        await wait_until.func(ctx(), args)
    message = info.value.message
    assert f"{server.url}/starting did not answer 200 with status = 'UP' within 0.3s" in message
    assert "last: HTTP 200 but status = 'STARTING'" in message
    assert info.value.hint and info.value.retryable


async def test_an_unreachable_url_times_out_naming_the_reason() -> None:
    url = closed_port_url()
    with pytest.raises(StepError, match=f"last: connection refused to {url}"):
        await wait_until.func(ctx(), {"url": url, "timeout": 0.2, "interval": 0.05})


async def test_a_dry_run_polls_nothing(server: FakeServer) -> None:
    result = await wait_until.func(ctx(dry_run=True), {"url": f"{server.url}/health"})
    assert result == {"would_poll": f"{server.url}/health", "status": 200, "timeout": 30.0}
    assert server.received == []


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ({"url": "ftp://x"}, "url"),
        ({"url": "http://127.0.0.1:1", "status": "ok"}, "status"),
        ({"url": "http://127.0.0.1:1", "timeout": -1}, "timeout"),
    ],
)
async def test_bad_arguments_are_validation_errors(args: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        await wait_until.func(ctx(), args)
    assert info.value.field == field
