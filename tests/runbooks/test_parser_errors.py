"""Every parse error names the right file, line (and column where it applies) and a fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from opsbook.errors import NotFoundError, RunbookFormatError
from opsbook.runbooks.parser import parse_file
from tests.runbooks.conftest import FRONT, col_of, error, line_of, proc_doc

# (text, needle on the line at fault (nth occurrence), needle at the column or None, message)
Case = tuple[str, str | tuple[str, int], str | None, str]

FRONT_MATTER: list[Case] = [
    ("# T\n", "# T", None, "no front matter"),
    ("---\nid: t\ntitle: T\n", "---", None, "not closed"),
    ("---\nid: t\ntitle: [a\n---\n", "title", None, "invalid YAML"),
    ("---\n- a\n- b\n---\n", "- a", None, "must be a YAML mapping"),
    ("---\ntitle: T\n---\n", "---", None, "no 'id'"),
    ("---\nid: t\n---\n", "---", None, "no 'title'"),
    ("---\nid:\ntitle: T\n---\n", "id:", None, "no 'id'"),
    ("---\nid: a b\ntitle: T\n---\n", "id:", "a b", "not a valid id"),
    ("---\nid: t\ntitle: {a: 1}\n---\n", "title", "{a", "must be text"),
    ("---\nid: t\ntitle: T\nreview_interval: monthly\n---\n", "monthly", "monthly", "duration"),
    ("---\nid: t\ntitle: T\nreview_interval: 30\n---\n", "review_interval", "30", "duration"),
    ("---\nid: t\ntitle: T\nlast_reviewed: soon\n---\n", "soon", "soon", "not a date"),
    ("---\nid: t\ntitle: T\nlast_reviewed: 2026-02-30\n---\n", "2026", "2026", "invalid YAML"),
    ("---\nid: t\ntitle: T\ntags:\n  - a\n  - {b: 1}\n---\n", "{b: 1}", "{b", "plain value"),
]

STRUCTURE: list[Case] = [
    (FRONT + "```yaml procedure\n```\n", "```yaml procedure", None, "under a ## heading"),
    (
        FRONT + "## P\n\n```yaml procedure\n```\n\n```yaml procedure\n```\n",
        ("```yaml procedure", 2),
        None,
        "second procedure block",
    ),
    (proc_doc("### S\n\n```yaml procedure\n```\n"), ("```yaml procedure", 2), None, "right under"),
    (
        FRONT + "## P\n\n```yaml procedure\n```\n\n## P\n\n```yaml procedure\n```\n",
        ("## P", 2),
        None,
        "used twice",
    ),
    (FRONT + "## !!!\n\n```yaml procedure\n```\n", "## !!!", None, "gives no id"),
    (proc_doc("### Same\n\nx\n\n### same\n\ny\n"), "### same", None, "used twice"),
    (proc_doc("### ***\n\nx\n"), "### ***", None, "gives no id"),
]

PROCEDURE: list[Case] = [
    (proc_doc("", "risk: low\npermission: [x]\n"), "permission:", "permission", "unknown"),
    (proc_doc("", "- a\n"), "- a", None, "must be a YAML mapping"),
    (proc_doc("", "id: a#b\n"), "id: a#b", "a#b", "not a valid id"),
    (proc_doc("", "when_to_use: sometimes\n"), "sometimes", "sometimes", "not allowed"),
    (proc_doc("", "risk: extreme\n"), "extreme", "extreme", "not allowed"),
    (proc_doc("", 'schedule: "every day"\n'), "schedule", "every", "not a cron"),
    (proc_doc("", "risk: low\n  bad: [\n"), "bad", None, "invalid YAML"),
    (proc_doc("", "params: [a]\n"), "params", "[a]", "must be a mapping"),
    (proc_doc("", "params:\n  bad-name: {}\n"), "bad-name", "bad-name", "not an identifier"),
    (proc_doc("", "params:\n  x: 3\n"), "  x:", "x:", "must be a mapping"),
    (proc_doc("", "params:\n  x: {kind: string}\n"), "kind", "kind", "unknown key"),
    (proc_doc("", "params:\n  x: {type: text}\n"), "text", "text", "not a parameter type"),
    (proc_doc("", "params:\n  x: {type: choice}\n"), "choice", "choice", "needs choices"),
    (
        proc_doc("", "params:\n  x: {type: string, choices: [a]}\n"),
        "choices",
        "[a]",
        "only to type: choice",
    ),
    (proc_doc("", "params:\n  x: {type: secret}\n"), "secret", "secret", "needs 'from'"),
    (
        proc_doc("", "params:\n  x: {type: secret, from: s, default: d}\n"),
        "default",
        "d}",
        "cannot have a default",
    ),
    (proc_doc("", "params:\n  x: {type: string, from: s}\n"), "from", "s}", "only to secret"),
    (proc_doc("", "params:\n  x: {type: string, min: 1}\n"), "min", "1}", "applies only"),
    (
        proc_doc("", "params:\n  x: {type: integer, min: 5, max: 1}\n"),
        "min",
        "5,",
        "greater than max",
    ),
    (proc_doc("", "params:\n  x: {type: integer, min: lots}\n"), "lots", "lots", "not a number"),
    (proc_doc("", "params:\n  x: {type: duration, min: ages}\n"), "ages", "ages", "duration"),
    (proc_doc("", "params:\n  x: {type: string, pattern: '('}\n"), "pattern", "(", "regular"),
    (proc_doc("", "params:\n  x: {type: integer, pattern: a}\n"), "pattern", "a}", "only to str"),
    (proc_doc("", "params:\n  x: {required: maybe}\n"), "maybe", "maybe", "true or false"),
    (
        proc_doc("", "params:\n  x: {type: choice, choices: [a], default: b}\n"),
        "default",
        "b}",
        "not one of: a",
    ),
    (
        proc_doc("", "params:\n  x: {type: integer, max: 3, default: 9}\n"),
        "default",
        "9}",
        "out of range",
    ),
    (
        proc_doc("", "params:\n  x: {type: string, required: true, default: a}\n"),
        "default",
        "a}",
        "required parameter cannot have a default",
    ),
    (proc_doc("", "params:\n  x: {default: [a]}\n"), "default", "[a]", "single value"),
]


def _sh(attrs: str, body: str = "ls") -> str:
    return proc_doc(f"### S\n\n```sh {attrs}\n{body}\n```\n\n### T\n\nx\n")


ATTRIBUTES: list[Case] = [
    (_sh("{name=x colour=red}"), "colour", "colour", "unknown attribute 'colour'"),
    (_sh("{retries=1 retries=2}"), "retries", "retries=2", "given twice"),
    (_sh("{db=main}"), "db=", "db=", "only to sql"),
    (_sh("{name=x"), "{name", "{name", "not closed"),
    (_sh("{when='a > 1}"), "when", "'a", "unterminated"),
    (_sh('{"name": x}'), "name", '{"name', "not valid JSON"),
    (_sh('{"name": ["x"]}'), "name", '"name"', "string, number or boolean"),
    (_sh("{=x}"), "{=x}", "=x}", "unexpected '='"),
    (_sh("{name=a#b}"), "name", "a#b", "not a valid step id"),
    (_sh("{timeout=soon}"), "timeout", "soon", "not a duration"),
    (_sh("{timeout=0s}"), "timeout", "0s", "more than zero"),
    (_sh("{retry_delay=-1s}"), "retry_delay", "-1s", "not a duration"),
    (_sh("{retries=two}"), "retries", "two", "whole number"),
    (_sh("{on_failure=panic}"), "on_failure", "panic", "not understood"),
    (_sh("{on_failure=goto:nowhere}"), "on_failure", "goto:nowhere", "goto target 'nowhere'"),
    (_sh("{idempotent=maybe}"), "idempotent", "maybe", "not true or false"),
    (_sh("{ignore=maybe}"), "ignore", "maybe", "not true or false"),
    (_sh("{risk=extreme}"), "risk=", "extreme", "not a risk level"),
    (_sh("{env=A}"), "env", "A}", "has no '='"),
    (_sh('{env=\'{"1A": "x"}\'}'), "env", '{"1A', "not an environment variable name"),
    (_sh("{env='{\"A\": [1]}'}"), "env", '{"A', "must be a string"),
    (_sh("{env='{oops'}"), "env", "{oops", "not a JSON object"),
    (_sh("{cwd=}"), "cwd", "}", "empty"),
    (proc_doc("### S\n\n```sh titled\nls\n```\n"), "```sh", "titled", "unexpected 'titled'"),
]

STEPS: list[Case] = [
    (
        proc_doc("### S\n\n```sh\nls\n```\n\n```http\nGET http://x\n```\n"),
        "```http",
        None,
        "second executable block (the first is at line",
    ),
    (proc_doc("### S\n\n```expect\nexit_code == 0\n```\n"), "```expect", None, "needs an exec"),
    (
        proc_doc("### S\n\n```approval\n```\n\n```expect\ntrue\n```\n"),
        "```expect",
        None,
        "no result for expect",
    ),
    (
        proc_doc("### S\n\n```sh\nls\n```\n\n```expect {x=1}\ntrue\n```\n"),
        "```expect",
        "expect",
        "take no attributes",
    ),
    (
        proc_doc("### S\n\n```sh\nls\n```\n\n```expect\n# only a comment\n```\n"),
        "```expect",
        None,
        "no assertion",
    ),
    (proc_doc("### S\n\n```sh\n\n```\n"), "```sh", None, "is empty"),
    (proc_doc("### S\n\n```http\nFETCH http://x\n```\n"), "FETCH", "FETCH", "METHOD URL"),
    (proc_doc("### S\n\n```action\n- a\n```\n"), "- a", None, "exactly one"),
    (proc_doc("### S\n\n```action\na.b: {}\nc.d: {}\n```\n"), "a.b", None, "exactly one"),
    (proc_doc("### S\n\n```action\nnot an action!: {}\n```\n"), "not an", None, "not an action"),
    (proc_doc("### S\n\n```action\na.b: [1]\n```\n"), "a.b", "[1]", "must be a mapping"),
    (proc_doc("### S\n\n```action\na.b: {x: [1}\n```\n"), "a.b", None, "invalid YAML"),
    (proc_doc("### S\n\n```approval\nquorum: 1\nwho: me\n```\n"), "who", "who", "unknown"),
    (proc_doc("### S\n\n```approval\nquorum: 0\n```\n"), "quorum", "0", "at least 1"),
    (proc_doc("### S\n\n```approval\nexpires: never\n```\n"), "expires", "never", "positive"),
    (proc_doc("### S\n\n```approval\n- a\n```\n"), "- a", None, "must be a YAML mapping"),
]


def _decide(rules: str) -> str:
    return proc_doc(f"### S\n\n```decide\n{rules}\n```\n\n### T\n\nx\n")


DECIDE: list[Case] = [
    (_decide("a: 1"), "a: 1", None, "non-empty YAML list"),
    (_decide("- just text"), "just text", None, "must be a mapping"),
    (_decide("- {if: 'true', goto: t, also: x}"), "also", "also", "unknown key 'also'"),
    (_decide("- else: t\n- {if: 'true', goto: t}"), "else", None, "must be the last"),
    (_decide("- {else: t, goto: t}"), "else", None, "stands alone"),
    (_decide("- {goto: t}"), "goto", None, "no 'if'"),
    (_decide("- {if: 'a >', goto: t}"), "if:", None, "invalid CEL"),
    (_decide("- {if: 'true'}"), "if:", None, "exactly one of 'goto' or 'run'"),
    (_decide("- {if: 'true', goto: 'a b'}"), "goto", "a b", "not a step id"),
    (_decide("- {if: 'true', goto: nowhere}"), "nowhere", None, "not a step of procedure"),
    (_decide("- {if: 'true', run: 'a b#c'}"), "run", "a b", "not a RUNBOOK#PROCEDURE"),
    (_decide("- else: {goto: x, run: y}"), "else", None, "exactly one of"),
]

ALL = [
    pytest.param(*c, id=f"{group}-{i}")
    for group, cases in (
        ("front", FRONT_MATTER),
        ("structure", STRUCTURE),
        ("procedure", PROCEDURE),
        ("attrs", ATTRIBUTES),
        ("steps", STEPS),
        ("decide", DECIDE),
    )
    for i, c in enumerate(cases)
]


@pytest.mark.parametrize(("text", "where", "at", "message"), ALL)
def test_error_names_line_and_column(
    text: str, where: str | tuple[str, int], at: str | None, message: str
) -> None:
    err = error(text)
    needle, nth = where if isinstance(where, tuple) else (where, 1)
    assert message in err.message
    assert err.location is not None
    assert err.location.line == line_of(text, needle, nth), err.render()
    if at is not None:
        assert err.location.col == col_of(text, at), err.render()


def test_unknown_attribute_lists_the_known_ones() -> None:
    err = error(_sh("{colour=red}"))
    assert err.hint is not None
    for known in ("name", "timeout", "retries", "when", "on_failure", "env", "ignore"):
        assert known in err.hint


def test_two_blocks_name_both_lines() -> None:
    text = proc_doc("### S\n\n```sh\nls\n```\n\n```sh\npwd\n```\n")
    err = error(text)
    assert f"line {line_of(text, '```sh')}" in err.message
    assert err.location is not None and err.location.line == line_of(text, "```sh", 2)


def test_cel_errors_point_into_the_expression() -> None:
    text = _sh("{when='params.x > '}")
    err = error(text)
    assert err.location is not None
    assert err.location.line == line_of(text, "when")
    assert err.location.col >= col_of(text, "params.x")
    text = proc_doc("### S\n\n```sh\nls\n```\n\n```expect\nexit_code == 0\n  stdout.(\n```\n")
    err = error(text)
    assert err.location is not None
    assert err.location.line == line_of(text, "stdout.(")
    assert err.location.col > col_of(text, "stdout")
    assert "expect" in err.message and "stdout.(" in err.message


def test_for_each_is_compiled_at_parse_time() -> None:
    err = error(_sh("{for_each='[1, 2'}"))
    assert "for_each" in err.message


def test_yaml_errors_are_offset_to_the_file_line() -> None:
    text = proc_doc("### S\n\n```approval\nquorum: 1\nroles: [a\nexpires: 1h\n```\n")
    err = error(text)
    assert err.location is not None
    assert err.location.line >= line_of(text, "roles: [a")


def test_parse_file_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.md"
    bad.write_bytes(b"---\nid: t\ntitle: T\n---\n\ncaf\xe9\n")
    with pytest.raises(RunbookFormatError) as info:
        parse_file(bad)
    assert info.value.location is not None and info.value.location.line == 6
    with pytest.raises(NotFoundError):
        parse_file(tmp_path / "missing.md")


def test_render_gives_file_line_col_and_fix() -> None:
    text = _sh("{colour=red}")
    rendered = error(text).render()
    assert rendered.startswith(f"runbooks/t.md:{line_of(text, 'colour')}:{col_of(text, 'colour')}")
    assert "\n  fix: known attributes:" in rendered


def test_deeply_nested_yaml_is_a_format_error() -> None:
    text = "---\nid: t\ntitle: T\nx: " + "[" * 2000 + "]" * 2000 + "\n---\n"
    err = error(text)
    assert "nested too deeply" in err.message
    assert err.location is not None and err.location.line == 4  # the line of the nesting
