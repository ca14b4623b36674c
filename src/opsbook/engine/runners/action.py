"""``action`` blocks: a registered Python action (``opsbook.actions`` entry points).

The action gets an :class:`~opsbook.actions.ActionContext` and its rendered arguments; what it
returns is ``result`` (made JSON-safe), an exception from it fails the step with its message
(an :class:`~opsbook.errors.OpsbookError` keeps its hint). In a dry run an action that supports
dry run is called with ``ctx.dry_run = True``; any other is not called.

Fields: ``result``, ``duration`` (and ``dry_run: true`` in a dry run).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from opsbook.actions import ActionContext, load_registry
from opsbook.engine.runners._common import bounded, json_safe, seconds
from opsbook.engine.runners.base import RunnerInput, RunnerResult
from opsbook.errors import OpsbookError, ValidationError

if TYPE_CHECKING:
    from opsbook.actions._registry import ActionRegistry


class ActionRunner:
    kind: ClassVar[str] = "action"
    supports_dry_run: ClassVar[bool] = True  # decided per action, see the module docstring

    def __init__(self, registry: ActionRegistry | None = None) -> None:
        self._registry = registry

    async def run(self, inp: RunnerInput) -> RunnerResult:
        started = time.perf_counter()
        name = inp.step.action_name
        if not name:
            raise ValidationError(
                f"step {inp.step.id!r} names no action",
                hint="write the block as `action.name: {args}`",
            )
        spec = (self._registry or load_registry()).get(name)
        missing = [arg for arg in spec.required if arg not in inp.args]
        if missing:
            described = ", ".join(f"{k} ({v})" if v else k for k, v in spec.args.items())
            raise ValidationError(
                f"action {name!r} needs argument(s): {', '.join(missing)}",
                hint=f"its arguments: {described or ', '.join(spec.required)}",
            )
        dry_run = inp.context.dry_run
        if dry_run and not spec.supports_dry_run:
            return RunnerResult(True, {"result": None, "dry_run": True, "duration": 0.0}, 0.0)
        ctx = ActionContext(
            environment_name=inp.context.environment_name,
            environment=inp.context.environment,
            workspace=inp.context.workspace,
            execution_id=inp.context.execution_id,
            started_by=inp.context.started_by,
            dry_run=dry_run,
            progress=_progress(inp.on_output),
        )
        try:
            state, result = await bounded(
                spec.func(ctx, dict(inp.args)), timeout=inp.timeout, cancel=inp.cancel
            )
        except OpsbookError as exc:
            return _failed(started, exc.render())
        except Exception as exc:  # an action's own failure is a failed step, never a crash
            return _failed(started, f"{type(exc).__name__}: {exc}" if not str(exc) else str(exc))
        if state == "timeout":
            return _failed(started, f"timed out after {seconds(inp.timeout or 0)}", True)
        if state == "cancelled":
            return _failed(started, "cancelled")
        duration = time.perf_counter() - started
        fields: dict[str, Any] = {"result": json_safe(result), "duration": duration}
        if dry_run:
            fields["dry_run"] = True
        return RunnerResult(True, fields, duration)


def _progress(on_output: Callable[[str, bytes], None] | None) -> Callable[[str], None]:
    """An action's progress lines, fed to the step's live output as stdout lines."""
    if on_output is None:
        return lambda line: None
    emit = on_output
    return lambda line: emit("stdout", (line.rstrip("\n") + "\n").encode())


def _failed(started: float, error: str, timed_out: bool = False) -> RunnerResult:
    duration = time.perf_counter() - started
    return RunnerResult(
        False,
        {"result": None, "duration": duration},
        duration,
        error=error,
        timed_out=timed_out,
        ran=False,
    )
