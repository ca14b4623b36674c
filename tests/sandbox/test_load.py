"""The traffic generator against the real sandbox: the ledger balances after load."""

from __future__ import annotations

from opsbook.sandbox.load import run_load
from tests.sandbox.harness import Sandbox


async def test_the_ledger_balances_after_load(sb: Sandbox) -> None:
    urls = {s.name: sb.url(s.name) for s in sb.config.services}
    report = await run_load(urls=urls, rate=60, duration=2.0, ledger_url=sb.config.database_url)
    assert report.sent == 120
    assert report.invariant["ok"] and report.invariant["total_cents"] == 0
    assert report.invariant["mismatched_accounts"] == []
    assert sum(op.count for op in report.ops.values()) == 120
    assert sum(op.errors for op in report.ops.values()) == 0, report.error_samples
    transfers = report.ops["transfer"]
    assert transfers.count > 30 and transfers.ok == transfers.count
    assert 0 < transfers.p50_ms <= transfers.p99_ms
