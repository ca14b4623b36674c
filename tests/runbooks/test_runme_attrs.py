"""Runme-authored runbooks lint clean (issue 18 §6): every Runme cell attribute opsbook does not
use (`id`, `interactive`, `background`, ...) is accepted and ignored, in Runme's `key=value`
and JSON forms; a typo that is nobody's attribute is still refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from opsbook.runbooks._attrs import RUNME_IGNORED
from tests.runbooks.conftest import error, proc, proc_doc
from tests.runbooks.test_lint import CLEAN, lint_text

RUNME = (
    "id=01HF7B0KJPF469EG9ZWDNMYDYV interactive=false closeTerminalOnSuccess=true"
    " background=false excludeFromRunAll=true mimeType=text/plain promptEnv=false"
    " terminalRows=10 category=ops skipPrompts=true interpreter=bash"
)


def _step(attrs: str) -> str:
    return f"### Check\n\nLook.\n\n```sh {attrs}\necho ok\n```\n"


def test_runme_attributes_are_accepted_and_ignored() -> None:
    p = proc(_step("{name=check " + RUNME + " timeout=5s}"))
    (step,) = p.steps
    assert step.id == "check" and step.options.timeout == 5.0


def test_runme_json_attributes_are_accepted() -> None:
    p = proc(
        _step('{"id":"01HF7B0KJPF469EG9ZWDNMYDYV","name":"check","closeTerminalOnSuccess":"false"}')
    )
    assert p.steps[0].id == "check"


def test_a_runme_file_lints_clean(tmp_path: Path) -> None:
    text = CLEAN.replace(
        "```action\n", "```action {id=01HF7B0KJPF469EG9ZWDNMYDYV interactive=false}\n"
    )
    assert "{id=" in text
    assert lint_text(tmp_path, text) == []


@pytest.mark.parametrize("key", sorted(RUNME_IGNORED))
def test_each_runme_attribute(key: str) -> None:
    assert proc(_step("{" + key + "=x}")).steps


def test_a_typo_is_still_refused() -> None:
    err = error(proc_doc(_step("{name=x colour=red}")))
    assert "unknown attribute 'colour'" in err.message
    assert "Runme" in (err.hint or "")
