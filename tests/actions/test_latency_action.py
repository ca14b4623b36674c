"""``platform.latency``: one service's health endpoint called N times in a row (real HTTP servers
on 127.0.0.1), the slowest/median/fastest answer and whether every answer was UP; a dry run
probes nothing; bad arguments are validation errors naming the argument."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from opsbook.actions import ActionContext, load_registry
from opsbook.errors import UsageError, ValidationError
from tests.actions.fakes import FakeServer, Received, Reply, closed_port_url

TEMPLATES = Path(__file__).parents[2] / "src" / "opsbook" / "workspace" / "templates"


def local_env(payment_url: str) -> dict[str, Any]:
    """A local (sandbox) environment whose payment service answers at ``payment_url``."""
    return {
        "platform": "local",
        "services": [
            {"name": "account", "health_url": closed_port_url() + "/health"},
            {"name": "payment", "health_url": payment_url},
        ],
    }


def ctx(env: dict[str, Any], workspace: Path, *, dry_run: bool = False) -> ActionContext:
    return ActionContext("sandbox", env, workspace, "e1", "alice", dry_run=dry_run)


async def latency(context: ActionContext, args: dict[str, Any]) -> Any:
    return await load_registry().get("platform.latency").func(context, args)


def test_it_is_registered_with_dry_run_support() -> None:
    spec = load_registry().get("platform.latency")
    assert spec.supports_dry_run
    assert spec.required == ("service",)
    assert set(spec.args) == {"service", "samples", "timeout"}


async def test_every_answer_up_reports_the_spread(tmp_path: Path) -> None:
    with FakeServer({"/health": lambda req: Reply(200, {"status": "UP"})}) as srv:
        result = await latency(
            ctx(local_env(srv.url + "/health"), tmp_path), {"service": "payment", "samples": "5"}
        )
        calls = len(srv.received)
    assert calls == 5
    assert result["service"] == "payment"
    assert result["url"] == srv.url + "/health"
    assert result["status"] == "UP"
    assert (result["samples"], result["up"]) == (5, 5)
    assert result["min_ms"] <= result["median_ms"] <= result["max_ms"]
    assert "error" not in result


async def test_one_bad_answer_makes_the_service_not_up(tmp_path: Path) -> None:
    seen: list[int] = []

    def flaky(req: Received) -> Reply:
        seen.append(1)
        return Reply(503, {"status": "DOWN"}) if len(seen) == 3 else Reply(200, {"status": "UP"})

    with FakeServer({"/health": flaky}) as srv:
        result = await latency(
            ctx(local_env(srv.url + "/health"), tmp_path), {"service": "payment", "samples": 4}
        )
    assert result["status"] == "DOWN"
    assert (result["samples"], result["up"]) == (4, 3)


async def test_a_service_that_does_not_answer_is_down_with_the_reason(tmp_path: Path) -> None:
    result = await latency(
        ctx(local_env(closed_port_url() + "/health"), tmp_path),
        {"service": "payment", "samples": 2, "timeout": 2},
    )
    assert result["status"] == "DOWN"
    assert result["up"] == 0
    assert "connection refused" in result["error"]


async def test_the_default_is_ten_samples(tmp_path: Path) -> None:
    with FakeServer({"/health": lambda req: Reply(200, {"status": "UP"})}) as srv:
        result = await latency(
            ctx(local_env(srv.url + "/health"), tmp_path), {"service": "payment"}
        )
    assert result["samples"] == 10


async def test_a_dry_run_calls_nothing(tmp_path: Path) -> None:
    with FakeServer({"/health": lambda req: Reply(200, {"status": "UP"})}) as srv:
        result = await latency(
            ctx(local_env(srv.url + "/health"), tmp_path, dry_run=True), {"service": "payment"}
        )
        calls = len(srv.received)
    assert calls == 0
    assert result == {
        "would_get": [srv.url + "/health"],
        "platform": "local",
        "service": "payment",
        "samples": 10,
    }


async def test_a_dry_run_on_production_names_the_health_url(tmp_path: Path) -> None:
    env = yaml.safe_load((TEMPLATES / "environments" / "production.yaml").read_text())
    payment = next(s for s in env["services"] if s["name"] == "payment")
    result = await latency(ctx(env, tmp_path, dry_run=True), {"service": "payment", "samples": 3})
    assert result["would_get"] == [payment["health_url"]]
    assert (result["platform"], result["samples"]) == ("kubernetes", 3)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"service": ""}, "service must be a service name"),
        ({"service": "payment", "samples": 0}, "samples must be a whole number >= 1"),
        ({"service": "payment", "samples": "many"}, "samples must be a whole number >= 1"),
        ({"service": "payment", "samples": 101}, "samples must be at most 100"),
        ({"service": "payment", "timeout": 600}, "timeout must be 0-60 seconds"),
        ({"service": "payment", "timeout": "soon"}, "timeout must be a number of seconds"),
    ],
)
async def test_bad_arguments_are_validation_errors(
    tmp_path: Path, args: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        await latency(ctx(local_env(closed_port_url()), tmp_path), args)


async def test_an_unknown_service_names_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="ledger"):
        await latency(ctx(local_env(closed_port_url()), tmp_path), {"service": "ledger"})
