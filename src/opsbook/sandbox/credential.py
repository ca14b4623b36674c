"""The ledger database credential of the sandbox on PostgreSQL (issue 14): the services connect
as one of two login roles, ``<db>_blue`` or ``<db>_green``, whose name and password are in
``ledger-credential.json`` (owner-only) in the data directory. Rotation moves the services to
the other role with a new password, then invalidates the old one, with traffic flowing:

1. the idle role gets a new password and the ledger's privileges;
2. the credential file names it; every service notices on its next query (a ``stat`` per use)
   and reconnects between two queries, never in the middle of one;
3. sessions still open as the old role after a grace period are idle ones of threads that got
   no request: they are ended (their thread reconnects when it next works);
4. the old role's password is replaced with a random one nobody knows.

The SQLite ledger has no credential: rotation refuses it with the fix."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from pathlib import Path
from typing import Any

from opsbook.errors import UsageError
from opsbook.sandbox.watched import WatchedFile, write_json

FILE = "ledger-credential.json"
GRACE = 3.0  # seconds for every service to move to the new role


def path_of(data_dir: Path) -> Path:
    return data_dir / FILE


def read(data_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path_of(data_dir).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("user") else None


def _write(data_dir: Path, cred: dict[str, Any]) -> None:
    write_json(path_of(data_dir), cred, mode=0o600)


def _rotate_blocking(admin_url: str, data_dir: Path) -> dict[str, Any]:
    import psycopg  # noqa: PLC0415
    from psycopg import sql  # noqa: PLC0415

    from opsbook.sandbox.endpoint import read as read_endpoint  # noqa: PLC0415

    end = read_endpoint(data_dir)  # after a failover or a recovery, the primary moved
    where: dict[str, Any] = {}
    if end and end.get("port"):
        where = {"host": str(end["host"]), "port": int(end["port"])}
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5, **where) as admin:
        db = str(admin.execute("SELECT current_database()").fetchone()[0])  # type: ignore[index]
        current = read(data_dir)
        old = current["user"] if current else None
        blue, green = f"{db}_blue", f"{db}_green"
        target = green if old == blue else blue
        password = secrets.token_urlsafe(24)
        exists = admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (target,)).fetchone()
        verb = "ALTER" if exists else "CREATE"
        # utility statements take no server-side parameters: psycopg.sql quotes the name and
        # the (random) password on the client
        admin.execute(
            sql.SQL(verb + " ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(target), sql.Literal(password)
            )
        )
        role = sql.Identifier(target)
        admin.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(role))
        admin.execute(sql.SQL("GRANT ALL ON ALL TABLES IN SCHEMA public TO {}").format(role))
        admin.execute(sql.SQL("GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {}").format(role))
        version = int(current.get("version", 0)) + 1 if current else 1
        _write(data_dir, {"user": target, "password": password, "version": version})
        deadline = time.monotonic() + GRACE
        left = 0
        while old is not None and time.monotonic() < deadline:
            row = admin.execute(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE usename = %s AND datname = %s",
                (old, db),
            ).fetchone()
            left = int(row[0]) if row else 0
            if left == 0:
                break
            time.sleep(0.1)
        ended = 0
        if old is not None:
            rows = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE usename = %s AND datname = %s AND state = 'idle'",
                (old, db),
            ).fetchall()
            ended = len(rows)
            admin.execute(
                sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                    sql.Identifier(old), sql.Literal(secrets.token_urlsafe(32))
                )
            )
    return {
        "rotated": "ledger database credential",
        "from_role": old,
        "to_role": target,
        "version": version,
        "idle_sessions_ended": ended,
    }


async def rotate_credential(sup: Any, args: dict[str, Any]) -> dict[str, Any]:
    url = str(sup.config.database_url)
    if not url.startswith(("postgresql://", "postgres://")):
        raise UsageError(
            "the SQLite ledger has no database credential to rotate",
            hint="run the sandbox's ledger on PostgreSQL (sandbox.database_url: postgresql://...)",
        )
    started = time.monotonic()
    out = await asyncio.to_thread(_rotate_blocking, url, sup.data_dir)
    out["took_s"] = round(time.monotonic() - started, 2)
    out["actor"] = str(args.get("actor") or "operator")
    sup.log("info", "ledger database credential rotated", **out)
    return out


class CredentialView(WatchedFile):
    """What a service's ledger connections use: re-read when the file changes."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__(path_of(data_dir), read)
