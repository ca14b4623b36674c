"""Expectation outcomes: passed/failed, actual values, errors that fail instead of crashing."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date

import pytest

from opsbook.engine._context import ExecutionContext, SecretParams
from opsbook.engine.expectations import MAX_ITEMS, MAX_TEXT, ExpectationOutcome, check
from opsbook.engine.secrets import Redactor, SecretResolver
from opsbook.errors import ExpressionError
from opsbook.expressions import evaluate, members_read
from opsbook.runbooks.model import Expectation

FIELDS = {
    "exit_code": 0,
    "stdout": "pod-a Running\npod-b Running\n",
    "stderr": "",
    "json": {"status": "DOWN", "items": [{"ready": True}, {"ready": False}]},
    "duration": 0.25,
}


def outcomes(*exprs: str, fields: Mapping[str, object] = FIELDS) -> tuple[ExpectationOutcome, ...]:
    return check([Expectation(e, 10 + i) for i, e in enumerate(exprs)], fields)


def test_passing_and_failing_assertions_report_the_values_they_read() -> None:
    ok, bad, mixed = outcomes(
        'exit_code == 0 && stdout.contains("Running")',
        'json.status == "UP"',
        "duration < 1.0 && json.items.all(i, i.ready)",
    )
    assert ok.passed and ok.error is None and ok.line == 10
    assert ok.actual == {"exit_code": 0, "stdout": FIELDS["stdout"]}
    assert not bad.passed and bad.error is None and bad.line == 11
    assert bad.actual == {"json": FIELDS["json"]}
    assert not mixed.passed
    assert set(mixed.actual) == {"duration", "json"}  # not the loop variable `i`
    assert bad.to_dict() == {
        "expr": 'json.status == "UP"',
        "line": 11,
        "passed": False,
        "actual": {"json": FIELDS["json"]},
        "error": None,
    }


def test_a_missing_field_fails_with_an_error_instead_of_crashing() -> None:
    (outcome,) = outcomes("json.missing == 1")
    assert not outcome.passed
    assert outcome.error and "missing" in outcome.error
    (unknown,) = outcomes("status == 200")
    assert not unknown.passed and unknown.error and unknown.actual == {}


def test_a_non_boolean_result_fails() -> None:
    (outcome,) = outcomes("exit_code + 1")
    assert not outcome.passed
    assert outcome.error == "expression did not return true/false (it gave 1)"


def test_type_mismatches_and_bad_syntax_fail() -> None:
    mismatch, syntax = outcomes('stdout > 3 || json == "x"', "exit_code ==")
    assert not mismatch.passed and mismatch.error
    assert not syntax.passed and syntax.error and syntax.actual == {}


def test_null_json_fails_cleanly() -> None:
    (outcome,) = outcomes('json.status == "UP"', fields={**FIELDS, "json": None})
    assert not outcome.passed and outcome.error and outcome.actual == {"json": None}


def test_long_actual_values_are_shortened() -> None:
    fields = {"stdout": "x" * 5000, "rows": [{"n": i} for i in range(100)]}
    (outcome,) = outcomes('stdout == "y" && rows.size() == 0', fields=fields)
    assert outcome.actual["stdout"] == "x" * MAX_TEXT + "…"
    rows = outcome.actual["rows"]
    assert len(rows) == MAX_ITEMS + 1 and rows[-1] == f"… {100 - MAX_ITEMS} more"


def test_no_expectations_no_outcomes() -> None:
    assert check([], FIELDS) == ()


# --- only what an expression reads is handed to CEL --------------------------------------


class Unconvertible:
    """A value CEL cannot take: if it reached CEL, evaluation would fail."""


def test_an_expression_gets_only_the_variables_it_reads() -> None:
    assert evaluate("x == 1", {"x": 1, "y": Unconvertible()}) is True
    with pytest.raises(ExpressionError):
        evaluate("y == 1", {"x": 1, "y": Unconvertible()})


@pytest.mark.parametrize(
    ("expr", "members"),
    [
        ("exit_code == 0", frozenset()),
        ('steps.a.ok && steps["b-c"].result.json.x == 1', frozenset({"a", "b-c"})),
        ("steps [ 'q' ].ok || steps . r . ok", frozenset({"q", "r"})),
        ("json.steps.size() > 0", frozenset()),  # a field called steps, not the variable
        ("size(steps) > 1", None),  # the whole map
        ("steps[params.name].ok", None),  # a computed key
        ('steps["a\\"b"].ok', None),  # an escaped quote: not parsed, so everything
        ("[1].all(steps, steps > 0)", None),  # a loop variable that shadows it
    ],
)
def test_which_steps_an_expression_reads(expr: str, members: frozenset[str] | None) -> None:
    assert members_read(expr, "steps") == members


def context_with_steps() -> ExecutionContext:
    redactor = Redactor()
    ctx = ExecutionContext(
        execution_id="e1",
        started_by="alice",
        environment_name="sandbox",
        environment={"region": "eu", "since": date(2026, 1, 2)},
        params=SecretParams({"n": 3}, {}, SecretResolver([], redactor)),
        resolver=SecretResolver([], redactor),
        redactor=redactor,
    )
    ctx.steps["a"] = {"result": {"exit_code": 0}, "state": "succeeded", "ok": True}
    ctx.steps["b-c"] = {"result": {"json": {"x": 1}}, "state": "succeeded", "ok": True}
    return ctx


def test_context_variables_are_built_as_expressions_read_them() -> None:
    ctx = context_with_steps()
    scope = ctx.cel_vars(item={"name": "svc"})
    assert evaluate('steps.a.ok && steps["b-c"].result.json.x == 1', scope) is True
    assert evaluate("size(steps) == 2", scope) is True
    assert evaluate('env.since == "2026-01-02" && params.n == 3', scope) is True  # JSON-like
    assert evaluate('item.name == "svc" && execution.id == "e1"', scope) is True
    # A replaced step result is seen by the next expression (its CEL form is rebuilt).
    ctx.steps["a"] = {"result": {"exit_code": 1}, "state": "failed", "ok": False}
    assert evaluate("steps.a.ok", ctx.cel_vars()) is False
    with pytest.raises(ExpressionError):
        evaluate("steps.missing.ok", ctx.cel_vars())


def test_a_result_field_wins_over_a_context_name_and_reads_context() -> None:
    ctx = context_with_steps()
    (shadow, both) = check(
        [Expectation("env == 5", 1), Expectation("exit_code == 0 && steps.a.ok", 2)],
        {"exit_code": 0, "env": 5},
        context=ctx.cel_vars(),
    )
    assert shadow.passed and shadow.actual == {"env": 5}
    assert both.passed and both.actual == {"exit_code": 0}
