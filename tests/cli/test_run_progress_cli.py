"""What a run is doing is visible while it does it: a step's output appears at the terminal as
it is produced; a step that keeps failing shows each failed attempt, its reason and the wait,
and `executions show` lists them afterwards."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
import time
from pathlib import Path

from .conftest import OPSBOOK, Run

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


LIVE = """
---
id: live
title: Live
---

# Live

## Proc

```yaml procedure
permissions: [operator]
```

### Wait for the go

```sh {timeout=30s}
echo waiting-for-go
while [ ! -f go ]; do sleep 0.05; done
echo got-it >&2
```
"""


def test_output_appears_while_the_step_runs(ob: Run, ws_root: Path) -> None:
    """The step waits for a file that the test creates only after it has read the step's first
    line from the terminal: without live output the step would time out and fail."""
    (ws_root / "runbooks" / "live.md").write_text(textwrap.dedent(LIVE).lstrip())
    seen: list[str] = []
    with subprocess.Popen(
        [*OPSBOOK, "run", "live#proc"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        cwd=ws_root,
        env={**os.environ, "OPSBOOK_WORKSPACE": str(ws_root), "NO_COLOR": "1"},
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            seen.append(line.rstrip())
            if "│ waiting-for-go" in line:
                # `executions show` shows the output of the running step too.
                execution_id = seen[0].rsplit("execution ", 1)[1].split()[0]
                deadline = time.monotonic() + 30
                while "│ waiting-for-go" not in ob("executions", "show", execution_id).stdout:
                    assert time.monotonic() < deadline
                    time.sleep(0.1)
                (ws_root / "go").write_text("")
        assert proc.wait(timeout=60) == 0, "\n".join(seen)
    assert seen.index("  … Wait for the go") < seen.index("      │ waiting-for-go")
    assert seen.index("      │ waiting-for-go") < seen.index("      │ got-it")
    assert any(s.startswith("  ✔ Wait for the go") for s in seen)
