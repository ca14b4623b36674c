"""``opsbook lint`` reports every format error it can locate in one run, not only the first."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from opsbook.errors import OpsbookError, RunbookFormatError
from opsbook.runbooks.lint import lint_paths
from opsbook.runbooks.parser import check_file, parse_file
from tests.runbooks.test_properties import mutated

OPSBOOK = [sys.executable, "-m", "opsbook.cli.main"]
TODAY = date(2026, 1, 20)

# Seven independent mistakes: two in the front matter, one in each procedure block, a step
# attribute, an expect block and an action block.
BROKEN = """\
---
id: broken
title: Broken
review_interval: monthly
last_reviewed: soon
---

# Broken

## First procedure

```yaml procedure
risk: extreme
```

### Check it

Look at it.

```sh {timeout=forever}
echo ok
```

### Check again

Look again.

```sh
echo ok
```

```expect
exit_code ==
```

## Second procedure

```yaml procedure
owner_team: payments
```

### Restart it

Restart it.

```action
platform.restart: [not, a, mapping]
```

### Wait

Wait for it.

```sh {retries=many}
sleep 1
```
"""


def _line(needle: str) -> int:
    return next(i for i, text in enumerate(BROKEN.split("\n"), 1) if needle in text)


EXPECTED = {
    _line("review_interval: monthly"): "review_interval",
    _line("last_reviewed: soon"): "last_reviewed",
    _line("risk: extreme"): "risk",
    _line("sh {timeout=forever}"): "timeout",
    _line("exit_code =="): "expect",
    _line("owner_team"): "owner_team",
    _line("platform.restart"): "platform.restart",
    _line("sh {retries=many}"): "retries",
}


@pytest.fixture
def broken(tmp_path: Path) -> Path:
    path = tmp_path / "broken.md"
    path.write_text(BROKEN, encoding="utf-8")
    return path


def _check_lines(found: list[tuple[int, str]]) -> None:
    lines = [line for line, _ in found]
    assert lines == sorted(lines), "findings come in line order"
    assert len(lines) == len(set(lines)), f"one finding per mistake: {found}"
    assert set(lines) == set(EXPECTED), found
    for line, message in found:
        assert EXPECTED[line] in message, (line, message)
        assert "(fix: " in message, message


def test_lint_paths_reports_every_error(broken: Path) -> None:
    findings = lint_paths([broken], today=TODAY)
    assert {f.code for f in findings} == {"OB001"}
    assert all(f.severity == "error" for f in findings)
    _check_lines([(f.line, f.message) for f in findings])


def test_parse_still_stops_at_the_first_error(broken: Path) -> None:
    with pytest.raises(RunbookFormatError) as info:
        parse_file(broken)
    assert info.value.location is not None
    assert info.value.location.line == _line("review_interval: monthly")


def _lint(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*OPSBOOK, "lint", "--today", TODAY.isoformat(), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "OPSBOOK_WORKSPACE": "/nonexistent"},
        stdin=subprocess.DEVNULL,
        timeout=60,
    )


def test_cli_prints_every_error_with_its_line(broken: Path) -> None:
    done = _lint(str(broken))
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    found = []
    for text in done.stdout.splitlines():
        where, _, rest = text.partition(": ")
        path, line, col = where.rsplit(":", 2)
        assert path == str(broken) and int(col) >= 1
        code, _, message = rest.partition(" ")
        assert code == "OB001"
        found.append((int(line), message))
    _check_lines(found)


def test_cli_json_lists_every_error(broken: Path) -> None:
    done = _lint("--json", str(broken))
    assert done.returncode == 1, done.stderr
    items = json.loads(done.stdout)
    assert all(i["path"] == str(broken) and i["code"] == "OB001" for i in items)
    assert all(i["severity"] == "error" and i["col"] >= 1 for i in items)
    _check_lines([(i["line"], i["message"]) for i in items])


def test_a_file_that_cannot_be_read_stops_only_itself(broken: Path, tmp_path: Path) -> None:
    bad_yaml = tmp_path / "bad_yaml.md"
    bad_yaml.write_text("---\nid: [x\n---\n\n# X\n", encoding="utf-8")
    not_utf8 = tmp_path / "not_utf8.md"
    not_utf8.write_bytes(b"---\nid: x\ntitle: \xff\n---\n")
    findings = lint_paths([tmp_path], today=TODAY)
    by_file: dict[str, list[int]] = {}
    for f in findings:
        by_file.setdefault(f.path.name, []).append(f.line)
    assert by_file["bad_yaml.md"] == [2]
    assert by_file["not_utf8.md"] == [3]
    assert sorted(by_file["broken.md"]) == sorted(EXPECTED)


def test_errors_are_not_repeated(tmp_path: Path) -> None:
    """Two steps with the same bad goto target, and a duplicate step id: each once."""
    path = tmp_path / "dup.md"
    path.write_text(
        "---\nid: dup\ntitle: Dup\n---\n\n# Dup\n\n## P\n\n```yaml procedure\nrisk: low\n```\n\n"
        "### A\n\nDo it.\n\n```sh {on_failure=goto:nowhere}\ntrue\n```\n\n"
        "### A\n\nDo it again.\n\n```sh {timeout=x}\ntrue\n```\n",
        encoding="utf-8",
    )
    findings = lint_paths([path], today=TODAY)
    keys = [(f.line, f.col, f.message) for f in findings]
    assert len(keys) == len(set(keys))
    messages = " | ".join(f.message for f in findings)
    assert "timeout" in messages and "nowhere" in messages


def test_errors_inside_one_block_and_one_step_are_all_reported(tmp_path: Path) -> None:
    """Two bad attributes of one fence, two bad parameters, an unclosed attribute list and the
    bad expect block after it: each is reported."""
    text = (
        "---\nid: many\ntitle: Many\n---\n\n# Many\n\n## P\n\n```yaml procedure\nrisk: low\n"
        "params:\n  a: {type: integer, min: x}\n  b: {type: colour}\n```\n\n"
        "### One\n\nDo it.\n\n```sh {retries=many timeout=0}\ntrue\n```\n\n"
        "### Two\n\nDo it.\n\n```sh {name=two\ntrue\n```\n\n```expect\nexit_code ==\n```\n"
    )
    path = tmp_path / "many.md"
    path.write_text(text, encoding="utf-8")
    findings = lint_paths([path], today=TODAY)
    lines = text.split("\n")
    got = {(lines[f.line - 1], f.message.split(" (fix:")[0]) for f in findings}
    where = sorted(lines[f.line - 1] for f in findings)
    assert where == sorted(
        [
            "  a: {type: integer, min: x}",
            "  b: {type: colour}",
            "```sh {retries=many timeout=0}",
            "```sh {retries=many timeout=0}",
            "```sh {name=two",
            "exit_code ==",
        ]
    ), got
    cols = [f.col for f in findings if lines[f.line - 1].startswith("```sh {retries")]
    assert len(set(cols)) == 2


def test_a_valid_runbook_parses_the_same_either_way() -> None:
    shipped = Path(__file__).parents[2] / "src/opsbook/workspace/templates/runbooks"
    for f in sorted(shipped.glob("0*.md")):
        runbook, errors = check_file(f)
        assert errors == [] and runbook == parse_file(f)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_collecting_finds_the_first_error_and_nothing_when_there_is_none(text: str) -> None:
    """The parse that goes on past errors runs the same checks up to the first one: it reports
    that error too, and a runbook that parses is parsed the same."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rb.md"
        path.write_bytes(text.encode("utf-8", "surrogatepass"))
        try:
            first: RunbookFormatError | None = None
            expected = parse_file(path)
        except RunbookFormatError as exc:
            first = exc
        except OpsbookError:
            return  # not UTF-8: one error, the same either way
        runbook, errors = check_file(path)
    if first is None:
        assert errors == [] and runbook == expected
        return
    assert runbook is None
    assert [(e.location, e.message) for e in errors].count((first.location, first.message)) == 1
    keys = [(e.location.line, e.location.col) for e in errors if e.location]
    assert len(keys) == len(errors) and keys == sorted(keys)
    assert all(e.hint for e in errors)
