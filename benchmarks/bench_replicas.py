"""Issue 17: two `opsbook serve` replicas on one PostgreSQL serve reads at ≥ 1.8× one replica.

10,000 executions on a real PostgreSQL server; two `opsbook serve` processes on it; 16 keep-alive
connections (wrk when installed, else the asyncio client of bench_api_runs) send
`GET /api/v1/executions?limit=50` with a token for 4 s rounds, alternating: all 16 on replica 1,
then 8 on each (split client-side: a proxy's cost is not the replicas' capacity). Median of 3
rounds each. Reports the CPU seconds of each replica, PostgreSQL and the load generator over the
measured rounds, so a miss on a small machine is explained, not hidden.
"""

from __future__ import annotations

import asyncio
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
from _cluster import postgres
from _common import OPSBOOK, report
from bench_api_runs import Client

from opsbook.audit._log import utcnow
from opsbook.db import open_database
from opsbook.engine._journal import ExecutionRow, create_execution
from opsbook.engine.states import State
from opsbook.sandbox.config import free_port
from opsbook.users import accounts, tokens
from opsbook.workspace.init import init_workspace

EXECUTIONS = 10_000
CONNECTIONS = 16
ROUND_S = 4.0
ROUNDS = 3
GOAL_RATIO = 1.8
PATH = "/api/v1/executions?limit=50"


def _fill(url: str) -> str:
    """10,000 finished executions and a read token."""
    db = open_database(url)
    try:
        now = utcnow()
        with db.transaction():
            for i in range(EXECUTIONS):
                create_execution(
                    db=db,
                    execution=ExecutionRow(
                        id=f"bench-{i:05d}",
                        parent_id=None,
                        runbook_id="demo",
                        runbook_path="00_demo.md",
                        runbook_hash="h",
                        procedure_id="smoke-test",
                        environment="sandbox",
                        params={},
                        digest="d",
                        state=State.SUCCEEDED,
                        state_name="Succeeded",
                        reason=None,
                        cursor=0,
                        dry_run=False,
                        started_by="bench",
                        owner=None,
                        created_at=now,
                        updated_at=now,
                        finished_at=now,
                    ),
                    actor="bench",
                )
        accounts.create_account(
            db=db, actor="bench", username="bench", roles=["operator"],
            known=accounts.known_roles(), password=None,
        )  # fmt: skip
        _, token = tokens.create_token(
            db=db, actor="bench", username="bench", name="bench", scopes=["read"]
        )
        return token
    finally:
        db.close()


async def _round(ports: list[int], token: str) -> int:
    """Requests answered in ROUND_S with CONNECTIONS connections spread over ``ports``."""
    done = 0
    stop = time.perf_counter() + ROUND_S

    async def client(port: int) -> None:
        nonlocal done
        async with Client(port, token) as c:
            while time.perf_counter() < stop:
                status, _ = await c.call("GET", PATH)
                if status != 200:
                    raise RuntimeError(f"GET {PATH}: HTTP {status}")
                done += 1

    await asyncio.gather(*(client(ports[i % len(ports)]) for i in range(CONNECTIONS)))
    return done


def _wrk_round(ports: list[int], token: str) -> int:
    """The same round with wrk (C, a fraction of the asyncio client's CPU), one per port."""
    per = CONNECTIONS // len(ports)
    wrk = ["wrk", "-t1", f"-c{per}", f"-d{int(ROUND_S)}s"]
    header = ["-H", f"Authorization: Bearer {token}"]
    procs = [
        subprocess.Popen(
            [*wrk, *header, f"http://127.0.0.1:{port}{PATH}"], stdout=subprocess.PIPE, text=True
        )
        for port in ports
    ]
    total = 0
    for proc in procs:
        out, _ = proc.communicate(timeout=ROUND_S + 30)
        for line in out.splitlines():
            if "requests in" in line:
                total += int(line.split()[0])
            if "Non-2xx" in line:
                raise RuntimeError(f"GET {PATH}: {line.strip()}")
    return total


def _measure(ports: list[int], token: str) -> int:
    if shutil.which("wrk"):
        return _wrk_round(ports, token)
    return asyncio.run(_round(ports, token))


def _load_cpu() -> float:
    """This process and the wrk processes it waited for (not the servers: they still run)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    waited = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + waited.ru_utime + waited.ru_stime


def _wait_up(port: int) -> None:
    import httpx

    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/v1/health").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"opsbook serve on {port} did not start")
        time.sleep(0.2)


def _cpu(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
            for c in p.children(recursive=True):
                ct = c.cpu_times()
                total += ct.user + ct.system
        except psutil.Error:
            continue
    return total


def main() -> int:
    with postgres() as url, tempfile.TemporaryDirectory() as tmp:
        ws = Path(tmp) / "ws"
        init_workspace(target=ws)
        with (ws / "opsbook.toml").open("a") as f:  # no probes of an absent sandbox
            f.write("\n[monitoring]\nenvironments = []\n")
        token = _fill(url)
        env = {**os.environ, "OPSBOOK_WORKSPACE": str(ws), "OPSBOOK_DATABASE_URL": url}
        ports = [free_port(), free_port()]
        servers = [
            subprocess.Popen(
                [*OPSBOOK, "serve", "--port", str(p), "--no-schedules"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for p in ports
        ]
        try:
            for p in ports:
                _wait_up(p)
            asyncio.run(_round(ports, token))  # warm both: imports, caches
            postmaster = [
                p for p in psutil.process_iter(["name"]) if (p.info["name"] or "") == "postgres"
            ]
            replica = [psutil.Process(s.pid) for s in servers]
            load0 = _load_cpu()
            cpu0 = (_cpu(replica[:1]), _cpu(replica[1:]), _cpu(postmaster), load0)
            one, two = [], []
            for _ in range(ROUNDS):
                one.append(_measure(ports[:1], token) / ROUND_S)
                two.append(_measure(ports, token) / ROUND_S)
            load1 = _load_cpu()
            cpu1 = (_cpu(replica[:1]), _cpu(replica[1:]), _cpu(postmaster), load1)
        finally:
            for s in servers:
                s.terminate()
            for s in servers:
                try:
                    s.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    s.kill()
    ratio = statistics.median(two) / statistics.median(one)
    cpu = [round(b - a, 1) for a, b in zip(cpu0, cpu1, strict=True)]
    return report(
        "replicas_reads",
        ratio >= GOAL_RATIO,
        executions=EXECUTIONS,
        connections=CONNECTIONS,
        load_generator="wrk" if shutil.which("wrk") else "asyncio client",
        one_replica_rps=[round(x) for x in one],
        two_replicas_rps=[round(x) for x in two],
        ratio=round(ratio, 2),
        goal_ratio=GOAL_RATIO,
        cpu_seconds={
            "replica_1": cpu[0],
            "replica_2": cpu[1],
            "postgresql": cpu[2],
            "load_generator": cpu[3],
            "cores": psutil.cpu_count(),
            "wall": ROUNDS * 2 * ROUND_S,
        },
    )


if __name__ == "__main__":
    sys.exit(main())
