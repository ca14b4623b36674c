"""Health fan-out: the `platform.health` action probes 500 HTTP endpoints that each answer in
200 ms. Goal: <= 1.5 s. Baseline, same run: the seed's sequential loop
`for u in ...; do curl -s $u; done` over the same endpoints -- timed on a sample of 25 of them
and extrapolated to 500 (running all 500 would take ~100 s and tell nothing more)."""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import report

ENDPOINTS = 500
PORTS = 20
DELAY = 0.2
SAMPLE = 25
GOAL_S = 1.5

SERVER = r"""
import asyncio, sys
DELAY = float(sys.argv[2])
async def handle(reader, writer):
    try:
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(DELAY)
        body = b'{"status": "UP"}'
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                     + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
        await writer.drain()
    except Exception:
        pass
    finally:
        writer.close()
async def main():
    servers = [await asyncio.start_server(handle, "127.0.0.1", 0, backlog=4096)
               for _ in range(int(sys.argv[1]))]
    print(" ".join(str(s.sockets[0].getsockname()[1]) for s in servers), flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


async def fan_out(urls: list[str]) -> tuple[float, int]:
    from opsbook.actions import ActionContext
    from opsbook.actions.platform import health

    ctx = ActionContext(
        environment_name="bench",
        environment={"platform": "local"},
        workspace=Path.cwd(),
        execution_id="bench",
        started_by="bench",
    )
    started = time.perf_counter()
    result = await health.func(ctx, {"urls": urls, "timeout": 10})
    return time.perf_counter() - started, int(result["up"])


def main() -> int:
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(PORTS), str(DELAY)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        ports = server.stdout.readline().split()
        urls = [f"http://127.0.0.1:{ports[i % PORTS]}/api/svc-{i}/health" for i in range(ENDPOINTS)]
        runs = [asyncio.run(fan_out(urls)) for _ in range(3)]
        times = [t for t, _ in runs]
        all_up = all(up == ENDPOINTS for _, up in runs)
        loop = "for u in " + " ".join(urls[:SAMPLE]) + '; do curl -s "$u" >/dev/null; done'
        started = time.perf_counter()
        subprocess.run(["bash", "-c", loop], check=True)
        sample = time.perf_counter() - started
    finally:
        server.kill()
        server.wait()
    baseline = sample / SAMPLE * ENDPOINTS
    worst = max(times)
    return report(
        "health_fanout",
        worst <= GOAL_S and all_up,
        endpoints=ENDPOINTS,
        endpoint_latency_s=DELAY,
        fanout_s_runs=[round(t, 3) for t in times],
        fanout_s_median=round(statistics.median(times), 3),
        fanout_s_worst=round(worst, 3),
        goal_s=GOAL_S,
        all_up=all_up,
        baseline="sequential curl loop (seed), timed on a sample and extrapolated",
        baseline_sample_endpoints=SAMPLE,
        baseline_sample_s=round(sample, 3),
        baseline_extrapolated_s=round(baseline, 1),
        ratio_baseline_over_fanout=round(baseline / worst, 1),
    )


if __name__ == "__main__":
    sys.exit(main())
