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


# -- Alertmanager's matcher list syntax (issue 18) -------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('a="x",b="y"', [("a", "=", "x"), ("b", "=", "y")]),
        ('{a="x",b=~"y.*"}', [("a", "=", "x"), ("b", "=~", "y.*")]),
        ('{foo = "bar", dings != "bums", }', [("foo", "=", "bar"), ("dings", "!=", "bums")]),
        ("foo=bar,dings!=bums", [("foo", "=", "bar"), ("dings", "!=", "bums")]),
        ('{foo="bar,quux", job="job1"}', [("foo", "=", "bar,quux"), ("job", "=", "job1")]),
        (
            r'{quote="She said: \"Hi, all\""}',
            [("quote", "=", 'She said: "Hi, all"')],
        ),
        (r'a="back\\slash",b="new\nline"', [("a", "=", "back\\slash"), ("b", "=", "new\nline")]),
        (r'a="spurious \d escape"', [("a", "=", "spurious \\d escape")]),
        ('statuscode=~"5.."', [("statuscode", "=~", "5..")]),
        ("tricky=~~~", [("tricky", "=~", "~~")]),
        (r"trickier==\\=\=\"", [("trickier", "=", '=\\=\\="')]),
        (
            r'contains_quote != "\"" , contains_comma !~ "foo,bar" , ',
            [("contains_quote", "!=", '"'), ("contains_comma", "!~", "foo,bar")],
        ),
        ('foo=""', [("foo", "=", "")]),
        ("job:rate=x", [("job:rate", "=", "x")]),
        ("{}", []),
    ],
)
def test_matcher_lists_parse_as_alertmanager_does(
    text: str, expected: list[tuple[str, str, str]]
) -> None:
    assert [tuple(m) for m in matchers.parse_list(text, field="m")] == expected


@pytest.mark.parametrize(
    "text",
    [
        'job="value',
        'job=value"',
        r'trickier==\\=\=\""',
        'contains_unescaped_quote = foo"bar',
        '{invalid-name = "valid label"}',
        '"foo=\\"bar\\""',
        '"{foo=\\"bar\\"}"',
        '"foo="bar""',
        "a=b,,c=d",
        ",",
        "no operator",
        "=x",
    ],
)
def test_what_alertmanager_refuses_is_refused_naming_the_field(text: str) -> None:
    with pytest.raises(ValidationError) as info:
        matchers.parse_list(text, field="--match")
    assert info.value.field == "--match" and info.value.hint


def test_one_text_with_several_matchers_is_several_matchers_not_a_garbage_value() -> None:
    rules = matchers.from_input(['a="x",b="y"', "c=~z.*"], field="matchers")
    assert rules == [Matcher("a", "=", "x"), Matcher("b", "=", "y"), Matcher("c", "=~", "z.*")]
    with pytest.raises(ValidationError) as info:
        matchers.from_input(["a=x", 'b="y'], field="matchers")
    assert info.value.field == "matchers[1]"
    with pytest.raises(ValidationError) as info:
        matchers.from_input(["a=x", "{}"], field="matchers")
    assert info.value.field == "matchers[1]" and "no matcher" in info.value.message
    with pytest.raises(ValidationError) as info:
        matchers.parse('a="x",b="y"', field="--match")
    assert "2 matchers" in info.value.message


@pytest.mark.parametrize(
    "value",
    ["a,b", "x}", "{x", "~x", "=x", "new\nline", "back\\slash", '"', "tab\tbed", "a b", "é"],
)
def test_every_value_round_trips_through_its_text(value: str) -> None:
    for op in ("=", "!="):
        m = Matcher("label", op, value)
        assert matchers.parse(str(m)) == m
        assert matchers.parse_list(f"{{{m},other=x}}", field="m") == [m, Matcher("other", "=", "x")]


def test_regex_matchers_are_re2_anchored_and_linear() -> None:
    evil = matchers.parse("pod=~(a+)+$")
    assert evil.matches({"pod": "a" * 30}) is True
    assert evil.matches({"pod": "a" * 50_000 + "b"}) is False  # backtracking: years
    assert matchers.parse("pod=~a|b").matches({"pod": "ab"}) is False  # (?:a|b) in full
    with pytest.raises(ValidationError) as info:
        matchers.parse(r"pod=~(a)\1", field="matchers[0]")
    assert "backreference" in info.value.message and info.value.field == "matchers[0]"
    with pytest.raises(ValidationError) as info:
        matchers.parse("pod=~(?=a)a", field="--match")
    assert "lookahead" in info.value.message


def test_a_stored_matcher_re2_refuses_silences_nothing_instead_of_failing() -> None:
    """Silences stored while matchers ran on Python's re may hold a lookahead."""
    stored = matchers.loads('[["pod", "=~", "(?!x)pay.*"], ["service", "=", "payment"]]')
    texts = [str(m) for m in stored]
    assert matchers.all_match(texts, LABELS) is False
    assert matchers.all_match(["service=payment"], LABELS) is True
