"""Parameter patterns run on RE2 (linear time): a pattern that backtracks exponentially in
Python's ``re`` is matched at once, and what RE2 cannot compile is refused at lint time at the
pattern's file:line, naming the construct (issue 16 §3)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from opsbook.errors import ParameterError
from opsbook.runbooks.params import validate_params
from tests.runbooks.conftest import error, line_of, proc, proc_doc

REDOS = "(a+)+$"
EVIL = "a" * 40 + "b"


def meta(pattern: str, default: str | None = None) -> str:
    extra = f", default: {json.dumps(default)}" if default is not None else ""
    return f"params:\n  code: {{type: string, pattern: {json.dumps(pattern)}{extra}}}\n"


def test_redos_pattern_is_matched_in_linear_time() -> None:
    procedure = proc("### A\n\nx\n", meta=meta(REDOS))
    with pytest.raises(ParameterError) as info:
        validate_params(procedure, {"code": EVIL * 1_000}, path="runbooks/t.md")
    assert "does not match" in info.value.message
    assert validate_params(procedure, {"code": "aaaa"}, path="p") == {"code": "aaaa"}


def test_a_redos_default_is_refused_as_not_matching() -> None:
    text = proc_doc("### A\n\nx\n", meta=meta(REDOS, default=EVIL))
    err = error(text)
    assert "default" in err.message and "does not match" in err.message


@pytest.mark.parametrize(
    ("pattern", "construct"),
    [
        (r"(a)\1", "backreference"),
        (r"(?P<x>a)(?P=x)", "backreference"),
        (r"(?=a)a", "lookahead"),
        (r"(?!b)a", "lookahead"),
        (r"(?<=a)b", "lookbehind"),
        (r"(?<!a)b", "lookbehind"),
        (r"a++", "possessive"),
        (r"[a", "missing ]"),
    ],
)
def test_patterns_re2_cannot_compile_are_refused_naming_the_construct(
    pattern: str, construct: str
) -> None:
    text = proc_doc("### A\n\nx\n", meta=meta(pattern))
    err = error(text)
    assert construct in err.message
    assert err.hint is not None and "RE2" in err.hint
    assert err.location is not None and err.location.line == line_of(text, "pattern:")


def test_whole_value_must_match_as_before() -> None:
    procedure = proc("### A\n\nx\n", meta=meta("INC-[0-9]+"))
    assert validate_params(procedure, {"code": "INC-42"}, path="p") == {"code": "INC-42"}
    for bad in ("xINC-42", "INC-42x", "INC-42\n"):
        with pytest.raises(ParameterError):
            validate_params(procedure, {"code": bad}, path="p")
    alternation = proc("### A\n\nx\n", meta=meta("INC|CHG"))
    with pytest.raises(ParameterError):  # anchored as a whole, not 'INC' or 'CHG$'
        validate_params(alternation, {"code": "INCx"}, path="p")


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


def test_lint_refuses_the_redos_default_in_a_real_process(tmp_path: Path) -> None:
    """The issue's reproduction: before RE2 this lint ran past 120 s (killed here at 60)."""
    path = tmp_path / "redos.md"
    path.write_text(
        proc_doc("### A\n\nx\n", meta=meta(REDOS, default="a" * 64 + "b")), encoding="utf-8"
    )
    done = subprocess.run(
        [sys.executable, "-c", LINT_CHILD, sys.executable, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result = json.loads(done.stdout)
    findings = json.loads(result["out"])
    assert [f["code"] for f in findings] == ["OB001"], result["err"]
    assert "does not match" in findings[0]["message"]
    assert result["err"] == ""  # RE2 logs nothing to stderr
    assert result["maxrss_kb"] < 100 * 1024
