"""``--param k=v`` strings → typed, validated values."""

from __future__ import annotations

import pytest

from opsbook.errors import ParameterError
from opsbook.runbooks.model import Procedure
from opsbook.runbooks.params import parse_param_args, validate_params
from tests.runbooks.conftest import proc

META = """\
params:
  service: {type: choice, choices: [account, payment]}
  replicas: {type: integer, min: 1, max: 20, default: 3}
  ratio: {type: number, min: 0, max: 1}
  force: {type: boolean, default: false}
  wait: {type: duration, max: 1h}
  ticket: {type: string, pattern: "INC-[0-9]+"}
  reason: {type: string, required: true, description: why this runs}
  db_password: {type: secret, from: db-password}
"""


@pytest.fixture(scope="module")
def procedure() -> Procedure:
    return proc("### A\n\nx\n", meta=META)


def check(procedure: Procedure, **raw: str) -> dict[str, object]:
    return validate_params(procedure, {"reason": "r", **raw}, path="runbooks/t.md")


def fails(procedure: Procedure, **raw: str) -> ParameterError:
    with pytest.raises(ParameterError) as info:
        check(procedure, **raw)
    assert info.value.hint
    return info.value


def test_defaults_are_applied_and_optional_params_without_default_are_absent(
    procedure: Procedure,
) -> None:
    assert check(procedure) == {"reason": "r", "replicas": 3, "force": False}


def test_values_are_typed(procedure: Procedure) -> None:
    values = check(
        procedure,
        service="payment",
        replicas="+7",
        ratio="0.25",
        force="YES",
        wait="90s",
        ticket="INC-42",
    )
    assert values == {
        "service": "payment",
        "replicas": 7,
        "ratio": 0.25,
        "force": True,
        "wait": 90.0,
        "ticket": "INC-42",
        "reason": "r",
    }
    for word, flag in (("true", True), ("no", False), ("1", True), ("0", False)):
        assert check(procedure, force=word)["force"] is flag


@pytest.mark.parametrize(
    ("raw", "field", "message", "hint"),
    [
        ({"service": "ledger"}, "service", "not one of: account, payment", "account, payment"),
        ({"replicas": "3.5"}, "replicas", "not an integer between 1 and 20", "whole number"),
        ({"replicas": "0"}, "replicas", "out of range", "at least 1"),
        ({"replicas": "21"}, "replicas", "out of range", "at most 20"),
        ({"ratio": "nan"}, "ratio", "not a number", "a number"),
        ({"ratio": "2"}, "ratio", "out of range", "at most 1"),
        ({"force": "maybe"}, "force", "not a boolean", "true/false"),
        ({"wait": "soon"}, "wait", "not a duration", "30s"),
        ({"wait": "2h"}, "wait", "out of range", "at most 1h"),
        ({"ticket": "42"}, "ticket", "does not match", "INC-[0-9]+"),
    ],
)
def test_bad_values_name_the_parameter_and_what_is_allowed(
    procedure: Procedure, raw: dict[str, str], field: str, message: str, hint: str
) -> None:
    err = fails(procedure, **raw)
    assert err.field == field
    assert field in err.message and message in err.message
    assert err.hint is not None and hint in err.hint
    assert "runbooks/t.md:" in err.hint


def test_unknown_parameter_lists_the_known_ones(procedure: Procedure) -> None:
    err = fails(procedure, replica="3")
    assert err.field == "replica"
    assert "unknown parameter 'replica'" in err.message
    assert err.hint is not None
    assert "replicas" in err.hint and "service" in err.hint and "db_password" not in err.hint


def test_missing_required(procedure: Procedure) -> None:
    with pytest.raises(ParameterError) as info:
        validate_params(procedure, {})
    assert info.value.field == "reason"
    assert "missing required parameter 'reason'" in info.value.message
    with pytest.raises(ParameterError):
        validate_params(procedure, {"reason": "  "})


def test_secrets_are_never_given_on_the_command_line(procedure: Procedure) -> None:
    err = fails(procedure, db_password="hunter2")
    assert err.field == "db_password"
    assert (
        "secret parameters are resolved from the secret provider `from`, never passed on the "
        "command line" in err.message
    )
    assert "hunter2" not in err.render()
    assert "db_password" not in check(procedure)


def test_procedure_without_params() -> None:
    p = proc("### A\n\nx\n")
    assert validate_params(p, {}) == {}
    with pytest.raises(ParameterError) as info:
        validate_params(p, {"x": "1"})
    assert info.value.hint == "it takes no parameters"


def test_parse_param_args() -> None:
    assert parse_param_args(["a=1", "b=x=y", "c="]) == {"a": "1", "b": "x=y", "c": ""}
    assert parse_param_args([]) == {}
    for bad in (["novalue"], ["=1"]):
        with pytest.raises(ParameterError) as info:
            parse_param_args(bad)
        assert info.value.hint is not None and "NAME=VALUE" in info.value.hint
    with pytest.raises(ParameterError, match="given twice"):
        parse_param_args(["a=1", "a=2"])
