"""A runbook change tested on the real sandbox (the session sandbox of tests/lifecycle): its
procedure checks every service's health over HTTP; the succeeded sandbox run is the change's
test evidence; a production-class environment pointing at the same services refuses the
unpublished text and runs the published one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from opsbook.config import Settings
from opsbook.db import open_database
from opsbook.engine.states import State
from opsbook.errors import PermissionDenied
from opsbook.executions.local import make_engine
from opsbook.lifecycle import changes
from opsbook.runbooks.parser import parse_file
from opsbook.users.roles import expand
from opsbook.workspace import Workspace, load_environment
from tests.lifecycle.test_changes import TOML
from tests.sandbox.harness import Sandbox

HEALTH = """\
---
id: health
title: Service health
owner: operations
review_interval: 90d
last_reviewed: 2026-11-20
tags: [incident]
---

# Service health

## Check every service

```yaml procedure
permissions: [operator]
when_to_use: reactive
```

### Every service answers its health check

Each service's health URL answers 200.

```http {for_each=env.services timeout=5s retries=2}
GET {{ item.health_url }}
```

```expect
status == 200
```
"""


@pytest.mark.slow
async def test_a_change_tested_on_the_real_sandbox_then_run_in_production_class(
    sb: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in ("GIT_AUTHOR_NAME", "GIT_COMMITTER_NAME"):
        monkeypatch.setenv(key, "opsbook tests")
    for key in ("GIT_AUTHOR_EMAIL", "GIT_COMMITTER_EMAIL"):
        monkeypatch.setenv(key, "tests@opsbook.invalid")
    # Our own workspace (the session sandbox's stays as it is), with the sandbox's services as
    # `sandbox` and as a production-class environment.
    root = tmp_path / "ws"
    (root / "runbooks").mkdir(parents=True)
    (root / "environments").mkdir()
    (root / "opsbook.toml").write_text(TOML, encoding="utf-8")
    env: dict[str, Any] = sb.environment()
    (root / "environments" / "sandbox.yaml").write_text(yaml.safe_dump(env), encoding="utf-8")
    prod = {**env, "name": "prod-like", "class": "production"}
    (root / "environments" / "prod-like.yaml").write_text(yaml.safe_dump(prod), encoding="utf-8")
    (root / "runbooks" / "health.md").write_text(HEALTH, encoding="utf-8")
    ws = Workspace.load(root)
    db = open_database(f"sqlite:///{ws.state_dir / 'opsbook.db'}")
    try:

        async def run(environment: str) -> Any:
            rb = parse_file(ws.runbooks_dir / "health.md")
            return await make_engine(ws, Settings.from_env(), db).start(
                runbook=rb,
                procedure=rb.procedures[0],
                environment=load_environment(ws, environment),
                params={},
                started_by="alice",
            )

        cid = changes.propose(
            db=db, workspace=ws, path=root / "runbooks" / "health.md", reason="x", actor="alice"
        ).change.id
        for kind, who in (("technical", "tess"), ("operational", "olga")):
            changes.review(
                db=db,
                workspace=ws,
                change_id=cid,
                kind=kind,
                actor=who,
                actor_roles=expand(list(ws.roles_of(who))),
            )
        on_sandbox = await run("sandbox")
        assert on_sandbox.state is State.SUCCEEDED
        tested = changes.record_test(db=db, workspace=ws, change_id=cid, actor="alice")
        assert tested.test_execution_id == on_sandbox.execution_id

        with pytest.raises(PermissionDenied, match="not a published runbook"):
            await run("prod-like")
        changes.approve(
            db=db, workspace=ws, change_id=cid, actor="mia", actor_roles=expand(["manager"])
        )
        changes.publish(
            db=db, workspace=ws, change_id=cid, actor="alice", actor_roles=expand(["engineer"])
        )
        assert (await run("prod-like")).state is State.SUCCEEDED
    finally:
        db.close()
