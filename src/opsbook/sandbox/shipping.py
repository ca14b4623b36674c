"""Log shipping of the SQLite ledger to the DR region (issue 13): the sandbox's answer to
streaming replication when the ledger is a file.

What is shipped is the ledger's own journal: transfers, entries and payments are append-only
(new rows by id), accounts and the outbox are brought up to date (a balance is the sum of its
entries; a notification's status moves from pending to sent). Each pass reads the live ledger in
one read transaction (WAL mode: a consistent snapshot while the services write) and applies it
to the replica in one transaction, so the replica is always a consistent earlier state of the
ledger. The first pass seeds the replica with SQLite's online backup API.

The supervisor runs :func:`shipping_loop`; ``opsbook dr setup`` switches it on by writing
``dr/shipping.json`` in the data directory (``{"source", "target", "interval"}``); every pass
writes ``dr/shipped.json`` (when, the last transfer id shipped, how long it took)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

DIR = "dr"
CONFIG = "shipping.json"
STATE = "shipped.json"
APPEND_ONLY = ("transfers", "entries", "payments")


def dr_dir(data_dir: Path) -> Path:
    return data_dir / DIR


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    tmp.replace(path)


def seed(source: Path, target: Path) -> None:
    """A new replica: SQLite's online backup of the live ledger (safe while it is written)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".seed")
    tmp.unlink(missing_ok=True)
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(tmp)
    try:
        src.backup(dst)
        dst.execute("PRAGMA journal_mode = WAL")
    finally:
        dst.close()
        src.close()
    for suffix in ("-wal", "-shm"):
        Path(str(target) + suffix).unlink(missing_ok=True)
    os.replace(tmp, target)


def ship(source: Path, target: Path) -> dict[str, Any]:
    """One pass of the journal from ``source`` to ``target``; what it shipped."""
    t0 = time.perf_counter()
    conn = sqlite3.connect(f"file:{target}?mode=rw", uri=True, isolation_level=None, timeout=10)
    try:
        conn.execute("PRAGMA busy_timeout = 10000")
        conn.execute("ATTACH DATABASE ? AS live", (f"file:{source}?mode=ro",))
        shipped: dict[str, int] = {}
        conn.execute("BEGIN")  # the first read of live fixes its snapshot for the pass
        try:
            for table in APPEND_ONLY:
                cur = conn.execute(
                    f"INSERT INTO main.{table} SELECT * FROM live.{table}"  # noqa: S608 - fixed names
                    f" WHERE id > (SELECT COALESCE(MAX(id), 0) FROM main.{table})"
                )
                shipped[table] = cur.rowcount
            conn.execute("INSERT OR REPLACE INTO main.accounts SELECT * FROM live.accounts")
            cur = conn.execute(
                "INSERT OR REPLACE INTO main.outbox SELECT * FROM live.outbox WHERE"
                " id > (SELECT COALESCE(MAX(id), 0) FROM main.outbox)"
                " OR id IN (SELECT id FROM main.outbox WHERE status = 'pending')"
            )
            shipped["outbox"] = cur.rowcount
            last = conn.execute("SELECT COALESCE(MAX(id), 0) FROM main.transfers").fetchone()[0]
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
    finally:
        conn.close()
    return {
        "at": time.time(),
        "last_transfer_id": int(last),
        "rows": shipped,
        "took_s": round(time.perf_counter() - t0, 4),
    }


async def shipping_loop(data_dir: Path, *, tick: float = 0.25) -> None:
    """Ship while ``dr/shipping.json`` says so (the supervisor runs this for its lifetime)."""
    last = 0.0
    while True:
        await asyncio.sleep(tick)
        cfg = read_json(dr_dir(data_dir) / CONFIG)
        if not cfg or not cfg.get("enabled"):
            continue
        if time.monotonic() - last < float(cfg.get("interval", 1.0)):
            continue
        last = time.monotonic()
        source, target = Path(str(cfg["source"])), Path(str(cfg["target"]))
        try:
            if not target.exists():
                await asyncio.to_thread(seed, source, target)
            done = await asyncio.to_thread(ship, source, target)
            done["source"], done["target"] = str(source), str(target)
        except (sqlite3.Error, OSError) as exc:
            done = {"at": time.time(), "error": f"{type(exc).__name__}: {exc}"}
        write_json(dr_dir(data_dir) / STATE, done)
