"""``opsbook sandbox load``: realistic customer traffic at a fixed rate (open loop), then the
ledger invariants.

The mix: transfers between customers 60%, balance reads 15%, card payments 15% (through the
payment network), new accounts 5%, logins 5%. Requests are sent on schedule whatever the answers
take (an open loop, so a slow platform shows as latency, not as a lower rate).
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from opsbook.errors import OpsbookError

MIX = (("transfer", 60), ("balance", 15), ("payment", 15), ("open_account", 5), ("login", 5))
FUND_ACCOUNTS = 20
#: Tries per account: the error-rate fault fails half the requests, and the load should still
#: run (it is how an operator sees the fault), so answers are tried again up to this many
#: times; a service that cannot be reached at all stops the load after CONNECT_TRIES.
PREPARE_TRIES = 20
CONNECT_TRIES = 3
#: What an exception that carries no message means, by class name.
_MEANING = {
    "ReadError": "the connection closed before the answer arrived",
    "WriteError": "the connection closed while the request was sent",
    "RemoteProtocolError": "the server closed the connection without an answer",
    "ConnectError": "cannot connect",
    "ReadTimeout": "no answer in time",
    "ConnectTimeout": "no connection in time",
    "PoolTimeout": "no free connection in time",
}


def describe_error(exc: BaseException) -> str:
    """``Type: reason`` on one line, with a reason even when the exception has none."""
    name = type(exc).__name__
    text = " ".join(str(exc).split()) or _MEANING.get(name, "")
    return f"{name}: {text}" if text else name


@dataclass(frozen=True)
class OpStats:
    count: int
    ok: int
    rejected: int  # 4xx: refused by the bank (insufficient funds, declined)
    errors: int  # 5xx or no answer
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float


@dataclass(frozen=True)
class LoadReport:
    rate: float
    duration: float
    sent: int
    achieved_rate: float
    ops: dict[str, OpStats]
    invariant: dict[str, Any]
    late: int = 0
    error_samples: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rate": self.rate,
            "duration": self.duration,
            "sent": self.sent,
            "achieved_rate": round(self.achieved_rate, 1),
            "late": self.late,
            "ops": {k: v.__dict__ for k, v in self.ops.items()},
            "errors": sum(v.errors for v in self.ops.values()),
            "invariant": self.invariant,
            "error_samples": self.error_samples,
        }


def _pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


class _Traffic:
    def __init__(
        self,
        client: Any,
        urls: Mapping[str, str],
        seed: int,
        timeline: list[tuple[float, int]] | None = None,
        acknowledged: set[str] | None = None,
    ) -> None:
        self.timeline = timeline
        self.acknowledged = acknowledged
        self.client = client
        self.urls = urls
        self.rng = random.Random(seed)  # noqa: S311 - traffic mix, not security
        self.accounts: list[int] = []
        self.samples: dict[str, list[tuple[float, int]]] = {op: [] for op, _ in MIX}
        self.errors: list[str] = []

    async def prepare(self) -> None:
        """Open the funded accounts the traffic moves money between (a few tries each)."""
        for i in range(FUND_ACCOUNTS):
            self.accounts.append(await self._open_account(i))

    async def _open_account(self, i: int) -> int:
        url = f"{self.urls['account']}/accounts"
        why, unreachable, tries = "", 0, 0
        while tries < PREPARE_TRIES and unreachable < CONNECT_TRIES:
            tries += 1
            try:
                reply = await self.client.post(
                    url,
                    json={
                        "owner": f"load-customer-{int(time.time())}-{i}",
                        "initial_cents": 500_000,
                    },
                )
            except Exception as exc:  # any transport failure: try again, a few times
                why, unreachable = describe_error(exc), unreachable + 1
                continue
            if reply.status_code < 300:
                return int(reply.json()["id"])
            why = f"HTTP {reply.status_code} {' '.join(reply.text.split())[:120]}".rstrip()
        raise OpsbookError(
            f"could not open the load's customer accounts at {url}:"
            f" {tries} tries failed, the last with {why}",
            hint="is the account service up (`opsbook sandbox status`)? A fault that fails"
            " every request stops the load before it starts: `opsbook sandbox chaos list`,"
            " then `opsbook sandbox chaos clear`",
        )

    def pick(self) -> str:
        roll, total = self.rng.uniform(0, 100), 0
        for op, weight in MIX:
            total += weight
            if roll < total:
                return op
        return MIX[0][0]

    async def one(self, op: str) -> None:
        a, b = self.rng.sample(self.accounts, 2)
        amount = self.rng.randint(1, 5000)
        sent_at = time.time()
        started = time.perf_counter()
        code = 0
        try:
            if op == "transfer":
                r = await self.client.post(
                    f"{self.urls['transaction']}/transfers",
                    json={"from_account": a, "to_account": b, "amount_cents": amount},
                )
            elif op == "balance":
                r = await self.client.get(f"{self.urls['account']}/accounts/{a}")
            elif op == "payment":
                r = await self.client.post(
                    f"{self.urls['payment']}/payments",
                    json={"account_id": a, "amount_cents": amount, "payee": "coffee-shop"},
                )
            elif op == "open_account":
                r = await self.client.post(
                    f"{self.urls['account']}/accounts",
                    json={"owner": f"new-customer-{self.rng.randint(1, 10**9)}"},
                )
            else:
                r = await self.client.post(
                    f"{self.urls['account']}/login",
                    json={"username": "alice", "password": "sandbox"},
                )
            code = r.status_code
            if self.acknowledged is not None and op == "transfer" and code in (200, 201):
                self.acknowledged.add(str(r.headers.get("x-request-id", "")))
            if code >= 500 and len(self.errors) < 5:
                self.errors.append(f"{op}: HTTP {code} {' '.join(r.text.split())[:200]}".rstrip())
        except Exception as exc:  # counted as an error, sampled for the report
            if len(self.errors) < 5:
                self.errors.append(f"{op}: {describe_error(exc)}")
        self.samples[op].append(((time.perf_counter() - started) * 1000, code))
        if self.timeline is not None:
            self.timeline.append((sent_at, code))


def _stats(samples: list[tuple[float, int]]) -> OpStats:
    times = [t for t, _ in samples]
    return OpStats(
        count=len(samples),
        ok=sum(1 for _, c in samples if 200 <= c < 300),
        rejected=sum(1 for _, c in samples if 400 <= c < 500),
        errors=sum(1 for _, c in samples if c == 0 or c >= 500),
        p50_ms=round(statistics.median(times), 1) if times else 0.0,
        p95_ms=_pct(times, 0.95),
        p99_ms=_pct(times, 0.99),
        max_ms=round(max(times), 1) if times else 0.0,
    )


async def run_load(
    *,
    urls: Mapping[str, str],
    rate: float,
    duration: float,
    ledger_url: str | None = None,
    seed: int = 7,
    concurrency: int = 256,
    timeline: list[tuple[float, int]] | None = None,
    acknowledged: set[str] | None = None,
) -> LoadReport:
    """Send ``rate`` requests a second for ``duration`` seconds to the services at ``urls``
    (service name -> base URL), then check the ledger. ``timeline``, when given, receives
    (time sent, HTTP status or 0) of every request (a benchmark's window); ``acknowledged``
    the request ids of the transfers the bank answered as done (a failover's RPO as clients
    saw it)."""
    import httpx  # noqa: PLC0415 - deferred: import cost

    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(limits=limits, timeout=10.0) as client:
        traffic = _Traffic(client, urls, seed, timeline, acknowledged)
        await traffic.prepare()
        gate = asyncio.Semaphore(concurrency)
        total = int(rate * duration)
        tasks: list[asyncio.Task[None]] = []
        late = 0
        started = time.perf_counter()

        async def fire(op: str) -> None:
            try:
                await traffic.one(op)
            finally:
                gate.release()

        for i in range(total):
            due = started + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.05:
                late += 1
            await gate.acquire()
            tasks.append(asyncio.create_task(fire(traffic.pick())))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
        invariant = await _check(client, urls, ledger_url)
    return LoadReport(
        rate=rate,
        duration=duration,
        sent=total,
        achieved_rate=total / elapsed if elapsed else 0.0,
        ops={op: _stats(s) for op, s in traffic.samples.items()},
        invariant=invariant,
        late=late,
        error_samples=traffic.errors,
    )


async def _check(client: Any, urls: Mapping[str, str], ledger_url: str | None) -> dict[str, Any]:
    if ledger_url:
        from opsbook.sandbox.ledger import Ledger  # noqa: PLC0415

        def read() -> dict[str, Any]:
            ledger = Ledger(ledger_url)
            try:
                return ledger.check().as_dict()
            finally:
                ledger.close()

        return await asyncio.to_thread(read)
    url = f"{urls['transaction']}/ledger/check"
    try:
        reply = await client.get(url)
        reply.raise_for_status()
        result: dict[str, Any] = reply.json()
    except Exception as exc:
        raise OpsbookError(
            f"the ledger check at {url} failed after the load: {describe_error(exc)}",
            hint="run `opsbook sandbox status`; the load's requests were sent",
        ) from exc
    return result
