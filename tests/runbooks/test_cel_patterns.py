"""A literal ``matches()`` pattern that RE2 refuses (a repeat count above 1000, a backreference)
is a lint error at its file:line, not tens of seconds inside a run."""

from __future__ import annotations

import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from opsbook.errors import ExpressionError
from opsbook.expressions import compile_expression, evaluate
from opsbook.runbooks.lint import lint_paths

OPSBOOK = [sys.executable, "-m", "opsbook.cli.main"]
TODAY = date(2026, 1, 20)

RUNBOOK = """\
---
id: patterns
title: Patterns
owner: operations
review_interval: 30d
last_reviewed: 2026-01-10
---

# Patterns

## Check the output

```yaml procedure
risk: low
```

### Print it

Print a line.

```sh
echo ok
```

```expect
EXPECT
```
"""


def write(tmp_path: Path, expect: str) -> Path:
    path = tmp_path / "rb.md"
    path.write_text(RUNBOOK.replace("EXPECT", expect))
    return path


def expect_line(path: Path, expect: str) -> int:
    return path.read_text().split("\n").index(expect) + 1


def test_a_huge_repeat_count_is_a_lint_error_at_its_line(tmp_path: Path) -> None:
    expect = "stdout.matches('a{100000}')"
    path = write(tmp_path, expect)
    (finding,) = lint_paths([path], today=TODAY)
    assert finding.severity == "error"
    assert finding.line == expect_line(path, expect)
    assert "a repeat count above 1000 ({100000})" in finding.message
    assert "(?:a{1000}){100}" in finding.message  # the fix


def test_the_cli_names_file_line_and_fix(tmp_path: Path) -> None:
    expect = "exit_code == 0 && stdout.matches('a{100000}')"
    path = write(tmp_path, expect)
    done = subprocess.run(
        [*OPSBOOK, "lint", str(path)], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 1, done.stdout + done.stderr  # lint's failed check
    out = done.stdout + done.stderr
    assert f"{path}:{expect_line(path, expect)}" in out
    assert "matches() pattern 'a{100000}'" in out and "repeat counts up to 1000" in out
    assert "Traceback" not in out


@pytest.mark.parametrize(
    ("expr", "named"),
    [
        ("stdout.matches('a{1001}')", "a repeat count above 1000 ({1001})"),
        ("matches(stdout, '(a)\\\\1')", "a backreference (\\1)"),
        ('stdout.matches("x(?=y)")', "a lookahead"),
        ("size(stdout) > 0 && stdout.matches(r'\\d{5000}')", "({5000})"),
    ],
)
def test_refused_patterns_name_the_construct(expr: str, named: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        compile_expression(expr)
    assert named in caught.value.message


@pytest.mark.parametrize(
    "expr",
    [
        "stdout.matches('^ok\\\\d+$')",
        "stdout.matches(r'^ok\\d+$')",
        "stdout.matches('o{1,1000}k')",
        "stdout.contains('matches(') || stdout.matches('ok')",
    ],
)
def test_normal_patterns_still_work(tmp_path: Path, expr: str) -> None:
    assert evaluate(expr, {"stdout": "ok42"}) is True
    errors = [f for f in lint_paths([write(tmp_path, expr)], today=TODAY) if f.severity == "error"]
    assert errors == []


def test_the_function_form_with_a_normal_pattern_compiles() -> None:
    compile_expression("matches(stdout, r'^ok\\d{1,1000}$')")


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("matches(stdout, r'^ok\\d+$')", True),
        ("matches(stdout, 'k4')", True),  # found anywhere, as CEL's matches does
        ("matches(stdout, '^nope')", False),
        ("matches(stdout, p) && stdout.matches('ok')", True),  # both forms in one expression
    ],
)
def test_the_function_form_runs_like_the_method_form(expr: str, expected: bool) -> None:
    assert evaluate(expr, {"stdout": "ok42", "p": "^o"}) is expected


def test_the_function_form_refuses_a_non_string() -> None:
    with pytest.raises(ExpressionError, match="two strings"):
        evaluate("matches(code, 'a')", {"code": 1})


def test_a_computed_pattern_is_left_to_run_time() -> None:
    assert evaluate("stdout.matches(p)", {"stdout": "ok", "p": "^o"}) is True
