"""The silence API takes Alertmanager's matcher lists (issue 18), and regex matchers and
parameter patterns run on RE2 against values callers send (issue 16 §3)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.harness import Served, serve

REDOS_RUNBOOK = """\
---
id: redos
title: ReDoS
---

# ReDoS

## Check

```yaml procedure
id: check
permissions: [operator]
params:
  code: {type: string, pattern: "(a+)+$"}
```

### Look

Look at it.

```sh
true
```
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serve(Path(tmp_path_factory.mktemp("matchers")) / "ws") as s:
        yield s


@pytest.fixture(scope="module")
def op(served: Served) -> httpx.Client:
    return served.user("olivia", ["operator"])


def test_one_item_with_several_matchers_is_several_matchers(op: httpx.Client) -> None:
    body = {"matchers": ['a="x",b="y"', '{c=~"z.*"}'], "duration_minutes": 5, "comment": "m"}
    created = op.post("/api/v1/silences", json=body)
    assert created.status_code == 201, created.text
    assert created.json()["matchers"] == ["a=x", "b=y", "c=~z.*"]


@pytest.mark.parametrize(
    ("matchers", "field"),
    [
        (["a=x", 'b="y'], "matchers[1]"),
        (['a="x"y'], "matchers[0]"),
        (["a=~(x)\\1"], "matchers[0]"),
        (["a=x", "{}"], "matchers[1]"),
    ],
)
def test_what_does_not_parse_is_422_naming_the_item(
    op: httpx.Client, matchers: list[str], field: str
) -> None:
    response = op.post(
        "/api/v1/silences", json={"matchers": matchers, "duration_minutes": 5, "comment": "m"}
    )
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field


def test_a_redos_pattern_against_a_caller_value_answers_at_once(
    served: Served, op: httpx.Client
) -> None:
    (served.ws.root / "runbooks" / "redos.md").write_text(REDOS_RUNBOOK, encoding="utf-8")
    deadline = time.monotonic() + 20
    while op.get("/api/v1/runbooks/redos").status_code != 200:
        assert time.monotonic() < deadline, "the catalogue did not pick up the runbook"
        time.sleep(0.2)
    evil = {"ref": "redos#check", "dry_run": True, "params": {"code": "a" * 30_000 + "b"}}
    response = op.post("/api/v1/executions", json=evil, timeout=30)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "params.code"
    fine = {"ref": "redos#check", "dry_run": True, "params": {"code": "aaaa"}}
    assert op.post("/api/v1/executions", json=fine).status_code == 201
