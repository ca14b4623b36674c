"""The ``platform.*`` actions in runbook procedures run by the real engine: against a real
sandbox (the issue's done-when: crash payment, find it down, restart it, verify), the seed's
Common Commands as steps, and a dry run against the production (kubernetes) environment."""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from opsbook.actions import ActionContext, load_registry
from opsbook.db import Database, open_database
from opsbook.engine import _journal as journal
from opsbook.engine._base import Outcome
from opsbook.engine._executor import Engine
from opsbook.engine.secrets import EnvSecretProvider, Redactor, SecretResolver
from opsbook.engine.states import State
from opsbook.errors import ValidationError
from opsbook.runbooks.catalogue import load_catalogue
from opsbook.runbooks.parser import parse_file
from opsbook.sandbox import chaos
from opsbook.workspace import load_environment
from tests.sandbox.harness import Sandbox, running_sandbox

TEMPLATES = Path(__file__).parents[2] / "src" / "opsbook" / "workspace" / "templates"

RUNBOOK = """
---
id: ops
title: Platform operations
---

# Platform operations

## Recover a service

```yaml procedure
permissions: [operator]
params:
  service: {type: choice, choices: [account, transaction, payment, notification], default: payment}
```

### Check health

```action {name=check-health}
platform.health: {}
```

```expect
result.services.size() == 4
```

### Is it down?

```decide
- if: >-
    steps["check-health"].result.result.services.exists(s,
    s.name == params.service && s.status == "DOWN")
  goto: restart
- else: verify
```

### Restart

```action {name=restart}
platform.restart: {service: "{{ params.service }}"}
```

```expect
result.state == "running"
```

### Verify

```action {name=verify}
platform.health: {service: "{{ params.service }}"}
```

```expect
result.healthy == true
```

## Common commands

The seed's quick reference, one step each.

```yaml procedure
permissions: [operator]
```

### Check all services

```action {name=pods}
platform.status: {}
```

```expect
result.services.all(s, s.state == "running")
```

### Check service health

```action {name=health}
platform.health: {}
```

```expect
result.healthy == true
```

### Check resource usage

```action {name=top}
platform.top: {}
```

```expect
result.services.size() == 4
```

### Emergency service restart

```action {name=restart}
platform.restart: {service: account}
```

```expect
result.healthy == true
```

### Emergency scaling

```action {name=scale}
platform.scale: {service: account, replicas: 2}
```

```expect
result.available == 2
```

### Deploy a release

```action {name=deploy}
platform.deploy: {service: account, version: "1.5.0"}
```

```expect
result.version == "1.5.0"
```

### Emergency rollback

```action {name=rollback}
platform.rollback: {service: account}
```

```expect
result.version == "1.4.2"
```

### Scale back

```action {name=scale-back}
platform.scale: {service: account, replicas: "1"}
```

```expect
result.replicas == 1
```

### Recent logs

```action {name=logs}
platform.logs: {service: payment, lines: 5}
```

```expect
result.count > 0
```

## Emergency commands

The quick reference's emergency procedures, without checks (for dry runs anywhere).

```yaml procedure
permissions: [operator]
```

### Emergency service restart

```action {name=restart}
platform.restart: {service: account}
```

### Emergency scaling

```action {name=scale}
platform.scale: {service: account, replicas: 2}
```

### Emergency rollback

```action {name=rollback}
platform.rollback: {service: account}
```
"""


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    with running_sandbox(tmp_path_factory.mktemp("actions") / "ws") as sb:
        (sb.ws.runbooks_dir / "ops.md").write_text(textwrap.dedent(RUNBOOK).lstrip())
        shutil.copy(TEMPLATES / "environments" / "production.yaml", sb.ws.environments_dir)
        yield sb


@pytest.fixture
def db(sandbox: Sandbox) -> Iterator[Database]:
    database = open_database(f"sqlite:///{sandbox.ws.state_dir / 'opsbook.db'}")
    yield database
    database.close()


async def run(
    sandbox: Sandbox,
    db: Database,
    ref: str,
    *,
    env: str = "sandbox",
    dry_run: bool = False,
    **params: Any,
) -> Outcome:
    redactor = Redactor()
    engine = Engine(
        db=db,
        workspace=sandbox.ws,
        resolver=SecretResolver([EnvSecretProvider()], redactor),
        redactor=redactor,
        load_runbook=parse_file,
        resolve_ref=lambda r: load_catalogue(sandbox.ws.runbooks_dir).resolve(r),
    )
    rb, proc = load_catalogue(sandbox.ws.runbooks_dir).resolve(ref)
    return await engine.start(
        runbook=rb,
        procedure=proc,
        environment=load_environment(sandbox.ws, env),
        params=params,
        started_by="alice",
        dry_run=dry_run,
    )


def steps(db: Database, outcome: Outcome) -> dict[str, Any]:
    runs = journal.step_runs(db=db, execution_id=outcome.execution_id)
    return {r.step_id: r for r in runs}


def test_every_platform_action_is_registered() -> None:
    registry = load_registry(refresh=True)
    names = {
        "platform.status",
        "platform.health",
        "platform.restart",
        "platform.scale",
        "platform.deploy",
        "platform.switch_traffic",
        "platform.rollback",
        "platform.logs",
        "platform.top",
    }
    assert names <= set(registry.names())
    assert all(registry.get(n).supports_dry_run for n in names)
    assert registry.get("platform.restart").required == ("service",)


async def test_a_crashed_payment_is_found_restarted_and_verified(
    sandbox: Sandbox, db: Database
) -> None:
    chaos.inject(control=sandbox.control(), fault="crash", service="payment", actor="alice")
    outcome = await run(sandbox, db, "ops#recover-a-service", service="payment")
    assert outcome.state is State.SUCCEEDED, outcome.reason
    ran = steps(db, outcome)
    found = ran["check-health"].result["fields"]["result"]["services"]
    assert {s["name"]: s["status"] for s in found}["payment"] == "DOWN"
    assert ran["restart"].state is State.SUCCEEDED
    assert ran["restart"].result["fields"]["result"]["cleared_faults"] == ["crash"]
    assert ran["verify"].result["fields"]["result"]["services"][0]["status"] == "UP"


async def test_a_healthy_service_is_not_restarted(sandbox: Sandbox, db: Database) -> None:
    outcome = await run(sandbox, db, "ops#recover-a-service", service="account")
    assert outcome.state is State.SUCCEEDED, outcome.reason
    assert "restart" not in steps(db, outcome)


async def test_the_common_commands_run_as_steps(sandbox: Sandbox, db: Database) -> None:
    outcome = await run(sandbox, db, "ops#common-commands")
    assert outcome.state is State.SUCCEEDED, outcome.reason
    ran = steps(db, outcome)
    assert all(r.state is State.SUCCEEDED for r in ran.values())
    assert ran["rollback"].result["fields"]["result"]["rolled_back_from"] == 3
    assert sandbox.service("account")["replicas"] == 1


async def test_a_dry_run_on_production_shows_the_kubectl_commands(
    sandbox: Sandbox, db: Database
) -> None:
    outcome = await run(sandbox, db, "ops#emergency-commands", env="production", dry_run=True)
    ran = steps(db, outcome)
    assert outcome.state is State.SUCCEEDED, outcome.reason
    assert ran["restart"].result["fields"]["result"]["would_run"][0] == (
        "kubectl rollout restart deployment/account -n banking-platform-prod"
    )
    assert ran["scale"].result["fields"]["result"]["would_run"] == [
        "kubectl scale deployment account --replicas=2 -n banking-platform-prod"
    ]
    assert ran["rollback"].result["fields"]["result"]["would_run"] == [
        "helm rollback banking-platform-prod -n banking-platform-prod"
    ]


def ctx(env: dict[str, Any], workspace: Path, *, dry_run: bool = True) -> ActionContext:
    return ActionContext(
        environment_name="production",
        environment=env,
        workspace=workspace,
        execution_id="e1",
        started_by="alice",
        dry_run=dry_run,
    )


async def test_bad_arguments_are_validation_errors(tmp_path: Path) -> None:
    import yaml

    env = yaml.safe_load((TEMPLATES / "environments" / "production.yaml").read_text())
    registry = load_registry()
    scale = registry.get("platform.scale").func
    with pytest.raises(ValidationError, match="replicas must be a whole number"):
        await scale(ctx(env, tmp_path), {"service": "payment", "replicas": "many"})
    with pytest.raises(ValidationError, match="service must be a service name"):
        await registry.get("platform.restart").func(ctx(env, tmp_path), {"service": ""})
    rollback = await registry.get("platform.rollback").func(
        ctx(env, tmp_path), {"service": "payment", "revision": "42"}
    )
    assert rollback["would_run"] == [
        "helm rollback banking-platform-prod 42 -n banking-platform-prod"
    ]
    with pytest.raises(ValidationError, match="unknown platform"):
        await registry.get("platform.status").func(ctx({"platform": "nomad"}, tmp_path), {})
