"""Starting and resuming runs through the REST API of a real `opsbook serve` (issue 18).

Goals: POST /api/v1/executions >= 300 starts/s; confirming a manual step (POST
/api/v1/executions/{id}/attest, answered once the run has moved on) p99 <= 10 ms. Also
reported: the time from the attest request to the run's Succeeded state (its last step is a
`sh` step: a process is started), and bench_parked.py's engine-only figure is the baseline.

One `opsbook serve` process (SQLite, one uvicorn worker) on a free port, in a workspace made
by `opsbook init` (its sandbox environment file is what every start and resume loads). The
load generator is a minimal HTTP/1.1 client on asyncio streams (keep-alive connections,
requests encoded up front) so that its own CPU, on the same 2 cores, is small next to the
server's. Starts: a
bounded loop of STARTS requests over CLIENTS connections. Resumes: one request at a time, so
each latency is the server's work and not queueing. Three rounds each, median round.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import OPSBOOK, PARKED_RUNBOOK, report

from opsbook.sandbox.config import free_port

STARTS = 300
CLIENTS = 4
RESUMES = 100
ROUNDS = 3
GOAL_STARTS_PER_S = 300.0
GOAL_RESUME_P99_MS = 10.0


class Client:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self.head = (
            f"Host: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
            "Content-Type: application/json\r\n"
        )
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> Client:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.writer is not None:
            self.writer.close()

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        assert self.reader is not None and self.writer is not None
        data = json.dumps(body).encode() if body is not None else b""
        self.writer.write(
            f"{method} {path} HTTP/1.1\r\n{self.head}Content-Length: {len(data)}\r\n\r\n".encode()
            + data
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        reply = await self.reader.readexactly(length) if length else b""
        return int(head[9:12]), json.loads(reply) if reply else None


async def starts(port: int, token: str) -> tuple[float, list[str]]:
    """(starts per second, the execution ids)."""
    todo = list(range(STARTS))
    ids: list[str] = []

    async def client() -> None:
        async with Client(port, token) as c:
            while todo:
                todo.pop()
                status, body = await c.call(
                    "POST", "/api/v1/executions", {"ref": "parked#proc", "params": {}}
                )
                if status != 201:
                    raise RuntimeError(f"start: HTTP {status} {body}")
                ids.append(body["id"])

    t = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    return STARTS / (time.perf_counter() - t), ids


async def wait_parked(port: int, token: str, ids: list[str]) -> None:
    async with Client(port, token) as c:
        for eid in ids:
            for _ in range(2000):
                _, body = await c.call("GET", f"/api/v1/executions/{eid}")
                if body["state"] == "waiting":
                    break
                await asyncio.sleep(0.005)
            else:
                raise RuntimeError(f"{eid} never parked: {body['state']}")


async def resumes(port: int, token: str, ids: list[str]) -> tuple[list[float], list[float]]:
    """(attest latencies, attest-to-Succeeded latencies), one run at a time."""
    attest, done = [], []
    async with Client(port, token) as c:
        for eid in ids:
            t = time.perf_counter()
            status, body = await c.call("POST", f"/api/v1/executions/{eid}/attest", {})
            attest.append(time.perf_counter() - t)
            if status != 200:
                raise RuntimeError(f"attest: HTTP {status} {body}")
            while body["state"] != "succeeded":
                await asyncio.sleep(0.002)  # poll, without taking the server's CPU from the run
                _, body = await c.call("GET", f"/api/v1/executions/{eid}")
                if body["state"] in ("failed", "aborted"):
                    raise RuntimeError(f"{eid}: {body['state']}")
            done.append(time.perf_counter() - t)
    return attest, done


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] if len(values) >= 2 else values[0]


def main() -> int:
    from opsbook.db import open_database
    from opsbook.users import accounts, tokens
    from opsbook.workspace.init import init_workspace

    tmp = Path(tempfile.mkdtemp(prefix="opsbook-bench-runs-"))
    ws = tmp / "ws"
    init_workspace(target=ws)  # the environments `opsbook init` writes, as people run them
    (ws / "runbooks" / "parked.md").write_text(PARKED_RUNBOOK)
    with (ws / "opsbook.toml").open("a") as f:  # no probes of an absent sandbox
        f.write("\n[monitoring]\nenvironments = []\n")
    db = open_database(f"sqlite:///{ws / '.opsbook' / 'opsbook.db'}")
    accounts.create_account(
        db=db, actor="bench", username="bench", roles=["operator"],
        known=accounts.known_roles(), password=None,
    )  # fmt: skip
    _, token = tokens.create_token(
        db=db, actor="bench", username="bench", name="bench", scopes=["read", "run"]
    )
    db.close()
    port = free_port()
    env = {**os.environ, "OPSBOOK_WORKSPACE": str(ws)}
    proc = subprocess.Popen(
        [*OPSBOOK, "serve", "--port", str(port), "--no-schedules"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        import httpx

        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/v1/health").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
            if time.monotonic() > deadline:
                raise SystemExit("opsbook serve did not start")
        asyncio.run(starts(port, token))  # warm-up: imports, catalogue, caches
        rates, attest, done = [], [], []
        for _ in range(ROUNDS):
            rate, ids = asyncio.run(starts(port, token))
            rates.append(rate)
            asyncio.run(wait_parked(port, token, ids[:RESUMES]))
            a, d = asyncio.run(resumes(port, token, ids[:RESUMES]))
            attest.append(a)
            done.append(d)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    rate = statistics.median(rates)
    attest_p99 = statistics.median(p99(a) * 1000 for a in attest)
    done_p99 = statistics.median(p99(d) * 1000 for d in done)
    return report(
        "api_runs",
        rate >= GOAL_STARTS_PER_S and attest_p99 <= GOAL_RESUME_P99_MS,
        clients=CLIENTS,
        starts_per_round=STARTS,
        rounds=ROUNDS,
        starts_per_s_rounds=[round(r) for r in rates],
        starts_per_s=round(rate),
        resume_p50_ms=round(statistics.median(x for a in attest for x in a) * 1000, 2),
        resume_p99_ms=round(attest_p99, 2),
        attest_to_succeeded_p99_ms=round(done_p99, 2),
        goal_starts_per_s=GOAL_STARTS_PER_S,
        goal_resume_p99_ms=GOAL_RESUME_P99_MS,
    )


if __name__ == "__main__":
    sys.exit(main())
