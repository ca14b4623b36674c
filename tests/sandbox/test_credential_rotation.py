"""Rotating the ledger database credential on the real sandbox with its ledger on a real
PostgreSQL cluster (password authentication for the ledger's roles), with the load generator
running: no request fails, the services end up connected as the new role, and the old
credential no longer logs in. On SQLite the rotation is refused with the fix."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from opsbook.errors import UsageError
from opsbook.sandbox.load import LoadReport, run_load
from tests.sandbox.harness import Sandbox, running_sandbox, sandbox_env

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


@pytest.fixture
def scram(pg_ledger_url: str) -> Iterator[str]:
    """Password authentication for this database's ledger roles (the session cluster trusts
    everyone else on 127.0.0.1)."""
    import psycopg

    db = pg_ledger_url.rsplit("/", 1)[1]
    with psycopg.connect(pg_ledger_url, autocommit=True) as conn:
        hba = Path(str(conn.execute("SHOW hba_file").fetchone()[0]))  # type: ignore[index]
        original = hba.read_text()
        lines = f"host {db} {db}_blue,{db}_green 127.0.0.1/32 scram-sha-256\n"
        hba.write_text(lines + original)
        conn.execute("SELECT pg_reload_conf()")
    try:
        yield pg_ledger_url
    finally:
        hba.write_text(original)
        with psycopg.connect(pg_ledger_url, autocommit=True) as conn:
            conn.execute("SELECT pg_reload_conf()")
            for role in (f"{db}_blue", f"{db}_green"):
                if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
                    conn.execute(f'DROP OWNED BY "{role}"')
                    conn.execute(f'DROP ROLE "{role}"')


def _load(sb: Sandbox, seconds: float, out: list[LoadReport]) -> threading.Thread:
    urls = {s["name"]: s["url"] for s in sb.status()["services"]}
    t = threading.Thread(
        target=lambda: out.append(asyncio.run(run_load(urls=urls, rate=30, duration=seconds))),
        daemon=True,
    )
    t.start()
    return t


def test_rotation_under_load_on_postgresql(workspace_root: Path, scram: str) -> None:
    import psycopg

    db = scram.rsplit("/", 1)[1]
    with running_sandbox(workspace_root, sandbox_env(database_url=scram)) as sb:
        first = sb.control().call("rotate-db-credential", {"actor": "pytest"})
        assert first["to_role"] == f"{db}_blue" and first["from_role"] is None
        blue = json.loads((sb.data_dir / "ledger-credential.json").read_text())
        reports: list[LoadReport] = []
        loader = _load(sb, 8, reports)
        time.sleep(2)
        out = sb.control().call("rotate-db-credential", {"actor": "pytest"})
        loader.join(timeout=60)
        (load,) = reports
        d = load.as_dict()
        assert d["sent"] > 150 and d["errors"] == 0, d["error_samples"]
        assert out["from_role"] == f"{db}_blue" and out["to_role"] == f"{db}_green"
        cred = json.loads((sb.data_dir / "ledger-credential.json").read_text())
        assert (
            cred["user"] == f"{db}_green"
            and (sb.data_dir / "ledger-credential.json").stat().st_mode & 0o077 == 0
        )
        with psycopg.connect(scram, autocommit=True) as admin:
            users = {
                r[0]
                for r in admin.execute(
                    "SELECT usename FROM pg_stat_activity WHERE datname = %s AND usename LIKE %s",
                    (db, f"{db}_%"),
                ).fetchall()
            }
        assert users <= {f"{db}_green"} and users  # the services are on the new role only
        host = scram.split("@", 1)[1]
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(f"postgresql://{db}_blue:{blue['password']}@{host}", connect_timeout=3)
        ok = psycopg.connect(
            f"postgresql://{cred['user']}:{cred['password']}@{host}", connect_timeout=3
        )
        ok.close()


def test_the_sqlite_ledger_has_no_credential_to_rotate(workspace_root: Path) -> None:
    with (
        running_sandbox(workspace_root) as sb,
        pytest.raises(UsageError, match="no database credential"),
    ):
        sb.control().call("rotate-db-credential", {"actor": "pytest"})
