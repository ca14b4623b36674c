"""The ledger a migration is applied to: where it is (the environment's sandbox configuration),
which versions of the services run against it, and one connection to it (SQLite or PostgreSQL,
autocommit, ``?`` placeholders) with the row counts and ledger invariants read through it."""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from opsbook.deploy.migrations import Dialect
from opsbook.errors import OpsbookError, UsageError

if TYPE_CHECKING:
    from opsbook.workspace import Workspace

LEDGER_TABLES = ("accounts", "transfers", "entries", "payments", "outbox")
TABLE = "schema_migrations"
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS schema_migrations (version TEXT PRIMARY KEY, name TEXT NOT NULL,"
    " sha256 TEXT NOT NULL, applied_at TEXT NOT NULL, applied_by TEXT NOT NULL, ticket TEXT,"
    " duration_s REAL, backup_id TEXT)"
)


class MigrationFailed(OpsbookError):
    """A migration refused by the lint, or that failed or broke the ledger (exit 1)."""


@dataclass(frozen=True)
class LedgerTarget:
    environment: str
    dialect: Dialect
    url: str  # sqlite:///PATH or a libpq URL (postgresql://…)
    managed: bool

    @property
    def path(self) -> Path:
        return Path(self.url.removeprefix("sqlite:///"))


# -- where the ledger is -----------------------------------------------------------------------


def conninfo(url: str) -> str:
    """A libpq URL from a ledger URL: ``postgresql+psycopg://`` and ``postgres://`` schemes, and
    SQLAlchemy's multi-host form (``?host=h1:p1&host=h2:p2``, what ``databases.ledger.url``
    holds) as libpq's ``h1:p1,h2:p2``."""
    url = re.sub(r"^postgres(?:ql)?(?:\+psycopg)?://", "postgresql://", url)
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    hosts = [v for k, v in query if k == "host"]
    if len(hosts) < 2 and not any(":" in h for h in hosts):
        return url
    user = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    netloc = user + ",".join(hosts)
    rest = urlencode([(k, v) for k, v in query if k != "host"])
    return urlunsplit((parts.scheme, netloc, parts.path, rest, parts.fragment))


def target(*, workspace: Workspace, environment: str) -> LedgerTarget:
    """The environment's sandbox ledger (the sandbox configuration of its environment file)."""
    from opsbook.sandbox.lifecycle import load_config  # noqa: PLC0415
    from opsbook.workspace import load_environment  # noqa: PLC0415

    env = load_environment(workspace, environment)
    if env.platform != "local":
        raise UsageError(
            f"{env.name} is not the sandbox: its migrations run as the release's migration job",
            field="--env",
            hint="runbook deployment-procedures#database-migration runs it there; lint the"
            " file here with: opsbook migrations lint FILE",
        )
    cfg = load_config(workspace=workspace, env_name=env.name)
    if cfg.database_url.startswith("sqlite:///"):
        return LedgerTarget(env.name, "sqlite", cfg.database_url, False)
    return LedgerTarget(env.name, "postgresql", conninfo(cfg.database_url), cfg.managed_postgres)


def running_versions(*, workspace: Workspace, environment: str) -> tuple[list[str], bool]:
    """The versions the sandbox's replicas run now (and True), or — when the sandbox is not up —
    the version ``sandbox up`` starts (and False)."""
    from opsbook.sandbox import lifecycle  # noqa: PLC0415
    from opsbook.sandbox.releases import INITIAL_VERSION  # noqa: PLC0415

    try:
        st = lifecycle.status(workspace=workspace, env_name=environment)
    except (OpsbookError, OSError):
        return [INITIAL_VERSION], False
    found: set[str] = set()
    for svc in st.get("services") or []:
        found.add(str(svc.get("version")))
        for pod in svc.get("pods") or []:
            if pod.get("state") in ("starting", "running", "terminating"):
                found.add(str(pod.get("version")))
    return sorted(v for v in found if v and v != "None"), True


@dataclass(frozen=True)
class LintContext:
    """What a file is linted against in an environment."""

    dialect: Dialect
    reads: dict[str, set[str]] | None  # None: the running versions' reads are not known
    versions: list[str]
    live: bool  # the versions were read from the running sandbox
    target: LedgerTarget | None  # None: not the sandbox (its migration job applies it)


def lint_context(*, workspace: Workspace, environment: str) -> LintContext:
    """The sandbox: its ledger's dialect and the running versions' reads. Another environment
    (Kubernetes, its release's migration job applies the file): PostgreSQL's rules, the reads
    unknown (a dropped column is then an error until reviewed)."""
    from opsbook.sandbox.releases import reads_of  # noqa: PLC0415
    from opsbook.workspace import load_environment  # noqa: PLC0415

    if load_environment(workspace, environment).platform != "local":
        return LintContext("postgresql", None, [], False, None)
    tgt = target(workspace=workspace, environment=environment)
    versions, live = running_versions(workspace=workspace, environment=environment)
    return LintContext(tgt.dialect, reads_of(versions), versions, live, tgt)


# -- a connection to the ledger ----------------------------------------------------------------


class Session:
    """One connection, autocommit (transactions are explicit), ``?`` placeholders."""

    def __init__(self, tgt: LedgerTarget, *, lock_timeout: float) -> None:
        self.dialect = tgt.dialect
        self.raw: Any
        if tgt.dialect == "sqlite":
            import sqlite3  # noqa: PLC0415

            if not tgt.path.is_file():
                raise UsageError(
                    f"no ledger at {tgt.path}",
                    field="--env",
                    hint="start the sandbox once (opsbook sandbox up) so that its ledger exists",
                )
            self.raw = sqlite3.connect(
                f"file:{tgt.path}?mode=rw",
                uri=True,
                isolation_level=None,
                timeout=lock_timeout,
                check_same_thread=False,
            )
            self.raw.row_factory = sqlite3.Row
            self.raw.execute(f"PRAGMA busy_timeout = {int(lock_timeout * 1000)}")
            self.raw.execute("PRAGMA foreign_keys = ON")
        else:
            import psycopg  # noqa: PLC0415
            from psycopg.rows import dict_row  # noqa: PLC0415

            try:
                self.raw = psycopg.connect(
                    tgt.url, autocommit=True, row_factory=dict_row, connect_timeout=5
                )
            except psycopg.Error as exc:
                raise MigrationFailed(
                    f"cannot connect to the ledger of {tgt.environment}: "
                    f"{str(exc).strip().splitlines()[0]}",
                    hint="is the sandbox up? opsbook sandbox status",
                ) from None

    def q(self, sql: str, *params: Any) -> list[dict[str, Any]]:
        if self.dialect == "postgresql":
            cur = self.raw.execute(sql.replace("?", "%s").encode(), params or None)
        else:
            cur = self.raw.execute(sql, params)
        if cur.description is None:
            return []
        return [dict(r) for r in cur.fetchall()]

    def run(self, text: str) -> None:
        """One statement of the migration, as written (no placeholders)."""
        self.raw.execute(text.encode() if self.dialect == "postgresql" else text)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.raw.close()


def row_counts(s: Session) -> dict[str, int]:
    return {t: int(s.q(f"SELECT COUNT(*) AS n FROM {t}")[0]["n"]) for t in LEDGER_TABLES}  # noqa: S608 - fixed names


def invariants(s: Session) -> dict[str, Any]:
    """The invariants of :meth:`Ledger.check`, read inside the migration's transaction."""
    total = s.q("SELECT COALESCE(SUM(amount_cents), 0) AS total, COUNT(*) AS n FROM entries")[0]
    bad = s.q(
        "SELECT a.id AS account_id, a.balance_cents AS balance_cents, COALESCE(e.s, 0) AS"
        " entries_cents FROM accounts a LEFT JOIN (SELECT account_id, SUM(amount_cents) AS s"
        " FROM entries GROUP BY account_id) e ON e.account_id = a.id"
        " WHERE a.balance_cents <> COALESCE(e.s, 0) ORDER BY a.id"
    )
    return {
        "ok": int(total["total"]) == 0 and not bad,
        "total_cents": int(total["total"]),
        "entries": int(total["n"]),
        "mismatched_accounts": [{k: int(v) for k, v in r.items()} for r in bad],
    }


def broken(before: dict[str, int], after: dict[str, int], inv: dict[str, Any]) -> list[str]:
    problems = [
        f"{t}: {before[t]} rows before, {after[t]} after (rows may only be added)"
        for t in LEDGER_TABLES
        if after.get(t, 0) < before.get(t, 0)
    ]
    if inv["total_cents"] != 0:
        problems.append(f"the entries sum to {inv['total_cents']} cents, not 0")
    for m in inv["mismatched_accounts"][:5]:
        problems.append(
            f"account {m['account_id']}: balance {m['balance_cents']} cents, its entries sum to"
            f" {m['entries_cents']}"
        )
    if len(inv["mismatched_accounts"]) > 5:
        problems.append(f"… {len(inv['mismatched_accounts']) - 5} more accounts")
    return problems


def has_table(s: Session) -> bool:
    if s.dialect == "sqlite":
        found = s.q("SELECT 1 AS x FROM sqlite_master WHERE type = 'table' AND name = ?", TABLE)
    else:
        found = s.q("SELECT 1 AS x WHERE to_regclass(?) IS NOT NULL", TABLE)
    return bool(found)


def applied_migrations(s: Session, *, create: bool) -> dict[str, dict[str, Any]]:
    """The applied migrations by version (the table is created when missing and ``create``)."""
    if not has_table(s):
        if not create:
            return {}
        s.q(SCHEMA)
    return {str(r["version"]): r for r in s.q("SELECT * FROM schema_migrations ORDER BY version")}


def db_error(exc: BaseException) -> bool:
    import sqlite3  # noqa: PLC0415

    if isinstance(exc, sqlite3.Error):
        return True
    try:
        import psycopg  # noqa: PLC0415
    except ImportError:  # pragma: no cover - psycopg is a dependency
        return False
    return isinstance(exc, psycopg.Error)
