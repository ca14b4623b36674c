"""The probe scheduler keeps each probe's cadence (no drift accumulates), spreads first runs
with a stable jitter, bounds concurrency and skips a check whose previous run still runs."""

from __future__ import annotations

import asyncio
import statistics

from opsbook.monitoring.config import Probe
from opsbook.monitoring.probes import ProbeResult
from opsbook.monitoring.scheduler import Scheduler, jitter


def probe(i: int, interval: float) -> Probe:
    return Probe("sandbox", "payment", f"p{i}", "http", {"url": "x"}, interval=interval)


async def test_cadence_jitter_and_bounded_concurrency() -> None:
    probes = [probe(i, 0.25) for i in range(40)]
    active = 0
    peak = 0

    async def run_one(p: Probe) -> ProbeResult:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.01)
        active -= 1
        return ProbeResult(p.name, p.service, p.kind, True, 10, 0)

    sched = Scheduler(probes, run_one, concurrency=8)
    await sched.run(stop_after=2.0)
    counts: dict[str, int] = {}
    for r in sched.take():
        counts[r.probe] = counts.get(r.probe, 0) + 1
    assert set(counts) == {p.name for p in probes}
    assert all(5 <= c <= 9 for c in counts.values()), counts  # ~8 in 2 s at 0.25 s
    assert peak <= 8
    assert statistics.median(sched.drift) < 0.2  # generous: loaded CI machines
    offsets = {round(jitter(p), 3) for p in probes}
    assert len(offsets) > 30 and all(0 <= o < 0.25 for o in offsets)
    assert jitter(probes[0]) == jitter(probe(0, 0.25))  # stable across restarts


async def test_a_slow_check_is_skipped_not_stacked() -> None:
    calls = 0

    async def slow(p: Probe) -> ProbeResult:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.55)
        return ProbeResult(p.name, p.service, p.kind, True, 550, 0)

    sched = Scheduler([probe(0, 0.1)], slow)
    await sched.run(stop_after=1.2)
    assert calls <= 3 and sched.skipped >= 5
