"""YAML in runbooks cannot exhaust the process: anchors and aliases are refused (an alias
bomb of 11 lines expanded to gigabytes), nesting and size are bounded (issue 16 §3)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.runbooks.conftest import FRONT, error, line_of

FIX = "write the values out; YAML aliases are not allowed in runbooks"


def bomb(levels: int = 8, indent: str = "") -> str:
    """The billion-laughs document: each level is nine aliases of the one before."""
    lines = [f"{indent}l0: &a0 [" + ",".join(["lol"] * 9) + "]"]
    for i in range(1, levels):
        lines.append(f"{indent}l{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def front_matter_bomb() -> str:
    return "---\nid: bomb\ntitle: Bomb\n" + bomb() + "---\n\n# Bomb\n"


def action_bomb() -> str:
    return (
        FRONT
        + "## Proc\n\n```yaml procedure\nrisk: low\n```\n\n### Step\n\nDo it.\n\n"
        + "```action\nplatform.restart:\n"
        + bomb(indent="  ")
        + "```\n"
    )


def test_front_matter_alias_is_refused_at_its_line() -> None:
    text = "---\nid: t\ntitle: T\nbase: &b {x: 1}\nother: *b\n---\n\n# T\n"
    err = error(text)
    assert "alias" in err.message and err.hint == FIX
    assert err.location is not None and err.location.line == line_of(text, "base: &b")


def test_anchor_alone_and_merge_keys_are_refused() -> None:
    err = error("---\nid: t\ntitle: T\nbase: &b [1]\n---\n\n# T\n")
    assert "anchor" in err.message
    text = FRONT + "## P\n\n```yaml procedure\nrisk: low\n```\n\n### S\n\nDo.\n\n"
    text += "```action\nplatform.restart:\n  <<: *x\n```\n"
    err = error(text)
    assert err.location is not None and err.location.line == line_of(text, "<<: *x")


@pytest.mark.parametrize("make", [front_matter_bomb, action_bomb])
def test_the_alias_bomb_is_refused(make: object) -> None:
    assert callable(make)
    text = make()
    err = error(text)
    assert err.hint == FIX
    assert err.location is not None and err.location.line == line_of(text, "&a0")


def test_deep_nesting_is_refused_with_its_line() -> None:
    text = "---\nid: t\ntitle: T\nx: " + "[" * 200 + "]" * 200 + "\n---\n\n# T\n"
    err = error(text)
    assert "nested" in err.message and err.location is not None
    assert err.location.line == 4


def test_huge_front_matter_is_refused() -> None:
    text = "---\nid: t\ntitle: T\n" + "k: " + "x" * 600_000 + "\n---\n\n# T\n"
    err = error(text)
    assert "too large" in err.message


LINT_CHILD = textwrap.dedent(
    """
    import json, resource, subprocess, sys
    proc = subprocess.run(
        [sys.argv[1], "-m", "opsbook.cli.main", "lint", "--json", sys.argv[2]],
        capture_output=True, text=True, timeout=60,
    )
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(json.dumps({"rc": proc.returncode, "out": proc.stdout, "err": proc.stderr,
                      "maxrss_kb": usage.ru_maxrss}))
    """
)


@pytest.mark.parametrize("make", [front_matter_bomb, action_bomb])
def test_lint_refuses_the_bomb_in_a_real_process_with_little_memory(
    tmp_path: Path, make: object
) -> None:
    """A behaviour check, not a timing test: the bound (100 MB) is ~70x below what the
    bomb took before the fix, and the child is killed after 60 s."""
    assert callable(make)
    path = tmp_path / "bomb.md"
    path.write_text(make(), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-c", LINT_CHILD, sys.executable, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result = json.loads(done.stdout)
    assert result["rc"] == 1, result["err"]
    findings = json.loads(result["out"])
    assert [f["code"] for f in findings] == ["OB001"]
    assert FIX in findings[0]["message"]
    assert "Traceback" not in result["err"]
    assert result["maxrss_kb"] < 100 * 1024
