"""The sandbox: `up` to all-healthy (goal <= 5 s) and `down` (goal <= 2 s), then `load` at
200 requests/s for 10 s: p99 latency of transfers and the ledger invariant.

Baselines measured in the same run:
- up: the floor -- five Python processes importing what a sandbox service imports (uvicorn,
  starlette, prometheus_client, httpx), started in parallel, as `up` does;
- load: the same traffic at 10 requests/s, so the p99 ratio shows what 200/s costs.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import make_workspace, report

UP_GOAL, DOWN_GOAL = 5.0, 2.0
RATE, DURATION, LIGHT_RATE = 200.0, 10.0, 10.0
IMPORTS = "import uvicorn, starlette.applications, prometheus_client, httpx, sqlite3"


def import_floor() -> float:
    started = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-c", IMPORTS]) for _ in range(5)]
    for p in procs:
        p.wait()
    return time.perf_counter() - started


def main() -> int:
    from opsbook.sandbox import lifecycle
    from opsbook.sandbox.load import run_load
    from opsbook.sandbox.state import alive, read_state, recorded_processes
    from opsbook.workspace import Workspace

    ups, downs, left = [], [], []
    with tempfile.TemporaryDirectory(prefix="bench-sandbox-") as tmp:
        # no ports in the environment file: the first `up` picks free ones and writes them back
        ws = Workspace.load(make_workspace(Path(tmp) / "ws", {}))
        for _ in range(3):
            result = lifecycle.up(workspace=ws)
            ups.append(result.elapsed)
            state = read_state(result.config.data_path) or {}
            pids = recorded_processes(state)
            started = time.perf_counter()
            lifecycle.down(workspace=ws)
            downs.append(time.perf_counter() - started)
            left += [p for p in pids if alive(p["pid"], p["create_time"])]
        floor = statistics.median(import_floor() for _ in range(3))
        result = lifecycle.up(workspace=ws)
        try:
            urls = {s["name"]: s["url"] for s in result.status["services"]}
            db = result.config.database_url
            light = asyncio.run(run_load(urls=urls, rate=LIGHT_RATE, duration=5, ledger_url=db))
            heavy = asyncio.run(run_load(urls=urls, rate=RATE, duration=DURATION, ledger_url=db))
        finally:
            lifecycle.down(workspace=ws)
    transfers, light_transfers = heavy.ops["transfer"], light.ops["transfer"]
    errors = sum(op.errors for op in heavy.ops.values())
    ok = (
        max(ups) <= UP_GOAL
        and max(downs) <= DOWN_GOAL
        and not left
        and heavy.invariant["ok"]
        and errors == 0
        and heavy.achieved_rate >= 0.95 * RATE
    )
    return report(
        "sandbox",
        ok,
        up_s_runs=[round(u, 2) for u in ups],
        up_s_worst=round(max(ups), 2),
        up_goal_s=UP_GOAL,
        up_baseline="5 parallel python processes importing the service stack",
        up_baseline_s=round(floor, 2),
        up_ratio_to_baseline=round(max(ups) / floor, 1),
        down_s_runs=[round(d, 2) for d in downs],
        down_s_worst=round(max(downs), 2),
        down_goal_s=DOWN_GOAL,
        processes_left_after_down=len(left),
        load_rate=RATE,
        load_achieved_rate=round(heavy.achieved_rate, 1),
        load_requests=heavy.sent,
        load_errors_5xx=errors,
        transfers=transfers.count,
        transfer_p50_ms=transfers.p50_ms,
        transfer_p99_ms=transfers.p99_ms,
        transfer_p99_ms_at_10_per_s=light_transfers.p99_ms,
        transfer_p99_ratio_200_over_10=round(
            transfers.p99_ms / max(light_transfers.p99_ms, 0.1), 1
        ),
        ledger_invariant_ok=heavy.invariant["ok"],
        ledger_entries=heavy.invariant["entries"],
        ledger_sum_cents=heavy.invariant["total_cents"],
    )


if __name__ == "__main__":
    sys.exit(main())
