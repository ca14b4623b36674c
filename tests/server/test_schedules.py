"""Scheduled procedures: started once per due time, even with two server replicas."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from opsbook.config import Settings
from opsbook.db import open_database
from opsbook.engine import _journal as journal
from opsbook.executions.context import build_context
from opsbook.executions.settings import ServerSettings
from opsbook.server.schedules import due_now, tick
from opsbook.users.access import SCHEDULER
from tests.api.harness import make_workspace

SCHEDULED = """\
---
id: timed
title: Timed
---

# Timed

## Every minute

```yaml procedure
id: every-minute
schedule: "* * * * *"
permissions: [operator]
```

### Say so

```sh
echo tick
```

## Needs input

```yaml procedure
id: needs-input
schedule: "* * * * *"
params:
  who: {type: string, required: true}
```

### Hello

```sh
echo hi
```
"""


def test_due_now() -> None:
    now = datetime(2026, 11, 26, 7, 0, 30, tzinfo=UTC)
    assert due_now("0 7 * * *", now) == datetime(2026, 11, 26, 7, 0, tzinfo=UTC)
    assert due_now("0 6 * * *", now) is None  # an hour late: not caught up
    assert due_now("not a cron", now) is None


async def test_two_replicas_start_a_due_procedure_once(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws")
    (ws.runbooks_dir / "timed.md").write_text(SCHEDULED)
    url = f"sqlite:///{tmp_path / 'state.db'}"
    contexts = [
        build_context(
            settings=Settings(database_url=url),
            server=ServerSettings(),
            workspace=ws,
            db=open_database(url),
        )
        for _ in range(2)
    ]
    now = datetime.now(UTC).replace(second=5, microsecond=0)
    started = [*await tick(contexts[0], now), *await tick(contexts[1], now)]
    assert len(started) == 1
    for ctx in contexts:
        for task in list(ctx.tasks.values()):
            await task
    row = journal.get_execution(db=contexts[0].db, execution_id=started[0])
    assert row.started_by == SCHEDULER and row.procedure_id == "every-minute"
    assert str(row.state) == "succeeded"
    assert await tick(contexts[0], now) == []
    for ctx in contexts:
        ctx.db.close()
