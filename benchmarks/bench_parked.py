"""1,000 executions parked at a manual step in one engine process: RSS <= 200 MB; after a
person's input, the next step starts within 100 ms (p99). Baseline in the same run: the RSS of
the same process before any execution exists."""

from __future__ import annotations

import asyncio
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
from _common import PARKED_RUNBOOK, make_workspace, report

N = 1000
SAMPLES = 200


def main() -> int:
    from opsbook.db import open_database
    from opsbook.engine._executor import Engine
    from opsbook.engine._hooks import Reporter
    from opsbook.engine.secrets import EnvSecretProvider, Redactor, SecretResolver
    from opsbook.runbooks.catalogue import load_catalogue
    from opsbook.runbooks.parser import parse_file
    from opsbook.workspace import Workspace, load_environment

    class Clock(Reporter):
        started: dict[str, float] = {}  # noqa: RUF012 - one clock per benchmark process

        def step_started(self, *, step: Any, seq: int, detail: dict[str, Any]) -> None:
            if step.id == "next":
                Clock.started[self.current] = time.perf_counter()

        current = ""

    with tempfile.TemporaryDirectory() as tmp:
        root = make_workspace(Path(tmp) / "ws", {"parked.md": PARKED_RUNBOOK})
        ws = Workspace.load(root)
        db = open_database(f"sqlite:///{ws.state_dir / 'opsbook.db'}")
        rb, proc = load_catalogue(ws.runbooks_dir).resolve("parked#proc")
        env = load_environment(ws, "sandbox")
        redactor = Redactor()
        clock = Clock()
        engine = Engine(
            db=db,
            workspace=ws,
            resolver=SecretResolver([EnvSecretProvider()], redactor),
            redactor=redactor,
            reporter=clock,
            load_runbook=parse_file,
            resolve_ref=None,
        )
        proc_info = psutil.Process()
        rss_before = proc_info.memory_info().rss

        async def park_all() -> list[str]:
            ids = []
            for _ in range(N):
                out = await engine.start(
                    runbook=rb, procedure=proc, environment=env, params={}, started_by="operator"
                )
                assert out.state_name == "AwaitingInput", out
                ids.append(out.execution_id)
            return ids

        t0 = time.perf_counter()
        ids = asyncio.run(park_all())
        park_s = time.perf_counter() - t0
        rss_parked = proc_info.memory_info().rss
        latencies = []

        async def resume_some() -> None:
            for eid in random.Random(7).sample(ids, SAMPLES):
                clock.current = eid
                t = time.perf_counter()
                engine.attest(execution_id=eid, actor="approver")
                out = await engine.resume(execution_id=eid, actor="approver")
                assert out.state_name == "Succeeded", out
                latencies.append(Clock.started[eid] - t)

        asyncio.run(resume_some())
        db.close()
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
    p50 = latencies[len(latencies) // 2] * 1000
    rss_mb = rss_parked / 2**20
    ok = rss_mb <= 200 and p99 <= 100
    return report(
        "parked_executions",
        ok,
        executions=N,
        rss_mb=round(rss_mb, 1),
        rss_before_mb=round(rss_before / 2**20, 1),
        resume_to_next_step_p50_ms=round(p50, 1),
        resume_to_next_step_p99_ms=round(p99, 1),
        park_1000_s=round(park_s, 2),
        goal="rss <= 200 MB, p99 <= 100 ms",
    )


if __name__ == "__main__":
    sys.exit(main())
