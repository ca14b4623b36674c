"""The sandbox ledger: double-entry bookkeeping in SQLite (WAL) or PostgreSQL (psycopg 3).

Every money movement is a transfer with two entries, a debit and a credit of the same amount,
written in one database transaction together with the account balances and the notification
for the outbox. Invariants (:meth:`Ledger.check`): the entries of the whole ledger sum to zero
and every account's balance equals the sum of its entries.

System accounts: 1 ``bank:cash`` (funds opening deposits) and 2 ``bank:settlement`` (receives
outgoing payments); they may go negative, customer accounts may not.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opsbook.sandbox.ledger_model import (
    CASH_ACCOUNT,
    SETTLEMENT_ACCOUNT,
    TABLES,
    InsufficientFunds,
    InvalidRequest,
    InvariantReport,
    LedgerError,
    LedgerUnavailable,
    UnknownAccount,
    now,
)

if TYPE_CHECKING:
    from opsbook.sandbox.credential import CredentialView
    from opsbook.sandbox.endpoint import EndpointView

__all__ = [
    "CASH_ACCOUNT",
    "SETTLEMENT_ACCOUNT",
    "InsufficientFunds",
    "InvalidRequest",
    "InvariantReport",
    "Ledger",
    "LedgerError",
    "LedgerUnavailable",
    "UnknownAccount",
    "seed_customers",
]


class Ledger:
    """One ledger database; a connection per thread. ``gate(write)`` runs before every use and
    may raise :class:`LedgerUnavailable` (how the services apply the database faults)."""

    def __init__(
        self,
        url: str,
        *,
        gate: Callable[[bool], None] | None = None,
        credential: CredentialView | None = None,
        endpoint: EndpointView | None = None,
    ) -> None:
        """``credential``: on PostgreSQL, the login role and password to use instead of the
        URL's (:mod:`opsbook.sandbox.credential`); a rotation is picked up between queries."""
        self.url = url
        self._credential = credential
        self._endpoint = endpoint
        pg = url.startswith(("postgresql://", "postgres://"))
        self.dialect = "postgresql" if pg else "sqlite"
        self.path = Path(url.removeprefix("sqlite:///")) if self.dialect == "sqlite" else None
        self._gate = gate
        self._local = threading.local()

    # -- connections -------------------------------------------------------------------------

    def _connect(self) -> Any:
        if self.dialect == "sqlite":
            assert self.path is not None
            self._local.version = self._versions()
            end = self._endpoint.current() if self._endpoint is not None else None
            path = end["path"] if end and end.get("path") else self.path
            conn = sqlite3.connect(
                f"file:{path}?mode=rw",
                uri=True,
                isolation_level=None,
                check_same_thread=False,
                timeout=10,
            )
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA busy_timeout = 10000")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            return conn
        import psycopg  # noqa: PLC0415 - only with a PostgreSQL ledger
        from psycopg.rows import dict_row  # noqa: PLC0415

        cred = self._credential.current() if self._credential is not None else None
        self._local.version = self._versions()
        where: dict[str, Any] = {}
        if cred:
            where |= {"user": str(cred["user"]), "password": str(cred["password"])}
        end = self._endpoint.current() if self._endpoint is not None else None
        if end and end.get("port"):
            where |= {"host": str(end["host"]), "port": int(end["port"])}
        return psycopg.connect(
            self.url, autocommit=True, row_factory=dict_row, connect_timeout=5, **where
        )

    def _versions(self) -> tuple[Any, Any]:
        """The credential's and the endpoint's versions: a change means reconnect."""
        cred = self._credential.current() if self._credential is not None else None
        end = self._endpoint.current() if self._endpoint is not None else None
        return (cred.get("version") if cred else None, end.get("version") if end else None)

    def _conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        watched = self._credential is not None or self._endpoint is not None
        if (
            conn is not None
            and watched
            and self._versions() != getattr(self._local, "version", None)
        ):
            with contextlib.suppress(Exception):  # rotated or moved: reconnect between queries
                conn.close()
            conn = self._local.conn = None
        if conn is None:
            try:
                conn = self._connect()
            except (sqlite3.Error, OSError) as exc:
                raise LedgerUnavailable(f"cannot open the ledger database: {exc}") from exc
            except Exception as exc:  # psycopg.OperationalError without importing psycopg here
                raise LedgerUnavailable(f"cannot connect to the ledger database: {exc}") from exc
            self._local.conn = conn
        return conn

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def _sql(self, text: str) -> str:
        return text.replace("?", "%s") if self.dialect == "postgresql" else text

    @contextmanager
    def _tx(self, *, write: bool) -> Iterator[Callable[..., list[dict[str, Any]]]]:
        if self._gate is not None:
            self._gate(write)
        conn = self._conn()

        def q(text: str, *params: Any) -> list[dict[str, Any]]:
            cur = conn.execute(self._sql(text), params)
            if cur.description is None:
                return []
            return [dict(row) for row in cur.fetchall()]

        begin = "BEGIN IMMEDIATE" if write and self.dialect == "sqlite" else "BEGIN"
        if not write and self.dialect == "postgresql":
            begin = "BEGIN ISOLATION LEVEL REPEATABLE READ"
        try:
            conn.execute(begin)
        except Exception as exc:
            self.close()
            raise LedgerUnavailable(f"the ledger database does not answer: {exc}") from exc
        try:
            yield q
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    # -- schema ------------------------------------------------------------------------------

    def init_schema(self) -> None:
        """Create the tables and system accounts (idempotent)."""
        if self.dialect == "sqlite":
            assert self.path is not None
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with sqlite3.connect(self.path) as conn:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.executescript(TABLES.format(pk="INTEGER PRIMARY KEY"))
            conn.close()
        else:
            conn = self._conn()
            for statement in TABLES.format(pk="BIGSERIAL PRIMARY KEY").split(";"):
                if statement.strip():
                    conn.execute(statement)
        with self._tx(write=True) as q:
            if not q("SELECT id FROM accounts WHERE id = ?", CASH_ACCOUNT):
                for ident, owner in (
                    (CASH_ACCOUNT, "bank:cash"),
                    (SETTLEMENT_ACCOUNT, "bank:settlement"),
                ):
                    q(
                        "INSERT INTO accounts (id, owner, currency, kind, balance_cents, "
                        "created_at) VALUES (?, ?, 'USD', 'system', 0, ?)",
                        ident,
                        owner,
                        now(),
                    )
                if self.dialect == "postgresql":
                    q("SELECT setval('accounts_id_seq', 2)")

    # -- operations --------------------------------------------------------------------------

    def open_account(
        self,
        *,
        owner: str,
        currency: str = "USD",
        initial_cents: int = 0,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        if not owner or len(owner) > 100:
            raise InvalidRequest("owner must be a name of 1 to 100 characters")
        if currency != "USD":
            raise InvalidRequest("the sandbox bank keeps USD accounts only")
        if initial_cents < 0:
            raise InvalidRequest("initial_cents must be >= 0")
        with self._tx(write=True) as q:
            row = q(
                "INSERT INTO accounts (owner, currency, kind, balance_cents, created_at) "
                "VALUES (?, ?, 'customer', 0, ?) RETURNING id",
                owner,
                currency,
                now(),
            )
            account_id = int(row[0]["id"])
            if initial_cents:
                self._move(
                    q,
                    CASH_ACCOUNT,
                    account_id,
                    initial_cents,
                    kind="deposit",
                    reference="opening deposit",
                    request_id=request_id,
                )
        return self.account(account_id)

    def account(self, account_id: int) -> dict[str, Any]:
        with self._tx(write=False) as q:
            rows = q(
                "SELECT id, owner, currency, kind, balance_cents, created_at FROM accounts "
                "WHERE id = ?",
                account_id,
            )
        if not rows:
            raise UnknownAccount(f"no account {account_id}")
        return rows[0]

    def customer_accounts(self, *, limit: int = 100) -> list[dict[str, Any]]:
        with self._tx(write=False) as q:
            return q(
                "SELECT id, owner, balance_cents FROM accounts WHERE kind = 'customer' "
                "ORDER BY id LIMIT ?",
                limit,
            )

    def transfer(
        self,
        *,
        from_account: int,
        to_account: int,
        amount_cents: int,
        reference: str | None = None,
        request_id: str | None = None,
        kind: str = "transfer",
    ) -> dict[str, Any]:
        """Move money: one transfer, a debit and a credit entry, both balances, one outbox row.
        A transfer refused for lack of funds is recorded as ``rejected`` and raised."""
        if amount_cents <= 0:
            raise InvalidRequest("amount_cents must be a positive number of cents")
        if from_account == to_account:
            raise InvalidRequest("from_account and to_account must differ")
        rejected: LedgerError | None = None
        with self._tx(write=True) as q:
            try:
                transfer_id = self._move(
                    q,
                    from_account,
                    to_account,
                    amount_cents,
                    kind=kind,
                    reference=reference,
                    request_id=request_id,
                )
            except InsufficientFunds as exc:
                rejected = exc
                row = q(
                    "INSERT INTO transfers (from_account, to_account, amount_cents, status, "
                    "kind, reference, request_id, created_at) "
                    "VALUES (?, ?, ?, 'rejected', ?, ?, ?, ?) RETURNING id",
                    from_account,
                    to_account,
                    amount_cents,
                    kind,
                    reference,
                    request_id,
                    now(),
                )
                transfer_id = int(row[0]["id"])
        if rejected is not None:
            raise rejected
        return {
            "id": transfer_id,
            "from_account": from_account,
            "to_account": to_account,
            "amount_cents": amount_cents,
            "status": "completed",
            "kind": kind,
        }

    def _move(
        self,
        q: Callable[..., list[dict[str, Any]]],
        src: int,
        dst: int,
        amount: int,
        *,
        kind: str,
        reference: str | None,
        request_id: str | None,
    ) -> int:
        lock = " FOR UPDATE" if self.dialect == "postgresql" else ""
        rows = q(
            f"SELECT id, kind, balance_cents FROM accounts WHERE id IN (?, ?) "  # noqa: S608 - constant suffix
            f"ORDER BY id{lock}",
            src,
            dst,
        )
        found = {int(r["id"]): r for r in rows}
        for ident in (src, dst):
            if ident not in found:
                raise UnknownAccount(f"no account {ident}")
        source = found[src]
        if source["kind"] == "customer" and int(source["balance_cents"]) < amount:
            raise InsufficientFunds(
                f"account {src} has {source['balance_cents']} cents, needs {amount}"
            )
        stamp = now()
        row = q(
            "INSERT INTO transfers (from_account, to_account, amount_cents, status, kind, "
            "reference, request_id, created_at) VALUES (?, ?, ?, 'completed', ?, ?, ?, ?) "
            "RETURNING id",
            src,
            dst,
            amount,
            kind,
            reference,
            request_id,
            stamp,
        )
        transfer_id = int(row[0]["id"])
        for account, signed in ((src, -amount), (dst, amount)):
            q(
                "INSERT INTO entries (transfer_id, account_id, amount_cents, created_at) "
                "VALUES (?, ?, ?, ?)",
                transfer_id,
                account,
                signed,
                stamp,
            )
            q("UPDATE accounts SET balance_cents = balance_cents + ? WHERE id = ?", signed, account)
        if found[dst]["kind"] == "customer":
            q(
                "INSERT INTO outbox (account_id, channel, message, status, created_at) "
                "VALUES (?, 'email', ?, 'pending', ?)",
                dst,
                f"You received {amount / 100:.2f} USD ({kind} {transfer_id})",
                stamp,
            )
        return transfer_id

    def pay(
        self,
        *,
        account_id: int,
        amount_cents: int,
        payee: str,
        network_ref: str,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        """A payment the network approved: money to the settlement account, payment row."""
        with self._tx(write=True) as q:
            transfer_id = self._move(
                q,
                account_id,
                SETTLEMENT_ACCOUNT,
                amount_cents,
                kind="payment",
                reference=payee,
                request_id=request_id,
            )
            row = q(
                "INSERT INTO payments (account_id, amount_cents, payee, status, network_ref, "
                "transfer_id, request_id, created_at) "
                "VALUES (?, ?, ?, 'succeeded', ?, ?, ?, ?) RETURNING id",
                account_id,
                amount_cents,
                payee,
                network_ref,
                transfer_id,
                request_id,
                now(),
            )
        return {
            "id": int(row[0]["id"]),
            "status": "succeeded",
            "transfer_id": transfer_id,
            "network_ref": network_ref,
        }

    def payment_failed(
        self,
        *,
        account_id: int,
        amount_cents: int,
        payee: str,
        error: str,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        with self._tx(write=True) as q:
            row = q(
                "INSERT INTO payments (account_id, amount_cents, payee, status, error, "
                "request_id, created_at) VALUES (?, ?, ?, 'failed', ?, ?, ?) RETURNING id",
                account_id,
                amount_cents,
                payee,
                error[:500],
                request_id,
                now(),
            )
        return {"id": int(row[0]["id"]), "status": "failed", "error": error}

    def claim_outbox(self, *, limit: int = 50) -> list[dict[str, Any]]:
        """Mark up to ``limit`` pending notifications sent and return them."""
        with self._tx(write=True) as q:
            rows = q(
                "SELECT id, account_id, channel, message FROM outbox WHERE status = 'pending' "
                "ORDER BY id LIMIT ?",
                limit,
            )
            for row in rows:
                q(
                    "UPDATE outbox SET status = 'sent', sent_at = ? WHERE id = ? "
                    "AND status = 'pending'",
                    now(),
                    row["id"],
                )
        return rows

    def outbox_depth(self) -> int:
        with self._tx(write=False) as q:
            return int(q("SELECT COUNT(*) AS n FROM outbox WHERE status = 'pending'")[0]["n"])

    def ping(self) -> None:
        with self._tx(write=False) as q:
            q("SELECT 1 AS ok")

    def check(self) -> InvariantReport:
        """The ledger invariants, read in one consistent snapshot."""
        with self._tx(write=False) as q:
            total = q("SELECT COALESCE(SUM(amount_cents), 0) AS total, COUNT(*) AS n FROM entries")
            accounts = q("SELECT COUNT(*) AS n FROM accounts")
            bad = q(
                "SELECT a.id AS account_id, a.balance_cents AS balance_cents, "
                "COALESCE(e.s, 0) AS entries_cents FROM accounts a LEFT JOIN "
                "(SELECT account_id, SUM(amount_cents) AS s FROM entries GROUP BY account_id) e "
                "ON e.account_id = a.id WHERE a.balance_cents <> COALESCE(e.s, 0) ORDER BY a.id"
            )
        sum_cents = int(total[0]["total"])
        mismatched = [{k: int(v) for k, v in row.items()} for row in bad]
        return InvariantReport(
            ok=sum_cents == 0 and not mismatched,
            total_cents=sum_cents,
            entries=int(total[0]["n"]),
            accounts=int(accounts[0]["n"]),
            mismatched=mismatched,
        )

    def has_column(self, table: str, column: str) -> bool:
        """Whether ``table`` has ``column`` (a release that needs a schema change asks)."""
        with self._tx(write=False) as q:
            if self.dialect == "sqlite":
                rows = q(f"PRAGMA table_info({table})")
                return any(r["name"] == column for r in rows)
            rows = q(
                "SELECT 1 AS found FROM information_schema.columns "
                "WHERE table_name = ? AND column_name = ?",
                table,
                column,
            )
            return bool(rows)

    def counts(self) -> dict[str, int]:
        with self._tx(write=False) as q:
            rows = q(
                "SELECT (SELECT COUNT(*) FROM accounts) AS accounts, "
                "(SELECT COUNT(*) FROM transfers WHERE status = 'completed') AS transfers, "
                "(SELECT COUNT(*) FROM payments) AS payments, "
                "(SELECT COUNT(*) FROM outbox WHERE status = 'pending') AS outbox_pending"
            )
        return {k: int(v) for k, v in rows[0].items()}


DEMO_CUSTOMERS = ("alice", "bob", "carol", "dave", "erin", "frank")


def seed_customers(ledger: Ledger, *, initial_cents: int = 1_000_00) -> None:
    """Open the demo customers' accounts (once), each funded by an opening deposit."""
    if ledger.customer_accounts(limit=1):
        return
    for owner in DEMO_CUSTOMERS:
        ledger.open_account(owner=owner, initial_cents=initial_cents)
