"""The daily security check on a real sandbox with the load generator running (issue 14).

Goals: every security fault the sandbox can inject is detected by the next check run (all of
them, each named by the check that catches it), a clean sandbox gives 0 findings above "low",
and the full daily check runs in <= 10 s. Baseline in the same run: the same checks one after
another (the ratio shows what running them concurrently buys).
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

GOAL_S = 10.0
#: the words a failure of the catching check must contain for the fault to count as named
NAMED = {
    "cert-expiring": "expires in",
    "suspicious-logins": "failed logins from",
    "pan-in-log": "411111******1111",
    "weak-tls": "TLS.1",
    "expired-cert": "EXPIRED",
    "dormant-admin": "admin-legacy",
    "leaked-token": "198.51.100.77",
}


def main() -> int:
    from opsbook.config import Settings
    from opsbook.db import open_database
    from opsbook.sandbox import lifecycle
    from opsbook.sandbox.faults import FAULTS
    from opsbook.sandbox.load import run_load
    from opsbook.secops.catalogue import CATALOGUE
    from opsbook.secops.checks._run import run_checks_async
    from opsbook.secops.model import at_least
    from opsbook.workspace import Workspace
    from opsbook.workspace.init import init_workspace

    security_faults = [
        *sorted(f for f, s in FAULTS.items() if s.security),
        "cert-expiring",
        "suspicious-logins",
    ]
    with tempfile.TemporaryDirectory(prefix="bench-security-") as tmp:
        root = Path(tmp) / "ws"
        init_workspace(target=root)
        ws = Workspace.load(root)
        up = lifecycle.up(workspace=ws)
        ctl = lifecycle.control(workspace=ws)
        urls = {s["name"]: s["url"] for s in up.status["services"]}
        db = open_database(Settings.from_env().database_url_for(ws.state_dir))
        stop = threading.Event()

        def load() -> None:
            while not stop.is_set():
                try:
                    asyncio.run(run_load(urls=urls, rate=20, duration=3))
                except Exception:
                    time.sleep(0.5)

        def check(*, only: list[str] | None = None, sequential: bool = False) -> Any:
            return asyncio.run(
                run_checks_async(
                    workspace=ws,
                    environment="sandbox",
                    db=db,
                    settings=Settings.from_env(),
                    only=only or [],
                    sequential=sequential,
                )
            )

        loader = threading.Thread(target=load, daemon=True)
        loader.start()
        time.sleep(3)
        detected: dict[str, Any] = {}
        try:
            clean = check()
            above_low = [
                f"{r.spec.id}: {f.text}"
                for r in clean.results
                for f in r.outcome.failures
                if at_least(f.severity or r.spec.severity, "medium")
            ]
            errors = [f"{r.spec.id}: {r.outcome.error}" for r in clean.results if r.outcome.error]
            walls, seqs = [], []
            for _ in range(3):
                t0 = time.perf_counter()
                check()
                walls.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                check(sequential=True)
                seqs.append(time.perf_counter() - t0)
            # Attacks stay in the logs the checks read: inject the log-based ones last.
            logged = ("suspicious-logins", "leaked-token")
            order = sorted(security_faults, key=lambda f: f in logged)
            for fault in order:
                service = "payment" if FAULTS[fault].target == "service" else None
                ctl.call("inject", {"fault": fault, "service": service, "actor": "bench"})
                if fault in ("suspicious-logins", "leaked-token"):
                    time.sleep(4)
                run = check()  # the next full run
                catching = [c.id for c in CATALOGUE.values() if fault in c.catches]
                texts = [
                    f.text for r in run.results if r.spec.id in catching for f in r.outcome.failures
                ]
                detected[fault] = {
                    "checks": catching,
                    "named": any(NAMED[fault] in t for t in texts),
                    "failures": texts[:2],
                }
                ctl.call("clear", {"actor": "bench"})
                time.sleep(1)
        finally:
            stop.set()
            loader.join(timeout=10)
            db.close()
            lifecycle.down(workspace=ws)
    wall, seq = statistics.median(walls), statistics.median(seqs)
    caught = sum(1 for d in detected.values() if d["named"])
    code = report(
        "security_faults_detected",
        caught == len(security_faults) and not above_low and not errors,
        faults=len(security_faults),
        detected=caught,
        missed=[f for f, d in detected.items() if not d["named"]],
        clean_above_low=above_low,
        clean_errors=errors,
        load="the load generator at 20 requests/s throughout",
    )
    code |= report(
        "security_check_speed",
        wall <= GOAL_S,
        goal_s=GOAL_S,
        checks=len(CATALOGUE),
        full_check_s=round(wall, 3),
        sequential_baseline_s=round(seq, 3),
        speedup_vs_sequential=round(seq / wall, 2) if wall else None,
    )
    return code


if __name__ == "__main__":
    raise SystemExit(main())
