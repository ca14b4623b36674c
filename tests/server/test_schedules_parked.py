"""A schedule does not pile up parked runs (issue 18 §5): while the previous scheduled run of
a procedure waits for a person, its next due times are skipped, once each, with an audit
record; when that run is answered, the schedule starts again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from opsbook.config import Settings
from opsbook.db import open_database
from opsbook.engine import _journal as journal
from opsbook.engine.states import State
from opsbook.executions.context import build_context
from opsbook.executions.settings import ServerSettings
from opsbook.server.schedules import tick
from tests.api.harness import make_workspace

PARKS = """\
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

### Look

```sh
echo looked
```

### Sign off

- [ ] Looked at it
"""


async def test_a_parked_scheduled_run_holds_back_the_next(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws")
    (ws.runbooks_dir / "timed.md").write_text(PARKS)
    url = f"sqlite:///{tmp_path / 'state.db'}"
    ctx = build_context(
        settings=Settings(database_url=url),
        server=ServerSettings(),
        workspace=ws,
        db=open_database(url),
    )
    try:
        first = datetime.now(UTC).replace(second=5, microsecond=0)
        (eid,) = await tick(ctx, first)
        for task in list(ctx.tasks.values()):
            await task
        assert str(journal.get_execution(db=ctx.db, execution_id=eid).state) == "waiting"

        later = first + timedelta(minutes=1)
        assert await tick(ctx, later) == []  # skipped: the 1st run still waits
        assert await tick(ctx, later + timedelta(seconds=20)) == []
        skips = ctx.db.query(
            "SELECT subject, payload FROM events WHERE action = 'schedule.run.skipped'"
        )
        assert len(skips) == 1 and skips[0]["subject"] == "timed#every-minute"
        assert eid in skips[0]["payload"] and "waiting" in skips[0]["payload"]

        journal.transition_execution(
            db=ctx.db, execution_id=eid, to=State.ABORTED, actor="alice", reason="test"
        )
        assert len(await tick(ctx, first + timedelta(minutes=2))) == 1
    finally:
        for task in list(ctx.tasks.values()):
            task.cancel()
        ctx.db.close()
