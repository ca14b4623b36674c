"""Start guards: checks beyond a procedure's own rules that may refuse a run before it exists
(issue 15 gates production runs on published runbooks and certifications with them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from opsbook.engine.guards import StartRequest, is_production
from opsbook.engine.states import State
from opsbook.errors import PermissionDenied
from opsbook.workspace import Environment

from .conftest import Harness

RUNBOOK = """
---
id: g
title: Guarded
---

# Guarded

## Proc

```yaml procedure
permissions: [operator]
```

### Say

```sh
echo hi
```
"""


async def test_a_guard_sees_the_request_and_may_refuse_before_anything_exists(
    harness: Harness,
) -> None:
    harness.write("g.md", RUNBOOK)
    seen: list[StartRequest] = []

    def refuse(request: StartRequest) -> None:
        seen.append(request)
        raise PermissionDenied("not certified", hint="take the training")

    with pytest.raises(PermissionDenied, match="not certified"):
        await harness.run("g#proc", params={}, start_guards=[refuse])
    assert harness.db.query("SELECT id FROM executions") == []
    (request,) = seen
    assert (request.runbook.id, request.procedure.id, request.user) == ("g", "proc", "alice")
    assert request.environment.name == "sandbox" and request.dry_run is False
    assert request.parent_id is None


async def test_guards_that_pass_let_the_run_go(harness: Harness) -> None:
    harness.write("g.md", RUNBOOK)
    calls: list[str] = []
    out = await harness.run("g#proc", start_guards=[lambda r: calls.append("a"), calls.append])
    assert out.state is State.SUCCEEDED and calls[0] == "a" and len(calls) == 2


@pytest.mark.parametrize(
    ("name", "data", "expected"),
    [
        ("production", {}, True),
        ("prod-eu", {"class": "production"}, True),
        ("production", {"class": "staging"}, False),
        ("sandbox", {}, False),
    ],
)
def test_production_class_environments(name: str, data: dict[str, str], expected: bool) -> None:
    assert is_production(Environment(name, Path(f"{name}.yaml"), data)) is expected
