"""Running one executable step: render, run (with for_each, retries and backoff), verify."""

from __future__ import annotations

import asyncio
import codecs
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opsbook.engine import expectations as expect
from opsbook.engine._context import ExecutionContext
from opsbook.engine._dry import NotRun, needs_results
from opsbook.engine.redaction import Redactor, StreamRedactor
from opsbook.engine.runners import get_runner
from opsbook.engine.runners.base import RunContext, RunnerInput, RunnerResult
from opsbook.errors import ExpressionError
from opsbook.expressions import evaluate
from opsbook.runbooks.model import Step, StepKind

#: What makes a text a template (Jinja2's markers); anything else is used as written.
TEMPLATE_MARKERS = ("{{", "{%", "{#")

MAX_BACKOFF = 60.0


@dataclass(frozen=True)
class StepOutcome:
    ok: bool
    record: dict[str, Any]  # what is stored (redacted by the caller)
    reason: str | None
    attempts: int
    fields: Any  # what later templates see as steps.ID.result


def _items(step: Step, ctx: ExecutionContext) -> list[Any]:
    if not step.options.for_each:
        return [None]
    if ctx.dry_run and needs_results(step.options.for_each):
        return [NotRun("each item of", step.options.for_each)]  # rendered once
    value = evaluate(step.options.for_each, ctx.cel_vars())
    if not isinstance(value, list):
        raise ExpressionError(
            f"for_each: {step.options.for_each!r} gave {type(value).__name__}, not a list",
            hint="for_each must evaluate to a list, e.g. env.services",
        )
    return value


def _describe(kind: StepKind, body: str, args: Any) -> str:
    if kind is StepKind.ACTION:
        return f"{args}"
    return body


async def run_executable(
    *,
    step: Step,
    ctx: ExecutionContext,
    workspace: Path,
    on_retry: Callable[[int, str, float], None],
    cancel: asyncio.Event | None = None,
    on_start: Callable[[int], None] | None = None,
    on_output: Callable[[str, str], None] | None = None,
) -> StepOutcome:
    assert step.block is not None
    runner = get_runner(step.kind)
    run_ctx = RunContext(
        execution_id=ctx.execution_id,
        environment_name=ctx.environment_name,
        environment=ctx.environment,
        workspace=workspace,
        started_by=ctx.started_by,
        dry_run=ctx.dry_run,
    )
    items = _items(step, ctx)
    records: list[dict[str, Any]] = []
    fields_list: list[Any] = []
    all_ok = True
    reasons: list[str] = []
    max_attempts = 0
    for item in items:
        tvars: dict[str, Any] = {}  # built on first use: most bodies have no template

        def render(text: str, kind: StepKind, item: Any = item, tv: dict[str, Any] = tvars) -> str:
            if not any(m in text for m in TEMPLATE_MARKERS):
                return text
            from opsbook.engine import templating  # noqa: PLC0415

            if not tv:
                tv.update(ctx.template_vars(item))
            return templating.render(text, context=tv, kind=kind, secrets=ctx.resolver)

        args: dict[str, Any] = {}
        body = ""
        if step.kind is StepKind.ACTION:
            from opsbook.engine import templating  # noqa: PLC0415

            args = templating.render_value(
                dict(step.action_args), context=ctx.template_vars(item), secrets=ctx.resolver
            )
        else:
            body = render(step.block.body, step.kind)
        env = {k: render(v, StepKind.HTTP) for k, v in step.options.env.items()}
        cwd = None
        if step.options.cwd:
            cwd = workspace / render(step.options.cwd, StepKind.HTTP)
        command = _describe(step.kind, body, args)
        would_check = [e.expr for e in step.expectations] if ctx.dry_run else []
        if ctx.dry_run and not runner.supports_dry_run:
            dry: dict[str, Any] = {
                "item": _shown(item),
                "would_run": ctx.redactor.redact(str(command)),
                "dry_run": True,
            }
            if would_check:
                dry["would_check"] = would_check
            records.append(dry)
            fields_list.append(None)
            continue
        lines = _Lines(on_output, ctx.redactor) if on_output is not None else None
        inp = RunnerInput(
            step=step,
            body=body,
            context=run_ctx,
            timeout=step.options.timeout,
            env=env,
            cwd=cwd,
            item=item,
            args=args,
            cancel=cancel,
            on_start=on_start,
            on_output=lines.feed if lines is not None else None,
        )
        attempt = 0
        result: RunnerResult
        failed_attempts: list[dict[str, Any]] = []
        while True:
            attempt += 1
            result = await runner.run(inp)
            if lines is not None:
                lines.flush()
            # A dry run's result says what would happen, so expectations are not checked.
            checked = bool(step.expectations) and not ctx.dry_run and result.ran
            outcomes = (
                expect.check(step.expectations, result.fields, context=ctx.cel_vars(item))
                if checked
                else ()
            )
            ok = all(o.passed for o in outcomes) if checked else result.ok
            if result.timed_out:
                ok = False
            if ok or attempt > step.options.retries or (cancel is not None and cancel.is_set()):
                break
            why = ctx.redactor.redact(_attempt_failure(result, outcomes))
            if step.options.for_each:
                why = f"item {_shown(item)}: {why}"
            delay = min(step.options.retry_delay * (2 ** (attempt - 1)), MAX_BACKOFF)
            failed_attempts.append({"attempt": attempt, "reason": why, "retry_in": delay})
            on_retry(attempt, why, delay)
            await asyncio.sleep(delay)
        max_attempts = max(max_attempts, attempt)
        record: dict[str, Any] = {
            "command": ctx.redactor.redact(str(command)),
            "fields": ctx.redactor.redact_obj(dict(result.fields)),
            "ok": ok,
            "error": ctx.redactor.redact(result.error) if result.error else None,
            "expectations": [
                o.to_dict() if hasattr(o, "to_dict") else _outcome(o) for o in outcomes
            ],
            "attempts": attempt,
            "duration": round(result.duration, 6),
        }
        if failed_attempts:
            record["failed_attempts"] = failed_attempts
        if would_check:
            record["would_check"] = would_check
        if step.options.for_each:
            record["item"] = _shown(item)
        records.append(record)
        fields_list.append(dict(result.fields))
        if not ok:
            all_ok = False
            failed = [o for o in outcomes if not o.passed]
            if failed:
                reasons.extend(_failure_text(o) for o in failed)
            else:
                reasons.append(result.error or "failed")
    reason = "; ".join(reasons) if reasons else None
    outer: dict[str, Any] = {"items": records} if step.options.for_each else records[0]
    if ctx.dry_run and step.options.when and needs_results(step.options.when):
        outer["would_check_when"] = step.options.when  # the step was rendered regardless
    if step.options.for_each:
        return StepOutcome(all_ok, outer, reason, max_attempts or 1, fields_list)
    return StepOutcome(all_ok, outer, reason, max_attempts or 1, fields_list[0])


class _Lines:
    """Output chunks as whole lines, redacted, for whoever follows the run live. Each stream
    goes through a :class:`StreamRedactor`, so a secret split across two reads (or spread
    over lines) is still masked; a line longer than :data:`MAX_LINE` characters is passed on
    in pieces."""

    MAX_LINE = 65536

    def __init__(self, emit: Callable[[str, str], None], redactor: Redactor) -> None:
        self._emit = emit
        self._redactor = redactor
        self._streams: dict[str, tuple[Any, StreamRedactor]] = {}
        self._partial: dict[str, str] = {}

    def _stream(self, name: str) -> tuple[Any, StreamRedactor]:
        if name not in self._streams:
            decoder = codecs.getincrementaldecoder("utf-8")("replace")
            self._streams[name] = (decoder, StreamRedactor(self._redactor))
        return self._streams[name]

    def feed(self, stream: str, data: bytes) -> None:
        decoder, redact = self._stream(stream)
        self._lines(stream, redact.feed(decoder.decode(data)), final=False)

    def flush(self) -> None:
        for stream, (decoder, redact) in list(self._streams.items()):
            self._lines(stream, redact.feed(decoder.decode(b"", final=True)) + redact.flush())
        self._streams.clear()

    def _lines(self, stream: str, text: str, *, final: bool = True) -> None:
        *complete, rest = (self._partial.pop(stream, "") + text).split("\n")
        for line in complete:
            self._emit(stream, line)
        if rest and (final or len(rest) > self.MAX_LINE):
            self._emit(stream, rest)
        elif rest:
            self._partial[stream] = rest


def _attempt_failure(result: RunnerResult, outcomes: Any) -> str:
    """Why an attempt failed: the assertions that did not hold, with the values they saw;
    else the runner's error (a timeout always)."""
    failed = [o for o in outcomes if not o.passed]
    if result.timed_out or not failed:
        return result.error or "failed"
    return "; ".join(_failure_text(o) for o in failed)


def _shown(item: Any) -> Any:
    """An item as stored: a dry run's placeholder as its text."""
    return str(item) if isinstance(item, NotRun) else item


def _outcome(o: Any) -> dict[str, Any]:
    return {
        "expr": o.expr,
        "line": o.line,
        "passed": o.passed,
        "actual": dict(o.actual),
        "error": o.error,
    }


def _failure_text(o: Any) -> str:
    actual = ", ".join(f"{k}={v!r}" for k, v in dict(o.actual).items())
    text = f"expected {o.expr} (line {o.line})"
    if o.error:
        text += f": {o.error}"
    elif actual:
        text += f" but {actual}"
    return text
