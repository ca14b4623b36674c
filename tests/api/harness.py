"""A real opsbook server (uvicorn on a free 127.0.0.1 port, in a thread) over a workspace and
SQLite file in a temporary directory, plus helpers to make accounts and tokens with a separate
database connection, as another process would."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from opsbook.config import Settings
from opsbook.db import Database, open_database
from opsbook.executions.context import AppContext, build_context
from opsbook.executions.settings import ServerSettings
from opsbook.users import accounts, tokens
from opsbook.workspace import Workspace
from tests.conftest import free_port

TOML = """\
[workspace]
name = "test"
default_environment = "sandbox"
default_roles = ["viewer"]

[users]
legacy = ["operator"]
"""

ENV = """\
name: sandbox
platform: local
namespace: banking-platform-sandbox
services:
  - {name: account, port: 1, replicas: 1}
"""

PROD = """\
name: production
platform: kubernetes
namespace: banking-platform-prod
helm_release: banking-platform-prod
services: []
"""

RUNBOOK = """\
---
id: checks
title: Checks
purpose: Procedures for testing the server
owner: operations
review_interval: 90d
last_reviewed: 2026-11-20
tags: [test, demo]
---

# Checks

Some *Markdown* and <script>alert("x")</script> that must never run in the console.

## Quick

```yaml procedure
id: quick
permissions: [operator]
prerequisites:
  - nothing
risk: low
params:
  service: {type: choice, choices: [account, payment], default: payment}
  count: {type: integer, min: 1, max: 5, default: 1}
```

### Say hello

Prints a small JSON document.

```sh {timeout=30s}
echo '{"ok": true}'
```

```expect
exit_code == 0
json.ok == true
```

## Manual

```yaml procedure
id: manual
permissions: [operator]
risk: low
```

### Confirm

Check two things.

- [ ] first thing
- [ ] second thing

### After

```sh {timeout=30s}
echo done
```

## Change

```yaml procedure
id: change
permissions: [operator]
risk: high
```

### Get approval

```approval
quorum: 1
roles: [approver]
```

### Make the change

```sh {timeout=30s}
echo changed
```

## Secure

```yaml procedure
id: secure
permissions: [security]
risk: low
```

### Look

```sh {timeout=30s}
echo looked
```

## Slow

```yaml procedure
id: slow
permissions: [operator]
risk: low
```

### Sleep

```sh {timeout=60s}
sleep 20
```
"""

ALL_SCOPES = ("read", "run", "approve", "audit", "admin")


def make_workspace(root: Path) -> Workspace:
    (root / "runbooks").mkdir(parents=True)
    (root / "environments").mkdir()
    (root / "opsbook.toml").write_text(TOML)
    (root / "environments" / "sandbox.yaml").write_text(ENV)
    (root / "environments" / "production.yaml").write_text(PROD)
    (root / "runbooks" / "checks.md").write_text(RUNBOOK)
    (root / "contacts.yaml").write_text(
        "levels:\n  - name: level-1\n    title: Level 1 Operations\n    contacts:\n"
        "      - {role: Operations Lead, phone: '+1-555-0101', when: primary on-call}\n"
    )
    return Workspace.load(root)


@dataclass
class Served:
    url: str
    ctx: AppContext
    ws: Workspace
    db: Database  # the test's own connection
    server: Any
    clients: list[httpx.Client] = field(default_factory=list)

    def account(
        self, username: str, roles: Sequence[str], password: str | None = None
    ) -> accounts.Account:
        return accounts.create_account(
            db=self.db,
            actor="test",
            username=username,
            roles=list(roles),
            known=accounts.known_roles(extra=("approver",)),
            password=password,
        )

    def token(self, username: str, scopes: Sequence[str] = ALL_SCOPES) -> str:
        _, secret = tokens.create_token(
            db=self.db, actor="test", username=username, name="test", scopes=list(scopes)
        )
        return secret

    def user(self, username: str, roles: Sequence[str]) -> httpx.Client:
        """An account with ``roles`` and an API client authenticated as it."""
        if accounts.find_account(db=self.db, username=username) is None:
            self.account(username, roles)
        return self.api(self.token(username))

    def api(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        client = httpx.Client(base_url=self.url, headers=headers, timeout=30)
        self.clients.append(client)  # closed when the server stops
        return client

    def wait(
        self, client: httpx.Client, execution_id: str, states: Sequence[str], timeout: float = 30
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            body: dict[str, Any] = client.get(f"/api/v1/executions/{execution_id}").json()
            if body["state"] in states or body["state_name"] in states:
                return body
            if time.monotonic() > deadline:
                raise AssertionError(f"execution stayed {body['state_name']}: {body}")
            time.sleep(0.05)

    def audit_actions(self, **where: str) -> list[dict[str, Any]]:
        sql = "SELECT * FROM events"
        if where:
            sql += " WHERE " + " AND ".join(f"{k} = ?" for k in where)
        return self.db.query(sql + " ORDER BY id", tuple(where.values()))


@contextlib.contextmanager
def serve(root: Path, **server_settings: Any) -> Iterator[Served]:
    import uvicorn

    from opsbook.server.app import create_app

    ws = make_workspace(root)
    url = f"sqlite:///{ws.state_dir / 'opsbook.db'}"
    settings = Settings(database_url=url)
    ws.state_dir.mkdir(parents=True, exist_ok=True)
    server_db = open_database(url)
    port = free_port()
    server = ServerSettings(host="127.0.0.1", port=port, schedules=False, **server_settings)
    ctx = build_context(settings=settings, server=server, workspace=ws, db=server_db)
    config = uvicorn.Config(
        create_app(ctx, background=False),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
        access_log=False,
    )
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not uv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    own = open_database(url)
    served = Served(f"http://127.0.0.1:{port}", ctx, ws, own, uv)
    try:
        yield served
    finally:
        for client in served.clients:
            client.close()
        uv.should_exit = True
        thread.join(timeout=20)
        own.close()
        server_db.close()
