"""The `queue` fence attribute (ADR 0017 §5): the logical workers' queue a step runs on, mapped
by the environment. Checked where it is written: a bad name, or a queue on a block that needs no
worker, is an error naming the file, line and column and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.runbooks.conftest import PATH, col_of, error, line_of, proc, proc_doc
from tests.runbooks.test_lint import lint_text


def _step(attrs: str, info: str = "sh", body: str = "echo ok") -> str:
    return f"### Check\n\nLook.\n\n```{info} {attrs}\n{body}\n```\n"


def test_a_step_names_its_queue() -> None:
    p = proc(_step("{name=check queue=db timeout=5s}"))
    (step,) = p.steps
    assert step.options.queue == "db" and step.options.timeout == 5.0


def test_the_json_form_and_dotted_names() -> None:
    p = proc(_step('{"name": "check", "queue": "eastus.db-1_a"}'))
    assert p.steps[0].options.queue == "eastus.db-1_a"


def test_without_the_attribute_a_step_has_no_queue() -> None:
    assert proc(_step("{name=check}")).steps[0].options.queue is None


@pytest.mark.parametrize("bad", ["DB", "-db", '"db queue"', "db/1", '""', "ö"])
def test_a_bad_queue_name_is_refused_at_its_place(bad: str) -> None:
    text = proc_doc(_step("{name=check queue=" + bad + "}"))
    err = error(text)
    assert "is not a queue name" in err.message
    assert err.location is not None
    assert err.location.path == str(PATH)
    assert err.location.line == line_of(text, "queue=")
    value = bad.strip('"')
    if value:
        assert err.location.col == col_of(text, "queue=") + len("queue=") + (bad != value)
    assert "[a-z0-9][a-z0-9._-]*" in (err.hint or "")


@pytest.mark.parametrize(
    ("info", "body"),
    [("approval", "quorum: 1\n"), ("decide", "- else: goto check2")],
)
def test_blocks_that_need_no_worker_take_no_queue(info: str, body: str) -> None:
    text = proc_doc(_step("{queue=db}", info, body) + "### Check2\n\n```sh\ntrue\n```\n")
    err = error(text)
    assert f"does not apply to {info} blocks" in err.message
    assert err.location is not None and err.location.line == line_of(text, "{queue=db}")
    assert "remove queue=" in (err.hint or "")


def test_lint_reports_a_bad_queue(tmp_path: Path) -> None:
    text = proc_doc(_step("{name=check queue=East_US}"))
    findings = lint_text(tmp_path, text)
    assert any("is not a queue name" in f.message for f in findings), findings
