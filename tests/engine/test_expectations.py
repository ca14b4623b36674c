"""Expectation outcomes: passed/failed, actual values, errors that fail instead of crashing."""

from __future__ import annotations

from collections.abc import Mapping

from opsbook.engine.expectations import MAX_ITEMS, MAX_TEXT, ExpectationOutcome, check
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
