"""A graded drill is scored within 5 s of its end (issue 15), on a real sandbox with load running.

The drill: the payment service crashes (the scenario's fault), the trainee restarts it through
the engine, the drill ends. Measured: `opsbook.lifecycle.simulations.end` (grading from the
record, debrief, storing, restoring the sandbox, resolving the drill incident), median of three
drills. Baseline in the same run: reading the same record without scoring it (the trainee's
runs, the incident, the sandbox's fault record and service status), so the ratio shows what
grading adds to the reads it needs.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from _common import report

GOAL_S = 5.0
FIX = """\
---
id: drill-fix
title: Drill fixes
owner: operations
---

# Drill fixes

## Restart payment

```yaml procedure
permissions: [operator]
```

### Restart the payment service

Starts it again.

```action
platform.restart: {service: payment}
```

```expect
result != null
```
"""
TRAINING = """\
require_certification: true
scenarios:
  payment-crash:
    title: The payment service has crashed
    faults:
      - {fault: crash, service: payment}
    expected: [drill-fix#restart-payment]
    time_limit: 10m
"""


def main() -> int:
    from opsbook.config import Settings
    from opsbook.db import open_database
    from opsbook.executions.local import make_engine
    from opsbook.lifecycle import simulations
    from opsbook.lifecycle.training_config import load_training
    from opsbook.runbooks.parser import parse_file
    from opsbook.sandbox import lifecycle
    from opsbook.sandbox.load import run_load
    from opsbook.workspace import Workspace, load_environment
    from opsbook.workspace.init import init_workspace

    ends: list[float] = []
    reads: list[float] = []
    scores: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-training-") as tmp:
        root = Path(tmp) / "ws"
        init_workspace(target=root)
        (root / "runbooks" / "drill-fix.md").write_text(FIX, encoding="utf-8")
        (root / "training.yaml").write_text(TRAINING, encoding="utf-8")
        ws = Workspace.load(root)
        up = lifecycle.up(workspace=ws)
        db = open_database(f"sqlite:///{ws.state_dir / 'opsbook.db'}")
        stop = threading.Event()
        urls = {s["name"]: s["url"] for s in up.status["services"]}

        def load() -> None:
            while not stop.is_set():
                asyncio.run(run_load(urls=urls, rate=20, duration=3, ledger_url=None))

        loader = threading.Thread(target=load, daemon=True)
        loader.start()
        try:
            config = load_training(ws)
            rb = parse_file(ws.runbooks_dir / "drill-fix.md")
            for i in range(3):
                d = simulations.start(
                    db=db,
                    workspace=ws,
                    config=config,
                    scenario="payment-crash",
                    trainee=f"trainee-{i}",
                    actor="bench",
                )
                time.sleep(1.0)
                asyncio.run(
                    make_engine(ws, Settings.from_env(), db).start(
                        runbook=rb,
                        procedure=rb.procedures[0],
                        environment=load_environment(ws, "sandbox"),
                        params={},
                        started_by=f"trainee-{i}",
                    )
                )
                for _ in range(50):  # the service is back
                    if all(s["ready"] >= 1 for s in lifecycle.status(workspace=ws)["services"]):
                        break
                    time.sleep(0.2)
                row: dict[str, Any] = (
                    db.one("SELECT * FROM training_drills WHERE id = ?", (d.id,)) or {}
                )
                t0 = time.perf_counter()
                simulations.trainee_runs(db, row["trainee"], row["started_at"], "9999")
                db.one("SELECT * FROM incidents WHERE id = ?", (row["incident_id"],))
                simulations.faults_ended_at(ws, "sandbox", {"x"}, 0.0)
                simulations.services_ready(ws, "sandbox")
                reads.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                ended = simulations.end(
                    db=db, workspace=ws, config=config, drill_id=d.id, actor="bench"
                )
                ends.append(time.perf_counter() - t0)
                scores.append(float(ended.score or 0))
        finally:
            stop.set()
            loader.join(timeout=10)
            db.close()
            lifecycle.down(workspace=ws)
    end_s = statistics.median(ends)
    read_s = statistics.median(reads)
    return report(
        "training_drill_scored",
        end_s <= GOAL_S and all(s > 0 for s in scores),
        goal_s=GOAL_S,
        scored_within_s=round(end_s, 3),
        rounds=[round(x, 3) for x in ends],
        baseline_reads_s=round(read_s, 4),
        ratio_vs_reads=round(end_s / read_s, 1) if read_s else None,
        scores=scores,
        load="20 requests/s on the sandbox",
    )


if __name__ == "__main__":
    raise SystemExit(main())
