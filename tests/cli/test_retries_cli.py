"""A step that keeps failing is never silent: each failed attempt, its reason and the wait are
shown while the run goes on, and `executions show` lists them afterwards."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from .conftest import Run

RETRY = """
---
id: retry
title: Retry
---

# Retry

## Proc

```yaml procedure
permissions: [operator]
```

### Payment health

```sh {name=health retries=2 retry_delay=0.01}
echo '{"status": "DOWN"}'
```

```expect
json.status == "UP"
```
"""


def test_failed_attempts_are_shown_live_and_listed_after(ob: Run, ws_root: Path) -> None:
    (ws_root / "runbooks" / "retry.md").write_text(textwrap.dedent(RETRY).lstrip())
    done = ob("run", "retry#proc", env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert done.returncode == 1
    out = done.stdout
    assert "Payment health: attempt 1 of 3 failed — next attempt in 0.01s" in out
    assert "attempt 2 of 3 failed — next attempt in 0.02s" in out
    assert """expected json.status == "UP" (line 21) but json={'status': 'DOWN'}""" in out
    execution_id = out.rsplit("execution ", 1)[1].split()[0]
    shown = ob("executions", "show", execution_id, env={"COLUMNS": "200"}).stdout
    assert "attempt 1 of 3 failed at " in shown and "next attempt 0.01s later" in shown
    assert "attempt 2 of 3 failed at " in shown
    data = json.loads(ob("executions", "show", execution_id, "--json").stdout)
    (step,) = data["steps"]
    assert step["attempts"] == 3
    assert [(a["attempt"], a["of"], a["retry_in"]) for a in step["failed_attempts"]] == [
        (1, 3, 0.01),
        (2, 3, 0.02),
    ]
    assert "'DOWN'" in step["failed_attempts"][0]["reason"]
