"""Property tests: no input makes the parser, the linter or CEL compilation fail with anything
but their own located errors."""

from __future__ import annotations

import tempfile
from datetime import date
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opsbook.errors import ExpressionError, RunbookFormatError
from opsbook.expressions import compile_expression
from opsbook.runbooks.lint import lint_paths
from opsbook.runbooks.model import Runbook
from opsbook.runbooks.parser import parse_text
from tests.runbooks.test_lint import CLEAN
from tests.runbooks.test_parser import DESIGN_EXAMPLE

RICH = """\
---
id: rich
title: Rich
owner: ops
review_interval: 90d
last_reviewed: 2026-01-01
---

## Fix it

```yaml procedure
id: fix
risk: medium
permissions: [operator]
params:
  n: {type: integer, min: 1, default: 2}
  mode: {type: choice, choices: [a, b]}
  pw: {type: secret, from: pw}
```

### Look

```sh {name=look timeout=5s retries=1 when="params.n > 1" on_failure=goto:decide}
echo '{"ok": true}'
```

```expect
json.ok == true
```

### Decide

```decide
- {if: 'steps.look.result.exit_code == 0', goto: done}
- else: {run: "other#proc"}
```

### Query

```sql {"db": "main", "write": false, "for_each": "[1, 2]"}
SELECT 1
```

### Done

- [ ] told the team
"""

SEEDS = [DESIGN_EXAMPLE, CLEAN, RICH]
MARKUP = st.sampled_from(
    [*"`{}[]#-:=\"'\\ \n\t*>|!,.~", "```", "```sh {", "---\n", "### ", "## ", "\n\n", "{{"]
)
FRAGMENT = st.lists(st.one_of(MARKUP, st.text(max_size=4)), max_size=12).map("".join)
FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check_parse(text: str) -> Runbook | None:
    try:
        return parse_text(text, path=Path("p.md"))
    except RunbookFormatError as exc:
        assert exc.location is not None
        assert exc.location.path == "p.md"
        assert exc.location.line >= 1
        assert exc.hint
        return None


@st.composite
def mutated(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 4))):
        n = len(text)
        i = draw(st.integers(0, n))
        j = draw(st.integers(i, min(n, i + 40)))
        op = draw(st.sampled_from(["delete", "insert", "replace", "dup-line", "swap-lines"]))
        if op == "delete":
            text = text[:i] + text[j:]
        elif op == "insert":
            text = text[:i] + draw(FRAGMENT) + text[i:]
        elif op == "replace":
            text = text[:i] + draw(FRAGMENT) + text[j:]
        else:
            lines = text.split("\n")
            a = draw(st.integers(0, len(lines) - 1))
            b = draw(st.integers(0, len(lines) - 1))
            if op == "dup-line":
                lines.insert(b, lines[a])
            else:
                lines[a], lines[b] = lines[b], lines[a]
            text = "\n".join(lines)
    return text


def test_seeds_parse() -> None:
    for seed in SEEDS:
        assert check_parse(seed) is not None


@FAST
@given(st.text())
def test_parse_arbitrary_text(text: str) -> None:
    check_parse(text)


@FAST
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=300))
def test_parse_arbitrary_body_after_front_matter(body: str) -> None:
    check_parse("---\nid: x\ntitle: X\n---\n" + body)


@FAST
@given(mutated())
def test_parse_mutated_runbooks(text: str) -> None:
    check_parse(text)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_lint_never_fails_on_mutated_runbooks(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rb.md"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        for f in lint_paths([path], today=date(2026, 6, 1)):
            assert f.line >= 1 and f.col >= 1
            assert f.severity in ("error", "warning")


@FAST
@given(st.text(max_size=80))
def test_compile_expression_arbitrary_strings(expr: str) -> None:
    try:
        compile_expression(expr)
    except ExpressionError as exc:
        assert exc.message


@FAST
@given(FRAGMENT)
def test_compile_expression_markup_fragments(expr: str) -> None:
    try:
        compile_expression(expr)
    except ExpressionError as exc:
        assert exc.message
