"""The http runner against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from opsbook.engine.runners.base import RunContext, RunnerInput
from opsbook.engine.runners.http import HttpRunner, parse_request
from opsbook.errors import ValidationError
from opsbook.runbooks.model import Block, Step, StepKind
from tests.actions.fakes import FakeServer, Received, Reply, closed_port_url


def make_input(body: str, *, limit: int = 1_048_576, **kw: Any) -> RunnerInput:
    step = Step(id="h", title="H", kind=StepKind.HTTP, line=1, block=Block("http", body, {}, 1))
    ctx = RunContext(
        execution_id="e1",
        environment_name="sandbox",
        environment={},
        workspace=Path("."),
        started_by="alice",
        output_limit=limit,
        dry_run=kw.pop("dry_run", False),
    )
    return RunnerInput(step=step, body=body, context=ctx, **kw)


def echo(req: Received) -> Reply:
    return Reply(
        201,
        {"method": req.method, "headers": req.headers, "body": req.body.decode()},
        {"X-Trace": "abc"},
    )


def slow(req: Received) -> Reply:
    time.sleep(2)
    return Reply(200, "late")


@pytest.fixture
def server() -> Iterator[FakeServer]:
    routes = {
        "/health": lambda req: Reply(200, {"status": "UP"}),
        "/echo": echo,
        "/down": lambda req: Reply(503, "maintenance", {"Content-Type": "text/plain"}),
        "/big": lambda req: Reply(200, "z" * 50_000),
        "/slow": slow,
    }
    with FakeServer(routes) as srv:
        yield srv


async def test_a_get_returns_status_headers_body_and_json(server: FakeServer) -> None:
    result = await HttpRunner().run(
        make_input(f"GET {server.url}/health\nAccept: application/json\n")
    )
    assert result.ok and result.error is None
    fields = result.fields
    assert fields["status"] == 200 and fields["json"] == {"status": "UP"}
    assert json.loads(fields["body"]) == {"status": "UP"}
    assert fields["headers"]["content-type"] == "application/json"
    assert fields["duration"] == result.duration > 0
    assert server.received[0].headers["accept"] == "application/json"


async def test_a_post_sends_headers_and_body(server: FakeServer) -> None:
    body = (
        f"# flush the cache\nPOST {server.url}/echo HTTP/1.1\nContent-Type: application/json\n"
        'X-Reason: INC-42\n\n{"reason": "INC-42"}\n'
    )
    result = await HttpRunner().run(make_input(body))
    assert result.ok and result.fields["status"] == 201
    sent = result.fields["json"]
    assert sent["method"] == "POST" and sent["body"] == '{"reason": "INC-42"}'
    assert sent["headers"]["x-reason"] == "INC-42"
    assert result.fields["headers"]["x-trace"] == "abc"


async def test_an_error_status_fails_by_default(server: FakeServer) -> None:
    result = await HttpRunner().run(make_input(f"GET {server.url}/down"))
    assert not result.ok and result.error == "HTTP 503"
    assert result.fields["body"] == "maintenance" and result.fields["json"] is None


async def test_the_body_is_capped(server: FakeServer) -> None:
    result = await HttpRunner().run(make_input(f"GET {server.url}/big", limit=100))
    assert result.fields["body"] == "z" * 100 + "\n[... 49900 bytes truncated]"


async def test_connection_refused_is_a_failed_step_with_status_0() -> None:
    url = closed_port_url()
    result = await HttpRunner().run(make_input(f"GET {url}/health", timeout=5))
    assert not result.ok and result.fields["status"] == 0
    assert result.error == f"connection refused to {url}/health"


async def test_a_timeout_fails_and_is_marked(server: FakeServer) -> None:
    result = await HttpRunner().run(make_input(f"GET {server.url}/slow", timeout=0.3))
    assert result.timed_out and not result.ok and result.error == "timed out after 0.3s"


async def test_the_cancel_event_stops_the_request(server: FakeServer) -> None:
    cancel = asyncio.Event()
    asyncio.get_running_loop().call_later(0.2, cancel.set)
    result = await HttpRunner().run(make_input(f"GET {server.url}/slow", cancel=cancel))
    assert result.error == "cancelled" and not result.timed_out


async def test_a_dry_run_sends_nothing(server: FakeServer) -> None:
    result = await HttpRunner().run(make_input(f"DELETE {server.url}/echo", dry_run=True))
    assert result.ok and result.fields["dry_run"] is True and server.received == []


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ("", "no request line"),
        ("FETCH http://x/", "malformed request line"),
        ("GET", "malformed request line"),
        ("GET /relative", "not an absolute"),
        ("GET http://x/ HTTP/1.1 extra", "malformed request line"),
        ("GET http://x/\nnot a header\n", "malformed header"),
    ],
)
def test_a_malformed_request_is_a_validation_error(body: str, fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment) as info:
        parse_request(body)
    assert info.value.hint


def test_the_request_parser() -> None:
    request = parse_request(
        "\n// c\nget https://a/b?x=1 HTTP/2\r\nA: 1\r\nB:2\r\n\r\nline1\nline2\n"
    )
    assert (request.method, request.url) == ("GET", "https://a/b?x=1")
    assert request.headers == (("A", "1"), ("B", "2"))
    assert request.body == "line1\nline2"
