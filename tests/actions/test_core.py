"""The built-in core.* actions."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from opsbook.actions import ActionContext, load_registry
from opsbook.actions.core import ACTIONS
from opsbook.errors import StepError, ValidationError


def ctx(*, dry_run: bool = False) -> ActionContext:
    return ActionContext("sandbox", {}, Path("."), "e1", "alice", dry_run=dry_run)


def test_the_core_actions_are_registered_by_entry_point() -> None:
    names = load_registry(refresh=True).names()
    assert {"core.sleep", "core.echo", "core.fail", "http.wait_until"} <= set(names)
    assert load_registry().get("core.sleep") is ACTIONS["core.sleep"]
    assert ACTIONS["core.sleep"].description == "Wait a number of seconds."


async def test_sleep_waits_and_describes_itself_in_a_dry_run() -> None:
    sleep = ACTIONS["core.sleep"]
    assert sleep.supports_dry_run and sleep.required == ("seconds",)
    started = time.monotonic()
    assert await sleep.func(ctx(), {"seconds": "0.05"}) == {"slept": 0.05}
    assert time.monotonic() - started >= 0.04
    assert await sleep.func(ctx(dry_run=True), {"seconds": 600}) == {"would_sleep": 600.0}


@pytest.mark.parametrize("bad", [-1, "soon", None, True, float("nan")])
async def test_sleep_refuses_bad_seconds(bad: object) -> None:
    with pytest.raises(ValidationError, match="seconds must be a number") as info:
        await ACTIONS["core.sleep"].func(ctx(), {"seconds": bad})
    assert info.value.field == "seconds" and info.value.hint


async def test_echo_returns_its_arguments() -> None:
    args = {"message": "hello", "nested": {"a": [1, 2]}}
    assert await ACTIONS["core.echo"].func(ctx(), args) == args


async def test_fail_fails_with_its_message() -> None:
    with pytest.raises(StepError, match="on purpose"):
        await ACTIONS["core.fail"].func(ctx(), {"message": "on purpose"})
    assert await ACTIONS["core.fail"].func(ctx(dry_run=True), {}) == {
        "would_fail": "failed on purpose (core.fail)"
    }
