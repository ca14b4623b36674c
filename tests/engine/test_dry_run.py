"""Dry runs: every step rendered, values only a real run has shown as placeholders, nothing
run, nothing checked, and the execution marked as a dry run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from opsbook.engine import _journal as journal
from opsbook.engine import templating
from opsbook.engine._dry import NotRun
from opsbook.engine.states import State
from opsbook.errors import ExpressionError
from opsbook.runbooks.model import StepKind

from .conftest import Harness

CHAIN = """
---
id: chain
title: Chain
---

# Chain

## Proc

```yaml procedure
permissions: [operator]
params:
  service: {type: string, default: payment}
```

### Check

```sh {name=check}
touch MARKER; echo '{"status": "UP", "items": ["a", "b"]}'
```

```expect
exit_code == 0
json.status == "UP"
```

### Approve

```approval
quorum: 1
roles: [approver]
```

### Use it

```sh {name=use}
echo {{ steps.check.result.json.status }} {{ steps["check"].result.json.items[0] }} \\
  {{ steps.approve.result.approved_by }} {{ params.service }}
```

### Announce

```action {name=announce}
core.echo: {status: "{{ steps.check.result.json.status }}", service: "{{ params.service }}"}
```

### Only when up

```sh {name=guarded when='steps.check.result.json.status == "UP"'}
echo guarded {{ steps.check.ok }}
```

### Only for payment

```sh {name=for-payment when="params.service == 'payment'"}
echo payment
```

### Only for account

```sh {name=for-account when="params.service == 'account'"}
echo account
```

### Each item

```sh {name=each for_each=steps.check.result.json.items}
echo item {{ item }}
```

### Decide

```decide
- if: steps.check.result.json.status == "UP"
  goto: last
- else: use
```

### Last

```sh {name=last}
echo last
```
"""


@pytest.fixture
def marker(harness: Harness, tmp_path: Path) -> Path:
    harness.write("chain.md", CHAIN.replace("MARKER", str(tmp_path / "touched")))
    return tmp_path / "touched"


def runs_by_id(harness: Harness, execution_id: str) -> dict[str, journal.StepRunRow]:
    return {r.step_id: r for r in journal.step_runs(db=harness.db, execution_id=execution_id)}


async def test_a_later_step_that_templates_an_earlier_result_renders_a_placeholder(
    harness: Harness, marker: Path
) -> None:
    out = await harness.run("chain#proc", dry_run=True)
    assert out.state is State.SUCCEEDED, out.reason
    assert not marker.exists()
    runs = runs_by_id(harness, out.execution_id)
    assert all(r.state in (State.SUCCEEDED, State.SKIPPED) for r in runs.values())
    would = runs["use"].result["would_run"]
    assert "'<result of step check.json.status>'" in would
    assert "'<result of step check.json.items.0>'" in would
    assert "'<result of step approve.approved_by>'" in would
    assert "payment" in would
    # An action that answers in a dry run gets the placeholder as text.
    assert runs["announce"].result["fields"]["result"] == {
        "status": "<result of step check.json.status>",
        "service": "payment",
    }


async def test_expectations_are_listed_not_checked(harness: Harness, marker: Path) -> None:
    out = await harness.run("chain#proc", dry_run=True)
    check = runs_by_id(harness, out.execution_id)["check"]
    assert check.result["would_check"] == ["exit_code == 0", 'json.status == "UP"']
    assert not check.result.get("expectations")


async def test_conditions_on_results_are_not_evaluated_but_known_ones_are(
    harness: Harness, marker: Path
) -> None:
    out = await harness.run("chain#proc", dry_run=True)
    runs = runs_by_id(harness, out.execution_id)
    # A `when` on a result cannot be known: the step is rendered, and the condition listed.
    assert runs["guarded"].state_name == "DryRun"
    assert runs["guarded"].result["would_check_when"] == 'steps.check.result.json.status == "UP"'
    assert "'<result of step check.ok>'" in runs["guarded"].result["would_run"]
    # A `when` on parameters is evaluated as in a real run.
    assert runs["for-payment"].state_name == "DryRun"
    assert (
        runs["for-account"].state is State.SKIPPED and runs["for-account"].state_name == "Skipped"
    )


async def test_for_each_over_a_result_renders_the_block_once(
    harness: Harness, marker: Path
) -> None:
    out = await harness.run("chain#proc", dry_run=True)
    (item,) = runs_by_id(harness, out.execution_id)["each"].result["items"]
    assert "'<each item of steps.check.result.json.items>'" in item["would_run"]


async def test_a_decide_on_results_shows_its_branches_and_goes_on_in_order(
    harness: Harness, marker: Path
) -> None:
    out = await harness.run("chain#proc", dry_run=True)
    runs = journal.step_runs(db=harness.db, execution_id=out.execution_id)
    assert [r.step_id for r in runs][-2:] == ["decide", "last"]
    decide = runs[-2].result
    assert decide["dry_run"] is True and decide["branch"].startswith("undecided")
    assert decide["branches"] == [
        'if steps.check.result.json.status == "UP": goto last',
        "else: goto use",
    ]


async def test_the_execution_is_stored_as_a_dry_run(harness: Harness, marker: Path) -> None:
    out = await harness.run("chain#proc", dry_run=True)
    row = journal.get_execution(db=harness.db, execution_id=out.execution_id)
    assert row.dry_run is True and row.to_dict()["dry_run"] is True
    assert row.state is State.SUCCEEDED


async def test_a_broken_template_still_fails_a_dry_run(harness: Harness, marker: Path) -> None:
    harness.write(
        "broken.md",
        """
        ---
        id: broken
        title: Broken
        ---

        # Broken

        ## Proc

        ```yaml procedure
        permissions: [operator]
        ```

        ### Typo

        ```sh
        echo {{ parms.service }}
        ```
        """,
    )
    out = await harness.run("broken#proc", dry_run=True)
    assert out.state is State.FAILED
    assert "'parms' is undefined" in (out.reason or "")


def test_a_placeholder_reads_as_the_path_it_stands_for() -> None:
    value = NotRun("result of step", "check")
    assert str(value.json.status) == "<result of step check.json.status>"
    assert str(value["rows"][0]) == "<result of step check.rows.0>"
    assert [str(v) for v in value.items] == ["<result of step check.items.*>"]
    with pytest.raises(AttributeError):
        value._private  # noqa: B018 - the access is the test
    context = {"steps": {"check": {"result": value}}}
    text = templating.render(
        "curl {{ steps.check.result.json.url }}/{{ steps.check.result.get('x') }}",
        context=context,
        kind=StepKind.SH,
        secrets=None,
    )
    assert text == "curl '<result of step check.json.url>'/'<result of step check.get>'"
    assert templating.render_value(
        {"a": "{{ steps.check.result.n }}", "b": ["{{ steps.check.result }}"]},
        context=context,
        secrets=None,
    ) == {"a": "<result of step check.n>", "b": ["<result of step check>"]}
    assert json.dumps({"v": str(value)}) == '{"v": "<result of step check>"}'


def test_a_placeholder_cannot_reach_python_internals() -> None:
    with pytest.raises(ExpressionError):
        templating.render(
            "{{ steps.check.result.__class__ }}",
            context={"steps": {"check": {"result": NotRun("result of step", "check")}}},
            kind=StepKind.SH,
            secrets=None,
        )
