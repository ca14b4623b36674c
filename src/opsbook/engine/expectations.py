"""Checking a step's ``expect`` assertions (CEL) against its result fields.

Every assertion gives an :class:`ExpectationOutcome`: whether it held, the values of the result
fields it reads (long strings cut to :data:`MAX_TEXT` characters, long lists to
:data:`MAX_ITEMS` items), and why it could not be evaluated. An assertion that cannot be
evaluated (a missing field, a type mismatch) or does not give true/false has failed; checking
never raises.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from opsbook.errors import ExpressionError
from opsbook.expressions import Scope, evaluate, variables_of
from opsbook.runbooks.model import Expectation

MAX_TEXT = 200
MAX_ITEMS = 20
MAX_KEYS = 50


@dataclass(frozen=True)
class ExpectationOutcome:
    expr: str
    line: int
    passed: bool
    actual: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "expr": self.expr,
            "line": self.line,
            "passed": self.passed,
            "actual": dict(self.actual),
            "error": self.error,
        }


def clip(value: Any) -> Any:
    """A value shortened for a report: strings, lists and mappings cut to a readable size."""
    if isinstance(value, str):
        return value if len(value) <= MAX_TEXT else value[:MAX_TEXT] + "…"
    if isinstance(value, Mapping):
        items = list(value.items())
        out = {str(k): clip(v) for k, v in items[:MAX_KEYS]}
        if len(items) > MAX_KEYS:
            out["…"] = f"{len(items) - MAX_KEYS} more"
        return out
    if isinstance(value, list | tuple):
        out_list = [clip(v) for v in value[:MAX_ITEMS]]
        if len(value) > MAX_ITEMS:
            out_list.append(f"… {len(value) - MAX_ITEMS} more")
        return out_list
    return value


def _actual(expr: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    try:
        names = variables_of(expr)
    except ExpressionError:
        return {}
    return {name: clip(fields[name]) for name in names if name in fields}


def check_one(
    expectation: Expectation,
    fields: Mapping[str, Any],
    shown: Mapping[str, Any] | None = None,
) -> ExpectationOutcome:
    """One assertion over ``fields``; ``actual`` shows the values it used from ``shown``
    (default: ``fields``)."""
    error: str | None = None
    passed = False
    try:
        value = evaluate(expectation.expr, fields)
    except ExpressionError as exc:
        error = exc.message
    else:
        if isinstance(value, bool):
            passed = value
        else:
            error = f"expression did not return true/false (it gave {clip(value)!r})"
    return ExpectationOutcome(
        expr=expectation.expr,
        line=expectation.line,
        passed=passed,
        actual=_actual(expectation.expr, fields if shown is None else shown),
        error=error,
    )


def check(
    expectations: Sequence[Expectation],
    fields: Mapping[str, Any],
    context: Mapping[str, Any] | None = None,
) -> tuple[ExpectationOutcome, ...]:
    """Evaluate every assertion over ``fields`` (the block's result), with ``context``
    (``params``, ``env``, ``steps``, ``item``) also in scope; the outcomes in order. A result
    field shadows a context name."""
    result = dict(fields)
    scope: Mapping[str, Any]
    if isinstance(context, Scope):
        scope = context.with_fields(result)  # values built only for what an assertion reads
    else:
        scope = {**(context or {}), **result}
    return tuple(check_one(e, scope, result) for e in expectations)
