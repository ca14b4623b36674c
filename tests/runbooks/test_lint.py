"""``opsbook lint`` codes: each triggered by a small change to a clean runbook."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from opsbook.runbooks.lint import Finding, format_finding, lint_paths, typo_of

TODAY = date(2026, 1, 20)

CLEAN = """\
---
id: clean
title: Clean
owner: operations
review_interval: 30d
last_reviewed: 2026-01-10
---

# Clean

## Restart a service

```yaml procedure
permissions: [operator]
prerequisites: [opsbook doctor passes]
risk: high
params:
  service: {type: choice, choices: [account, payment]}
```

### Get approval

Two approvers confirm the change window.

```approval
quorum: 2
roles: [approver]
```

### Restart it

Restart the service.

```action
platform.restart: {service: "{{ params.service }}"}
```

```expect
result.restarted == true
```

### Confirm with the team

- [ ] The channel was told

### Troubleshooting

If it does not come back, escalate.
"""


def lint_text(tmp_path: Path, text: str, today: date = TODAY) -> list[Finding]:
    path = tmp_path / "rb.md"
    path.write_text(text)
    return lint_paths([path], today=today)


def codes(findings: list[Finding]) -> list[str]:
    return [f.code for f in findings]


def test_clean_runbook_has_no_findings(tmp_path: Path) -> None:
    assert lint_text(tmp_path, CLEAN) == []


def line(text: str, needle: str) -> int:
    return next(i for i, x in enumerate(text.split("\n"), 1) if needle in x)


APPROVAL = "### Get approval\n\nTwo approvers confirm the change window.\n\n```approval\n"
APPROVAL += "quorum: 2\nroles: [approver]\n```\n\n"


@pytest.mark.parametrize(
    ("old", "new", "code", "severity", "needle"),
    [
        ("quorum: 2\n", "quorum: 0\n", "OB001", "error", "quorum: 0"),
        (
            "escalate.\n",
            "escalate.\n\n## Empty\n\n```yaml procedure\npermissions: [a]\n"
            "prerequisites: [b]\n```\n",
            "OB101",
            "error",
            "## Empty",
        ),
        ("prerequisites: [opsbook doctor passes]\n", "", "OB102", "warning", "```yaml procedure"),
        ("permissions: [operator]\n", "", "OB103", "warning", "```yaml procedure"),
        (
            '```action\nplatform.restart: {service: "{{ params.service }}"}\n```\n\n```expect\n'
            "result.restarted == true\n```\n",
            "```sh\nsystemctl restart x\n```\n",
            "OB104",
            "warning",
            "```sh",
        ),
        (
            "### Troubleshooting\n\nIf it does not come back, escalate.\n",
            "",
            "OB105",
            "warning",
            "## Restart a service",
        ),
        (APPROVAL, "", "OB106", "error", "### Restart it"),
        (
            "last_reviewed: 2026-01-10",
            "last_reviewed: 2025-11-01",
            "OB107",
            "warning",
            "last_reviewed",
        ),
        ("owner: operations\n", "", "OB108", "warning", "---"),
        ("Restart the service.\n\n", "", "OB109", "warning", "### Restart it"),
        ("- [ ] The channel was told\n", "", "OB110", "error", "### Confirm"),
        ("- [ ] The channel was told\n", "```shh\nls\n```\n", "OB111", "warning", "```shh"),
        (
            "- [ ] The channel was told\n",
            "1. Run:\n\n   ```sh\n   ls\n   ```\n",
            "OB112",
            "warning",
            "```sh",
        ),
        (
            "Restart the service.\n",
            "Restart the service.\n\n- [ ] Watched it\n",
            "OB113",
            "warning",
            "- [ ] Watched",
        ),
    ],
)
def test_each_code(
    tmp_path: Path, old: str, new: str, code: str, severity: str, needle: str
) -> None:
    assert old in CLEAN
    text = CLEAN.replace(old, new)
    findings = lint_text(tmp_path, text)
    assert codes(findings) == [code], [format_finding(f) for f in findings]
    (f,) = findings
    assert f.severity == severity
    assert f.line == line(text, needle)
    assert f.path == tmp_path / "rb.md"


def test_parse_error_reports_location_and_fix(tmp_path: Path) -> None:
    text = CLEAN.replace("```action", "```action {colour=red}")
    (f,) = lint_text(tmp_path, text)
    assert f.code == "OB001"
    assert (f.line, f.col) == (
        line(text, "colour"),
        text.split("\n")[f.line - 1].index("colour") + 1,
    )
    assert "unknown attribute 'colour'" in f.message and "fix: known attributes" in f.message


def test_ob106_step_risk_high_needs_an_approval_before_it(tmp_path: Path) -> None:
    text = CLEAN.replace("risk: high\n", "risk: low\n").replace(APPROVAL, "")
    assert lint_text(tmp_path, text) == []
    text = text.replace("```action\n", "```action {risk=high}\n")
    assert codes(lint_text(tmp_path, text)) == ["OB106"]


def test_ob105_satisfied_by_on_failure(tmp_path: Path) -> None:
    text = CLEAN.replace("### Troubleshooting\n\nIf it does not come back, escalate.\n", "")
    text = text.replace("```action\n", "```action {on_failure=run:troubleshooting#restart}\n")
    assert lint_text(tmp_path, text) == []


def test_ob108_lists_every_missing_key(tmp_path: Path) -> None:
    text = CLEAN.replace("owner: operations\nreview_interval: 30d\nlast_reviewed: 2026-01-10\n", "")
    (f,) = lint_text(tmp_path, text)
    assert f.code == "OB108"
    assert "owner" in f.message and "last_reviewed" in f.message and "review_interval" in f.message


def test_ob107_names_the_due_date(tmp_path: Path) -> None:
    (f,) = lint_text(tmp_path, CLEAN, today=date(2026, 2, 10))
    assert f.code == "OB107"
    assert "2026-02-09" in f.message
    assert lint_text(tmp_path, CLEAN, today=date(2026, 2, 9)) == []


def test_directories_are_walked_and_every_file_reported(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("# Index\n")
    (tmp_path / ".opsbook").mkdir()
    (tmp_path / ".opsbook" / "x.md").write_text("not a runbook")
    sub = tmp_path / "team"
    sub.mkdir()
    (sub / "a.md").write_text(CLEAN)
    (sub / "b.md").write_text("# no front matter\n")
    (tmp_path / "c.md").write_text(CLEAN.replace("Restart the service.\n\n", ""))
    (tmp_path / "d.md").write_text(
        CLEAN.replace("id: clean", "id: other").replace("quorum: 2", "quorum: x")
    )
    findings = lint_paths([tmp_path], today=TODAY)
    got = [(f.path.relative_to(tmp_path).as_posix(), f.code) for f in findings]
    assert got == [
        ("c.md", "OB109"),
        ("d.md", "OB001"),
        ("team/a.md", "OB002"),
        ("team/b.md", "OB001"),
    ]
    assert "also used by" in findings[2].message and "c.md" in findings[2].message


def test_explicit_files_are_linted_even_if_named_readme(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# Index\n")
    assert codes(lint_paths([readme], today=TODAY)) == ["OB001"]


def test_findings_sorted_and_formatted(tmp_path: Path) -> None:
    text = CLEAN.replace("owner: operations\n", "").replace("Restart the service.\n\n", "")
    findings = lint_text(tmp_path, text)
    assert codes(findings) == ["OB108", "OB109"]
    assert format_finding(findings[0]) == (
        f"{tmp_path / 'rb.md'}:1:1: OB108 front matter has no owner (review cadence and owner)"
    )


@pytest.mark.parametrize(
    ("info", "guess"),
    [
        ("shh", "sh"),
        ("htttp", "http"),
        ("Bash", "bash"),
        ("acton", "action"),
        ("expected", "expect"),
        ("aproval", "approval"),
        ("yaml procdure", "yaml procedure"),
        ("console", None),
        ("zsh", None),
        ("html", None),
        ("psql", None),
        ("python", None),
        ("sh", None),
        ("yaml", None),
        ("yaml procedure", None),
        ("mermaid", None),
    ],
)
def test_typo_of(info: str, guess: str | None) -> None:
    assert typo_of(info.split()) == guess


def test_the_full_example_of_the_spec_parses_and_lints_clean(tmp_path: Path) -> None:
    spec = Path(__file__).resolve().parents[2] / "docs" / "runbook-format.md"
    text = spec.read_text(encoding="utf-8")
    example = text.split("## A full example", 1)[1].split("````markdown\n", 1)[1]
    example = example.rsplit("\n````", 1)[0] + "\n"
    path = tmp_path / "platform.md"
    path.write_text(example)
    assert [format_finding(f) for f in lint_paths([path], today=date(2026, 12, 1))] == []


def test_typos_and_nested_blocks_outside_procedure_steps_are_documentation(
    tmp_path: Path,
) -> None:
    extra = (
        "\n## Appendix\n\n```Bash\nls\n```\n\n- item\n\n  ```sh\n  ls\n  ```\n"
        "\n## Procedure with a typo\n\n```yaml procdure\n```\n"
    )
    text = CLEAN.replace("### Troubleshooting\n", "### Troubleshooting\n\n```shh\nx\n```\n") + extra
    findings = lint_text(tmp_path, text)
    assert [(f.code, f.line) for f in findings] == [("OB111", line(text, "yaml procdure"))]
