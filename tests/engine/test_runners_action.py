"""The action runner: registry lookup, arguments, failures, timeouts and dry runs."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from opsbook.actions import ActionContext, action
from opsbook.actions._registry import ActionRegistry
from opsbook.engine.runners import get_runner
from opsbook.engine.runners.action import ActionRunner
from opsbook.engine.runners.base import RunContext, RunnerInput
from opsbook.errors import ConflictError, NotFoundError, ValidationError
from opsbook.runbooks.model import Block, Step, StepKind

CALLS: list[tuple[ActionContext, dict[str, Any]]] = []


@action("t.record", args={"service": "which one"}, required=("service",), supports_dry_run=True)
async def record(ctx: ActionContext, args: Mapping[str, Any]) -> Any:
    CALLS.append((ctx, dict(args)))
    return {"state": "running", "when": __import__("datetime").date(2026, 1, 2), "dry": ctx.dry_run}


@action("t.restart")
async def restart(ctx: ActionContext, args: Mapping[str, Any]) -> Any:
    CALLS.append((ctx, dict(args)))
    return "restarted"


@action("t.boom")
async def boom(ctx: ActionContext, args: Mapping[str, Any]) -> Any:
    raise RuntimeError("the platform said no")


@action("t.conflict")
async def conflict(ctx: ActionContext, args: Mapping[str, Any]) -> Any:
    raise ConflictError("deployment is mid-rollout", hint="wait for the rollout to finish")


@action("t.hang")
async def hang(ctx: ActionContext, args: Mapping[str, Any]) -> Any:
    await asyncio.sleep(30)


REGISTRY = ActionRegistry({s.name: s for s in (record, restart, boom, conflict, hang)})


def make_input(name: str, args: dict[str, Any] | None = None, **kw: Any) -> RunnerInput:
    step = Step(
        id="a",
        title="A",
        kind=StepKind.ACTION,
        line=1,
        block=Block("action", f"{name}: {{}}", {}, 1),
        action_name=name,
    )
    ctx = RunContext(
        execution_id="e1",
        environment_name="sandbox",
        environment={"namespace": "banking"},
        workspace=Path("/ws"),
        started_by="alice",
        dry_run=kw.pop("dry_run", False),
    )
    return RunnerInput(step=step, body="", context=ctx, args=args or {}, **kw)


@pytest.fixture(autouse=True)
def _clear() -> None:
    CALLS.clear()


async def test_the_action_gets_its_context_and_arguments() -> None:
    result = await ActionRunner(REGISTRY).run(make_input("t.record", {"service": "payment"}))
    assert result.ok and result.error is None
    assert result.fields["result"] == {"state": "running", "when": "2026-01-02", "dry": False}
    assert result.fields["duration"] == result.duration
    ctx, args = CALLS[0]
    assert args == {"service": "payment"}
    assert (ctx.environment_name, ctx.execution_id, ctx.started_by) == ("sandbox", "e1", "alice")
    assert ctx.environment == {"namespace": "banking"} and ctx.workspace == Path("/ws")


async def test_the_registered_core_actions_are_found() -> None:
    runner = get_runner(StepKind.ACTION)
    result = await runner.run(make_input("core.echo", {"message": "hi", "n": 2}))
    assert result.ok and result.fields["result"] == {"message": "hi", "n": 2}


async def test_an_unknown_action_lists_the_known_ones() -> None:
    with pytest.raises(NotFoundError, match=r"unknown action 't\.nope'") as info:
        await ActionRunner(REGISTRY).run(make_input("t.nope"))
    assert info.value.hint and "t.record" in info.value.hint


async def test_a_missing_required_argument_is_a_validation_error() -> None:
    with pytest.raises(ValidationError, match=r"needs argument\(s\): service") as info:
        await ActionRunner(REGISTRY).run(make_input("t.record", {}))
    assert info.value.hint and "service (which one)" in info.value.hint
    assert CALLS == []


async def test_an_exception_fails_the_step_with_its_message() -> None:
    result = await ActionRunner(REGISTRY).run(make_input("t.boom"))
    assert not result.ok and result.error == "the platform said no"
    assert result.fields["result"] is None


async def test_an_opsbook_error_keeps_its_hint() -> None:
    result = await ActionRunner(REGISTRY).run(make_input("t.conflict"))
    assert result.error == "deployment is mid-rollout\n  fix: wait for the rollout to finish"


async def test_timeout_and_cancel() -> None:
    result = await ActionRunner(REGISTRY).run(make_input("t.hang", timeout=0.1))
    assert result.timed_out and result.error == "timed out after 0.1s"
    cancel = asyncio.Event()
    asyncio.get_running_loop().call_later(0.1, cancel.set)
    stopped = await ActionRunner(REGISTRY).run(make_input("t.hang", cancel=cancel))
    assert stopped.error == "cancelled" and not stopped.timed_out


async def test_dry_run_calls_only_actions_that_support_it() -> None:
    runner = ActionRunner(REGISTRY)
    assert runner.supports_dry_run
    skipped = await runner.run(make_input("t.restart", dry_run=True))
    assert skipped.ok and skipped.fields["result"] is None and skipped.fields["dry_run"] is True
    assert CALLS == []
    called = await runner.run(make_input("t.record", {"service": "x"}, dry_run=True))
    assert called.fields["result"]["dry"] is True and called.fields["dry_run"] is True
    assert CALLS[0][0].dry_run is True
