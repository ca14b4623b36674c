"""The probe scheduler: every probe runs on its own fixed cadence (no drift accumulates: the
next due time is the previous due time plus the interval), first offset by a deterministic
jitter within its interval so probes do not all fire at once, with bounded concurrency.
A check that would start while the previous one of the same probe still runs is skipped."""

from __future__ import annotations

import asyncio
import heapq
import time
import zlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from opsbook.monitoring.config import Probe
from opsbook.monitoring.probes import ProbeResult

RunOne = Callable[[Probe], Awaitable[ProbeResult]]


def jitter(probe: Probe) -> float:
    """A stable offset in [0, interval) from the probe's name."""
    return (
        (zlib.crc32(f"{probe.environment}/{probe.name}".encode()) % 10_000)
        / 10_000
        * (probe.interval)
    )


@dataclass
class Scheduler:
    probes: Sequence[Probe]
    run_one: RunOne
    concurrency: int = 32
    results: list[ProbeResult] = field(default_factory=list)
    drift: list[float] = field(default_factory=list)  # seconds late, per started check
    skipped: int = 0
    keep_drift: int = 10_000

    async def run(self, *, stop_after: float | None = None) -> None:
        """Run until cancelled (or for ``stop_after`` seconds)."""
        gate = asyncio.Semaphore(self.concurrency)
        running: dict[int, asyncio.Task[None]] = {}
        start = time.monotonic()
        heap = [(start + jitter(p), i) for i, p in enumerate(self.probes)]
        heapq.heapify(heap)

        async def check(i: int, due: float) -> None:
            async with gate:
                self._late(time.monotonic() - due)
                self.results.append(await self.run_one(self.probes[i]))

        try:
            while heap:
                due, i = heap[0]
                now = time.monotonic()
                if stop_after is not None and now - start >= stop_after:
                    break
                if due > now:
                    await asyncio.sleep(min(due - now, 0.5))
                    continue
                heapq.heapreplace(heap, (due + self.probes[i].interval, i))
                task = running.get(i)
                if task is not None and not task.done():
                    self.skipped += 1
                    continue
                running[i] = asyncio.create_task(check(i, due))
        finally:
            for task in running.values():
                task.cancel()
            await asyncio.gather(*running.values(), return_exceptions=True)

    def _late(self, seconds: float) -> None:
        self.drift.append(max(0.0, seconds))
        if len(self.drift) > self.keep_drift:
            del self.drift[: len(self.drift) - self.keep_drift]

    def take(self) -> list[ProbeResult]:
        """The results since the last call."""
        out, self.results = self.results, []
        return out
