"""Silence matchers as Alertmanager writes them: =, !=, =~, !~ (anchored), quotes, storage."""

from __future__ import annotations

import pytest

from opsbook.errors import ValidationError
from opsbook.monitoring import matchers
from opsbook.monitoring.matchers import Matcher

LABELS = {"alertname": "HighErrorRate", "service": "payment", "pod": "payment-7d9f"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("service=payment", True),
        ("service!=payment", False),
        ("pod=~payment-.*", True),
        ('pod=~"pay"', False),  # anchored: the whole value must match
        ("pod!~account-.*", True),
        ("zone=", True),  # a label the alert lacks is the empty string
        ("zone=~.+", False),
        ("  service = payment ", True),
    ],
)
def test_operators(text: str, expected: bool) -> None:
    assert matchers.parse(text).matches(LABELS) is expected


@pytest.mark.parametrize("value", ["x", "", " padded ", '"quoted"', 'a"b', '"', "a=b", "=~"])
def test_text_round_trips(value: str) -> None:
    for op in matchers.OPS:
        m = Matcher("label", op, value if "~" not in op else "a.*")
        assert matchers.parse(str(m)) == m


def test_bad_matchers_name_the_field() -> None:
    with pytest.raises(ValidationError) as info:
        matchers.parse("service=~pay(", field="--match")
    assert info.value.field == "--match" and "regular expression" in info.value.message
    with pytest.raises(ValidationError) as info:
        matchers.from_input(["service=payment", "no operator"], field="matchers")
    assert info.value.field == "matchers[1]"
    with pytest.raises(ValidationError):
        matchers.parse("9bad=x")


def test_stored_form_and_silences_stored_as_maps_before() -> None:
    rules = matchers.from_input(["service=payment", "pod=~pay.*"], field="m")
    assert matchers.loads(matchers.dumps(rules)) == rules
    assert matchers.loads('{"pod": "p1"}') == [Matcher("pod", "=", "p1")]
    assert matchers.all_match(["service=payment", "pod=~pay.*"], LABELS)
    assert not matchers.all_match(["service=payment", "pod!~pay.*"], LABELS)
