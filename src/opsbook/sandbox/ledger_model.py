"""The ledger's vocabulary: its tables, its errors (each with the HTTP status the services answer
with) and the invariant report."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

CASH_ACCOUNT = 1
SETTLEMENT_ACCOUNT = 2

TABLES = """
CREATE TABLE IF NOT EXISTS accounts (
  id {pk}, owner TEXT NOT NULL, currency TEXT NOT NULL DEFAULT 'USD',
  kind TEXT NOT NULL DEFAULT 'customer', balance_cents BIGINT NOT NULL DEFAULT 0,
  created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS transfers (
  id {pk}, from_account BIGINT NOT NULL REFERENCES accounts(id),
  to_account BIGINT NOT NULL REFERENCES accounts(id), amount_cents BIGINT NOT NULL,
  status TEXT NOT NULL, kind TEXT NOT NULL DEFAULT 'transfer', reference TEXT,
  request_id TEXT, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS entries (
  id {pk}, transfer_id BIGINT NOT NULL REFERENCES transfers(id),
  account_id BIGINT NOT NULL REFERENCES accounts(id), amount_cents BIGINT NOT NULL,
  created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS payments (
  id {pk}, account_id BIGINT NOT NULL, amount_cents BIGINT NOT NULL, payee TEXT NOT NULL,
  status TEXT NOT NULL, network_ref TEXT, error TEXT, transfer_id BIGINT,
  request_id TEXT, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
  id {pk}, account_id BIGINT, channel TEXT NOT NULL, message TEXT NOT NULL,
  status TEXT NOT NULL DEFAULT 'pending', created_at TEXT NOT NULL, sent_at TEXT);
CREATE INDEX IF NOT EXISTS entries_by_account ON entries(account_id);
CREATE INDEX IF NOT EXISTS outbox_by_status ON outbox(status);
"""


class LedgerError(Exception):
    """A business or database error; ``status`` is the HTTP status the API answers with."""

    status = 500
    kind = "ledger_error"


class UnknownAccount(LedgerError):
    status = 404
    kind = "unknown_account"


class InsufficientFunds(LedgerError):
    status = 422
    kind = "insufficient_funds"


class InvalidRequest(LedgerError):
    status = 400
    kind = "invalid_request"


class LedgerUnavailable(LedgerError):
    """The database cannot be reached or used (connection refused, pool exhausted, disk full)."""

    status = 503
    kind = "database_unavailable"


@dataclass(frozen=True)
class InvariantReport:
    ok: bool
    total_cents: int
    entries: int
    accounts: int
    mismatched: list[dict[str, int]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "total_cents": self.total_cents,
            "entries": self.entries,
            "accounts": self.accounts,
            "mismatched_accounts": self.mismatched,
        }


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
