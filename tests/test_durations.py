"""The one duration grammar (opsbook.durations) and the places that read a duration with it."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from opsbook.durations import duration_seconds, format_duration, has_unit, parse_duration
from opsbook.errors import UsageError, ValidationError
from opsbook.incidents._yamlfile import duration, load_yaml
from opsbook.sandbox.faults import parse_duration as fault_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1d", 86400.0),
        ("90", 90.0),
        ("1.5", 1.5),
        (".5", 0.5),
        ("1.5h", 5400.0),
        (" 10 s ", 10.0),
        ("0", 0.0),
    ],
)
def test_accepted_syntax(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds
    assert duration_seconds(text) == seconds


@pytest.mark.parametrize("text", ["", "s", "10x", "-5s", "5 m s", "1e3", "10S", "1w", "5m30s"])
def test_refused_syntax(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)


@pytest.mark.parametrize("value", [True, None, -1, math.inf, math.nan, [1], {"s": 1}])
def test_values_that_are_not_durations(value: object) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        duration_seconds(value)


def test_numbers_are_seconds() -> None:
    assert duration_seconds(45) == 45.0
    assert duration_seconds(0.25) == 0.25


def test_format_and_units() -> None:
    assert [format_duration(s) for s in (86400, 3600, 90, 0.5, 1.5)] == [
        "1d",
        "1h",
        "90s",
        "500ms",
        "1.5s",
    ]
    assert has_unit("30d") and not has_unit("30") and not has_unit("soon")
    for text in ("1d", "1h", "90s", "500ms"):
        assert format_duration(parse_duration(text)) == text


def test_every_reader_accepts_the_same_grammar(tmp_path: Path) -> None:
    # The sandbox's fault durations and the incident YAML files take days and .5 too now.
    assert fault_duration("1d") == 86400.0
    assert fault_duration(".5") == 0.5
    assert fault_duration(None) is None
    with pytest.raises(UsageError, match="not a duration"):
        fault_duration("soon")
    with pytest.raises(UsageError, match="positive"):
        fault_duration("0s")
    path = tmp_path / "policy.yaml"
    path.write_text("a: 500ms\nb: 2\nc: soon\n", encoding="utf-8")
    doc = load_yaml(path, what="policy")
    assert duration(doc, doc.data["a"], "a") == 0.5
    assert duration(doc, doc.data["b"], "b") == 2.0
    with pytest.raises(ValidationError, match="c: 'soon' is not a duration") as caught:
        duration(doc, doc.data["c"], "c")
    assert caught.value.location is not None and caught.value.location.line == 3
