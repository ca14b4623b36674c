"""Backups of the sandbox ledger on PostgreSQL with pgBackRest (issue 13): take, verify by
restore into a scratch instance, mirror the repository to the DR region's storage.

What a PostgreSQL backup's manifest holds: pgBackRest's label, type, LSN and WAL range, and the
ledger's row counts just before the backup started and just after it stopped. The ledger is
append-only, so a restore of the backup must hold counts between the two; with the ledger
invariants (every transfer balances, every balance equals the sum of its entries) that is what
verification checks, after ``pgbackrest verify`` has checked every file's checksum. (A
PostgreSQL sequence may skip values, after a rolled-back insert or a promotion, so "no gap in
the journal" is a check of the SQLite ledger only.)"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from opsbook.backup import pgbackrest
from opsbook.errors import OpsbookError
from opsbook.sandbox import pgcluster

TABLES = ("accounts", "transfers", "entries", "payments", "outbox")
INVARIANTS = ("unbalanced_transfers", "balances_not_matching_entries")


UNBALANCED = (
    "SELECT COUNT(*) FROM (SELECT transfer_id FROM entries GROUP BY transfer_id"
    " HAVING SUM(amount_cents) <> 0) u"
)
MISMATCHED = (
    "SELECT COUNT(*) FROM accounts a LEFT JOIN (SELECT account_id, SUM(amount_cents)"
    " AS s FROM entries GROUP BY account_id) e ON e.account_id = a.id"
    " WHERE a.balance_cents <> COALESCE(e.s, 0)"
)


def _scalar(url: str, query: str) -> Any:
    import psycopg  # noqa: PLC0415

    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        conn.execute("SET work_mem = '128MB'")  # the aggregates stay in memory
        row = conn.execute(query).fetchone()  # our own statements
    return row[0] if row else None


def inspect_url(url: str) -> dict[str, Any]:
    """Row counts, last ids, the newest transfer's time and the invariants of a PG ledger
    (the two invariants' aggregates run at once, on two connections)."""
    from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415

    with ThreadPoolExecutor(2) as pool:
        unbalanced = pool.submit(_scalar, url, UNBALANCED)
        mismatched = pool.submit(_scalar, url, MISMATCHED)
        counts = counts_url(url)
        last_row = _scalar(
            url,
            "SELECT json_build_array((SELECT COALESCE(MAX(id), 0) FROM transfers),"
            " (SELECT COALESCE(MAX(id), 0) FROM entries), (SELECT MAX(created_at) FROM transfers))",
        )
        return {
            "integrity": "ok",
            "counts": counts,
            "last_ids": {"transfers": int(last_row[0]), "entries": int(last_row[1])},
            "last_transfer_at": last_row[2],
            "unbalanced_transfers": int(unbalanced.result()),
            "balances_not_matching_entries": int(mismatched.result()),
        }


def counts_url(url: str) -> dict[str, int]:
    """Row counts of the ledger's tables (cheap: what a backup's manifest bounds)."""
    import psycopg  # noqa: PLC0415

    query = " UNION ALL ".join(f"SELECT '{t}', COUNT(*) FROM {t}" for t in TABLES)  # noqa: S608
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        return {str(t): int(n) for t, n in conn.execute(query).fetchall()}


def take(
    *, data_dir: Path, key: bytes, primary_url: str, kind: str, repo: Path, dr_repo: Path
) -> dict[str, Any]:
    """A pgBackRest backup with its manifest, mirrored to the DR repository; catalogue fields."""
    before = {"counts": counts_url(primary_url)}
    info = pgbackrest.backup(data_dir, key, kind=kind)
    after = {"counts": counts_url(primary_url)}
    label = str(info["label"])
    manifest_file = repo / "backup" / pgbackrest.STANZA / label / "backup.manifest"
    mirror(repo, dr_repo)
    dr_manifest = dr_repo / "backup" / pgbackrest.STANZA / label / "backup.manifest"
    digest = sha256(manifest_file)
    if sha256(dr_manifest) != digest:
        raise OSError(f"the DR copy {dr_manifest} does not match what was written")
    return {
        "method": f"pgbackrest-{info['type']}",
        "raw_bytes": int(info["info"]["size"]),
        "stored_bytes": int(info["info"]["repository"]["delta"]),
        "sha256": digest,
        "manifest": {
            "label": label,
            "type": info["type"],
            "prior": info.get("prior"),
            "lsn": info.get("lsn"),
            "wal": info.get("archive"),
            "timestamp": info.get("timestamp"),
            "counts_at_start": before["counts"],
            "counts_at_stop": after["counts"],
            "counts": before["counts"],
        },
        "copies": [
            {"location": "primary", "path": str(manifest_file), "repo": str(repo)},
            {"location": "dr", "path": str(dr_manifest), "repo": str(dr_repo)},
        ],
    }


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def mirror(src: Path, dst: Path, *, delete: bool = False) -> int:
    """Copy what is new or changed in the repository ``src`` to ``dst`` (the DR region's
    storage, replicated like a bucket); with ``delete``, remove what ``src`` no longer has
    (after retention). The number of files copied."""
    copied = 0
    if delete and dst.exists():
        for root, _dirs, files in os.walk(dst, topdown=False):
            rel = Path(root).relative_to(dst)
            for name in files:
                if not (src / rel / name).exists():
                    (Path(root) / name).unlink()
            if not (src / rel).exists():
                shutil.rmtree(root, ignore_errors=True)
    dst.mkdir(parents=True, exist_ok=True)
    pgcluster.give(dst)
    for root, dirs, files in os.walk(src):
        rel = Path(root).relative_to(src)
        target = dst / rel
        for d in dirs:
            (target / d).mkdir(exist_ok=True)
            pgcluster.give(target / d)
        for name in files:
            s, t = Path(root) / name, target / name
            st = s.stat()
            with contextlib.suppress(FileNotFoundError):
                tt = t.stat()
                if tt.st_size == st.st_size and tt.st_mtime_ns == st.st_mtime_ns:
                    continue
            shutil.copy2(s, t)
            pgcluster.give(t)
            copied += 1
    return copied


@contextlib.contextmanager
def scratch_instance(
    *,
    data_dir: Path,
    key: bytes,
    label: str | None = None,
    target: tuple[str, str] | None = None,
    repo: Path | None = None,
    keep_at: Path | None = None,
    port: int | None = None,
) -> Iterator[tuple[str, float, Path, int]]:
    """Restore into a new instance, start it, wait for recovery to end; yields (url, restore
    seconds, its data directory, its port). Stopped and removed afterwards unless ``keep_at``
    names where it should stay (a point-in-time recovery's new instance)."""
    from opsbook.sandbox.config import free_port  # noqa: PLC0415

    base = Path(tempfile.mkdtemp(prefix="opsbook-restore-"))
    base.chmod(0o711)
    pgdata = keep_at or base / "data"
    port = port or free_port()
    env = pgbackrest.cipher_env(key)
    started = False
    try:
        took = pgbackrest.restore(
            data_dir, key, target_dir=pgdata, label=label, target=target, repo=repo
        )
        (base / "log").touch()
        pgcluster.give(base / "log")
        pgcluster.give(base)
        t0 = time.perf_counter()
        pgcluster.run(
            [
                pgcluster.pg_bin("pg_ctl"),
                "-D",
                str(pgdata),
                "-l",
                str(base / "log"),
                "-w",
                "-t",
                "600",
                "-o",
                f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c archive_mode=off"
                " -c cluster_name=restore",
                "start",
            ],
            env=env,
            timeout=620,
        )
        started = True
        url = f"postgresql://{pgcluster.SUPERUSER}@127.0.0.1:{port}/{pgcluster.DATABASE}"
        _wait_promoted(url, base / "log", pgdata)
        yield url, took + (time.perf_counter() - t0), pgdata, port
    finally:
        if started and keep_at is None:
            with contextlib.suppress(OpsbookError):
                pgcluster.run(
                    [pgcluster.pg_bin("pg_ctl"), "-D", str(pgdata), "-m", "immediate", "stop"]
                )
        shutil.rmtree(base, ignore_errors=True)


def _wait_promoted(url: str, log: Path, pgdata: Path, timeout: float = 600) -> None:
    """Until recovery ends and the instance takes writes; an instance that stopped (recovery
    failed: a missing WAL segment, the target not reached) is an error at once."""
    import psycopg  # noqa: PLC0415

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pgcluster.postmaster_alive(pgdata):
            tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-5:]
            raise OpsbookError("the restored instance stopped during recovery: " + " | ".join(tail))
        admin = url.rsplit("/", 1)[0] + "/postgres"
        with contextlib.suppress(psycopg.Error), psycopg.connect(admin, connect_timeout=5) as c:
            row = c.execute("SELECT pg_is_in_recovery()").fetchone()
            if row and not row[0]:
                return
        time.sleep(0.1)
    tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-5:]
    raise OpsbookError("the restored instance did not finish recovery: " + " | ".join(tail))


def check_restored(manifest: dict[str, Any], found: dict[str, Any]) -> list[str]:
    """What is wrong with a restore of a backup, against its manifest."""
    problems = []
    low = manifest.get("counts_at_start") or {}
    high = manifest.get("counts_at_stop") or {}
    for table, n in sorted(found["counts"].items()):
        lo, hi = low.get(table), high.get(table)
        if lo is not None and n < lo:
            problems.append(f"{table}: {n} rows restored, the backup started with {lo}")
        if hi is not None and n > hi:
            problems.append(f"{table}: {n} rows restored, more than the {hi} when it stopped")
    for k in INVARIANTS:
        if found[k]:
            problems.append(f"ledger invariant: {k.replace('_', ' ')} = {found[k]}")
    return problems
