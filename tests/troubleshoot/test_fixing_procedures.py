"""Every fault the sandbox can inject is diagnosed and fixed (issue 12, "what is broken today"):
inject it on the real sandbox, `diagnose` names it and its fixing procedure, the procedure runs
through the real engine to success, the fault is gone (ended by the remedy, as the sandbox's
record says) and every service's health is UP again."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import time
from pathlib import Path

import httpx
import pytest

from opsbook.config import Settings
from opsbook.db import open_database
from opsbook.engine.states import State
from opsbook.executions.local import make_engine
from opsbook.runbooks.parser import parse_file
from opsbook.sandbox.faults import FAULTS
from opsbook.troubleshoot.diagnose import diagnose_async
from opsbook.workspace import load_environment
from tests.sandbox.harness import Sandbox, wait_for

pytestmark = pytest.mark.slow

RUNBOOK = (
    Path(__file__).resolve().parents[2]
    / "src/opsbook/workspace/templates/runbooks/04_troubleshooting_guide.md"
)


def _traffic(sb: Sandbox, n: int = 8) -> None:
    """A few real requests, so request-level symptoms (500s, slowness) show in the logs."""
    for _ in range(n):
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(sb.url("payment") + "/accounts/1", timeout=5)


@pytest.mark.parametrize(
    "fault", sorted(f for f, spec in FAULTS.items() if not spec.security and not spec.backup)
)
async def test_each_fault_is_diagnosed_and_fixed(sb: Sandbox, fault: str, tmp_path: Path) -> None:
    shutil.copy(RUNBOOK, sb.ws.runbooks_dir / RUNBOOK.name)
    db = open_database(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        service = "payment" if FAULTS[fault].target == "service" else None
        sb.control().call("inject", {"fault": fault, "service": service, "actor": "pytest"})
        time.sleep(2.5)
        if fault in ("latency", "error-rate", "bad-deploy"):
            await asyncio.to_thread(_traffic, sb)
        if fault in ("crash", "hang"):
            wait_for(lambda: sb.service("payment")["ready"] == 0, timeout=15)
        d = (
            await diagnose_async(
                workspace=sb.ws,
                environment="sandbox",
                service="payment",
                write_bundle=False,
                save=False,
                actor="pytest",
            )
        ).to_dict()
        top = d["top"]
        assert top is not None and top["cause"] == fault, [
            (h["cause"], h["service"], h["score"]) for h in d["hypotheses"]
        ]
        rb = parse_file(sb.ws.runbooks_dir / RUNBOOK.name)
        proc = rb.procedure(top["procedure"].split("#", 1)[1])
        assert proc is not None, top["procedure"]
        out = await make_engine(sb.ws, Settings.from_env(), db).start(
            runbook=rb,
            procedure=proc,
            environment=load_environment(sb.ws, "sandbox"),
            params=top["params"],
            started_by="pytest",
        )
        assert out.state is State.SUCCEEDED, db.query(
            "SELECT step_id, state, error FROM step_runs WHERE execution_id = ?",
            (out.execution_id,),
        )
        assert sb.control().call("faults")["faults"] == []
        chaos = [
            json.loads(line)
            for line in (sb.data_dir / "chaos.jsonl").read_text().splitlines()
            if line.strip()
        ]
        ended = [e for e in chaos if e.get("fault") == fault and e["action"].endswith("cleared")]
        assert ended and ended[-1]["actor"] == "pytest"
        assert ended[-1].get("reason") != "cleared"  # ended by the remedy, not `chaos clear`
    finally:
        db.close()
        (sb.ws.runbooks_dir / RUNBOOK.name).unlink(missing_ok=True)
