"""The ledger on SQLite and PostgreSQL: double entry, refusals, invariants, concurrency."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from opsbook.sandbox.ledger import (
    CASH_ACCOUNT,
    SETTLEMENT_ACCOUNT,
    InsufficientFunds,
    InvalidRequest,
    Ledger,
    LedgerUnavailable,
    UnknownAccount,
    seed_customers,
)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'ledger.db'}"
    else:
        url = request.getfixturevalue("pg_ledger_url")
    led = Ledger(url)
    led.init_schema()
    yield led
    led.close()


def test_a_transfer_writes_two_balanced_entries(ledger: Ledger) -> None:
    a = ledger.open_account(owner="alice", initial_cents=10_000)
    b = ledger.open_account(owner="bob")
    done = ledger.transfer(from_account=a["id"], to_account=b["id"], amount_cents=2_500)
    assert done["status"] == "completed"
    assert ledger.account(a["id"])["balance_cents"] == 7_500
    assert ledger.account(b["id"])["balance_cents"] == 2_500
    assert ledger.account(CASH_ACCOUNT)["balance_cents"] == -10_000
    report = ledger.check()
    assert report.ok and report.total_cents == 0 and report.entries == 4
    assert ledger.outbox_depth() == 2  # the deposit and the transfer each notify the receiver
    assert len(ledger.claim_outbox(limit=10)) == 2 and ledger.outbox_depth() == 0


def test_refusals_move_no_money(ledger: Ledger) -> None:
    a = ledger.open_account(owner="alice", initial_cents=100)
    b = ledger.open_account(owner="bob")
    with pytest.raises(InsufficientFunds):
        ledger.transfer(from_account=a["id"], to_account=b["id"], amount_cents=101)
    with pytest.raises(UnknownAccount):
        ledger.transfer(from_account=a["id"], to_account=999, amount_cents=1)
    with pytest.raises(InvalidRequest):
        ledger.transfer(from_account=a["id"], to_account=b["id"], amount_cents=0)
    with pytest.raises(InvalidRequest):
        ledger.open_account(owner="eve", currency="EUR")
    assert ledger.account(a["id"])["balance_cents"] == 100
    assert ledger.check().ok
    assert ledger.counts()["transfers"] == 1  # only the opening deposit completed


def test_payments_settle_or_fail(ledger: Ledger) -> None:
    a = ledger.open_account(owner="alice", initial_cents=1_000)
    paid = ledger.pay(account_id=a["id"], amount_cents=400, payee="shop", network_ref="PN-1")
    assert paid["status"] == "succeeded"
    assert ledger.account(SETTLEMENT_ACCOUNT)["balance_cents"] == 400
    failed = ledger.payment_failed(
        account_id=a["id"], amount_cents=5, payee="shop", error="timeout"
    )
    assert failed["status"] == "failed"
    assert ledger.account(a["id"])["balance_cents"] == 600 and ledger.check().ok


def test_concurrent_transfers_keep_the_invariants(ledger: Ledger) -> None:
    seed_customers(ledger)
    ids = [row["id"] for row in ledger.customer_accounts()]
    errors: list[BaseException] = []

    def work(offset: int) -> None:
        mine = Ledger(ledger.url)
        try:
            for i in range(40):
                src, dst = ids[(i + offset) % len(ids)], ids[(i + offset + 1) % len(ids)]
                with contextlib.suppress(InsufficientFunds):
                    mine.transfer(from_account=src, to_account=dst, amount_cents=1 + i)
        except BaseException as exc:
            errors.append(exc)
        finally:
            mine.close()

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    report = ledger.check()
    assert report.ok and report.total_cents == 0 and report.entries == 2 * (6 + 160)


def test_the_check_finds_a_tampered_ledger(tmp_path: Path) -> None:
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger.init_schema()
    a = ledger.open_account(owner="alice", initial_cents=500)
    with sqlite3.connect(tmp_path / "ledger.db") as conn:
        conn.execute("UPDATE accounts SET balance_cents = 9999 WHERE id = ?", (a["id"],))
        conn.execute(
            "INSERT INTO entries (transfer_id, account_id, amount_cents, created_at) "
            "VALUES (1, 1, 7, 'now')"
        )
    conn.close()
    report = ledger.check()
    assert not report.ok and report.total_cents == 7
    assert {m["account_id"] for m in report.mismatched} == {CASH_ACCOUNT, a["id"]}
    ledger.close()


def test_a_gate_refuses_the_database(tmp_path: Path) -> None:
    def gate(write: bool) -> None:
        if write:
            raise LedgerUnavailable("disk full")

    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger.init_schema()
    gated = Ledger(ledger.url, gate=gate)
    assert gated.check().ok  # reads pass
    with pytest.raises(LedgerUnavailable, match="disk full"):
        gated.open_account(owner="x")
    missing = Ledger(f"sqlite:///{tmp_path / 'nowhere' / 'ledger.db'}")
    with pytest.raises(LedgerUnavailable, match="cannot open"):
        missing.ping()
