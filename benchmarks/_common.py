"""Helpers shared by benchmarks: a throwaway workspace and result printing."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OPSBOOK = [sys.executable, "-m", "opsbook.cli.main"]

TOML = """[workspace]
name = "bench"
default_environment = "sandbox"
default_roles = ["operator"]

[users]
approver = ["operator", "approver"]
"""


# A procedure that parks at a manual step, then runs one `true` (bench_parked, bench_api_runs).
PARKED_RUNBOOK = """---
id: parked
title: Parked
---

# Parked

## Proc

```yaml procedure
permissions: [operator]
```

### Confirm

- [ ] checked

### Next

```sh
true
```
"""


def make_workspace(root: Path, runbooks: dict[str, str]) -> Path:
    (root / "runbooks").mkdir(parents=True, exist_ok=True)
    (root / "environments").mkdir(exist_ok=True)
    (root / "opsbook.toml").write_text(TOML)
    (root / "environments" / "sandbox.yaml").write_text("name: sandbox\nplatform: local\n")
    for name, text in runbooks.items():
        (root / "runbooks" / name).write_text(text)
    return root


def timed(cmd: Sequence[str], *, repeat: int = 5, **kw: Any) -> list[float]:
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run(list(cmd), check=True, capture_output=True, **kw)
        out.append(time.perf_counter() - t)
    return out


def timed_fn(fn: Callable[[], object], *, repeat: int = 5) -> list[float]:
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def report(name: str, goal_met: bool, **numbers: Any) -> int:
    print(json.dumps({"benchmark": name, "goal_met": goal_met, **numbers}))
    return 0 if goal_met else 1


median = statistics.median
