"""Take, verify (by restore), restore and list backups of the sandbox ledger on SQLite (issue 13,
first slice). The caller owns nothing here: each function is one unit of work, audited.

- **take**: SQLite's online backup (safe while the services write) into a scratch file, its
  manifest (row counts, last ids, the ledger invariants at that moment), compressed and
  encrypted (:mod:`opsbook.backup.crypto`; the key is the secret ``backup-encryption-key``, in
  the secrets directory, never beside the backup), stored in ``.opsbook/backups/<env>/`` and
  copied to the DR location (``[backups] dr_location``, default ``.opsbook/backups-dr/<env>/``,
  standing for the DR region's storage). A backup that fails (a full disk, say) is catalogued
  ``bad`` with the reason, and nothing running is touched.
- **verify**: every copy's checksum against the catalogue, then a restore into a scratch
  database: ``PRAGMA integrity_check``, row counts against the manifest, every transfer
  balances, every balance equals the sum of its entries, no gap in the transfer journal. The
  result and the restore duration are recorded; a failure marks the backup ``bad`` naming why.
- **restore**: the same into a new file the caller names (the cut-over is the runbook's).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sqlite3
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opsbook import audit
from opsbook.backup.crypto import (
    DecryptError,
    decrypt_file,
    encrypt_file,
    key_id,
    load_or_create_key,
    sha256_file,
)
from opsbook.backup.paths import locations
from opsbook.errors import NotFoundError, OpsbookError, UsageError

if TYPE_CHECKING:
    from opsbook.config import Settings
    from opsbook.db import Database
    from opsbook.sandbox.config import SandboxConfig
    from opsbook.workspace import Workspace

TABLES = ("accounts", "transfers", "entries", "payments", "outbox")


def _z(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class BackupFailed(OpsbookError):
    """A backup or a verification that failed (exit 1); the catalogue says why."""


def _ledger(workspace: Workspace, environment: str) -> SandboxConfig:
    """The sandbox environment's configuration (its ledger on SQLite or PostgreSQL)."""
    from opsbook.sandbox.lifecycle import load_config  # noqa: PLC0415
    from opsbook.workspace import load_environment  # noqa: PLC0415

    env = load_environment(workspace, environment)
    if env.platform != "local":
        raise UsageError(
            f"{env.name} is not the sandbox: Azure SQL's own backups serve it",
            field="--env",
            hint="point-in-time restore there: opsbook recover --env "
            f"{env.name} --to TIME --dry-run (docs/backup-azure-sql.md)",
        )
    cfg = load_config(workspace=workspace, env_name=env.name)
    if not cfg.database_url.startswith("sqlite:///") and not cfg.managed_postgres:
        raise UsageError(
            "the sandbox ledger is on a PostgreSQL server opsbook does not run "
            "(sandbox.database_url): back it up with that server's own tooling",
            field="--env",
            hint="or let the sandbox run its own cluster: opsbook sandbox up --db postgres",
        )
    return cfg


def _ledger_path(workspace: Workspace, environment: str) -> Path:
    return Path(_ledger(workspace, environment).database_url.removeprefix("sqlite:///"))


def inspect(path: Path) -> dict[str, Any]:
    """Row counts, last ids and the ledger invariants of a SQLite ledger file."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        integrity = str(conn.execute("PRAGMA integrity_check").fetchone()[0])
        counts = {t: int(conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]) for t in TABLES}  # noqa: S608
        last = {
            t: int(conn.execute(f"SELECT COALESCE(MAX(id), 0) FROM {t}").fetchone()[0])  # noqa: S608
            for t in ("transfers", "entries")
        }
        unbalanced = int(
            conn.execute(
                "SELECT COUNT(*) FROM (SELECT transfer_id FROM entries GROUP BY transfer_id"
                " HAVING SUM(amount_cents) <> 0)"
            ).fetchone()[0]
        )
        mismatched = int(
            conn.execute(
                "SELECT COUNT(*) FROM accounts a LEFT JOIN (SELECT account_id, SUM(amount_cents)"
                " AS s FROM entries GROUP BY account_id) e ON e.account_id = a.id"
                " WHERE a.balance_cents <> COALESCE(e.s, 0)"
            ).fetchone()[0]
        )
        gaps = int(
            conn.execute("SELECT COALESCE(MAX(id), 0) - COUNT(*) FROM transfers").fetchone()[0]
        )
    finally:
        conn.close()
    return {
        "integrity": integrity,
        "counts": counts,
        "last_ids": last,
        "unbalanced_transfers": unbalanced,
        "balances_not_matching_entries": mismatched,
        "journal_gaps": gaps,
    }


def take(
    db: Database,
    *,
    workspace: Workspace,
    environment: str,
    settings: Settings,
    actor: str,
    retention: str = "daily",
    kind: str = "full",
) -> dict[str, Any]:
    """Take a backup of the environment's ledger. ``kind`` (full, diff, incr) applies on
    PostgreSQL (pgBackRest); SQLite backups are always full."""
    if retention not in ("daily", "weekly", "monthly"):
        raise UsageError(
            f"unknown retention {retention!r}", field="--retention", hint="daily, weekly or monthly"
        )
    if kind not in ("full", "diff", "incr"):
        raise UsageError(f"unknown backup type {kind!r}", field="--type", hint="full, diff or incr")
    cfg = _ledger(workspace, environment)
    if cfg.managed_postgres:
        return _take_pg(
            db,
            workspace=workspace,
            cfg=cfg,
            settings=settings,
            actor=actor,
            retention=retention,
            kind=kind,
        )
    ledger = Path(cfg.database_url.removeprefix("sqlite:///"))
    if not ledger.is_file():
        raise UsageError(f"no ledger at {ledger}", hint="opsbook sandbox up")
    key = load_or_create_key(settings.secrets_dir_for(workspace.state_dir))
    primary, dr = locations(workspace, environment)
    started = datetime.now(UTC)
    bid = f"bk-{started:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"
    t0 = time.perf_counter()
    stored = primary / f"{bid}.obk"
    scratch = primary / f".{bid}.db.tmp"
    row: dict[str, Any] = {
        "id": bid,
        "environment": environment,
        "database": "ledger",
        "method": "sqlite-online-backup",
        "retention": retention,
        "started_at": _z(started),
        "key_id": key_id(key),
        "created_by": actor,
    }
    try:
        primary.mkdir(parents=True, exist_ok=True, mode=0o700)
        dr.mkdir(parents=True, exist_ok=True, mode=0o700)
        src = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True)
        dst = sqlite3.connect(scratch)
        try:
            src.backup(dst)
        finally:
            dst.close()
            src.close()
        manifest = inspect(scratch)
        raw = scratch.stat().st_size
        size, digest = encrypt_file(scratch, stored, key)
        os.chmod(stored, 0o600)
        copy = dr / stored.name
        shutil.copyfile(stored, copy)
        if sha256_file(copy) != digest:
            raise OSError(f"the DR copy {copy} does not match what was written")
        row |= {
            "state": "ok",
            "raw_bytes": raw,
            "stored_bytes": size,
            "sha256": digest,
            "manifest": json.dumps({**manifest, "app_state": app_state(workspace, cfg, settings)}),
            "copies": json.dumps(
                [
                    {"location": "primary", "path": str(stored)},
                    {"location": "dr", "path": str(copy)},
                ]
            ),
            "error": None,
        }
    except OSError as exc:
        stored.unlink(missing_ok=True)
        row |= {
            "state": "bad",
            "raw_bytes": 0,
            "stored_bytes": 0,
            "sha256": "",
            "manifest": "{}",
            "copies": "[]",
            "error": f"{type(exc).__name__}: {exc.strerror or exc}",
        }
    finally:
        scratch.unlink(missing_ok=True)
    return _record(db, row, t0, actor)


def app_state(workspace: Workspace, cfg: SandboxConfig, settings: Settings) -> dict[str, Any]:
    """The application state a recovery brings back beside the ledger (whose outbox holds the
    notifications): the environment file as it is (it holds no secret), the names of the
    secrets it may use (never their values) and the ledger's login role."""
    from opsbook.sandbox.credential import read as read_credential  # noqa: PLC0415

    text = Path(cfg.env_path).read_text(encoding="utf-8")
    secrets_dir = settings.secrets_dir_for(workspace.state_dir)
    refs = (
        sorted(p.name for p in secrets_dir.iterdir() if p.is_file()) if secrets_dir.is_dir() else []
    )
    cred = read_credential(cfg.data_path)
    role = cred.get("user") if cred else None
    return {
        "environment_file": {"path": cfg.env_path, "text": text},
        "secret_refs": refs,
        "ledger_role": role,
    }


def _take_pg(
    db: Database,
    *,
    workspace: Workspace,
    cfg: SandboxConfig,
    settings: Settings,
    actor: str,
    retention: str,
    kind: str,
) -> dict[str, Any]:
    from opsbook.backup import pgbackrest, pgbackups  # noqa: PLC0415
    from opsbook.backup.paths import pg_repo, pg_repo_dr  # noqa: PLC0415

    key = load_or_create_key(settings.secrets_dir_for(workspace.state_dir))
    started = datetime.now(UTC)
    bid = f"bk-{started:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"
    t0 = time.perf_counter()
    row: dict[str, Any] = {
        "id": bid,
        "environment": cfg.env_name,
        "database": "ledger",
        "method": f"pgbackrest-{kind}",
        "retention": retention,
        "started_at": _z(started),
        "key_id": key_id(key),
        "created_by": actor,
    }
    try:
        got = pgbackups.take(
            data_dir=cfg.data_path,
            key=key,
            primary_url=cfg.database_url,
            kind=kind,
            repo=pg_repo(workspace, cfg.env_name),
            dr_repo=pg_repo_dr(workspace, cfg.env_name),
        )
        row |= {
            "state": "ok",
            "method": got["method"],
            "raw_bytes": got["raw_bytes"],
            "stored_bytes": got["stored_bytes"],
            "sha256": got["sha256"],
            "manifest": json.dumps(
                {**got["manifest"], "app_state": app_state(workspace, cfg, settings)}
            ),
            "copies": json.dumps(got["copies"]),
            "error": None,
        }
    except (OSError, pgbackrest.BackRestError) as exc:
        error = (
            f"{type(exc).__name__}: {exc.strerror}"
            if isinstance(exc, OSError) and exc.strerror
            else str(exc)
        )
        row |= {
            "state": "bad",
            "raw_bytes": 0,
            "stored_bytes": 0,
            "sha256": "",
            "manifest": "{}",
            "copies": "[]",
            "error": error,
        }
    return _record(db, row, t0, actor)


def _record(db: Database, row: dict[str, Any], t0: float, actor: str) -> dict[str, Any]:
    bid = str(row["id"])
    row["finished_at"] = _z(datetime.now(UTC))
    row["duration_s"] = round(time.perf_counter() - t0, 3)
    with db.transaction():
        cols = list(row)
        db.execute(
            f"INSERT INTO backups ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",  # noqa: S608
            [row[c] for c in cols],
        )
        audit.record(
            db=db,
            actor=actor,
            action="backup.taken" if row["state"] == "ok" else "backup.failed",
            subject=f"backup:{bid}",
            payload={
                k: row[k] for k in ("environment", "state", "sha256", "stored_bytes", "error")
            },
        )
    out = get(db, bid)
    if row["state"] != "ok":
        raise BackupFailed(
            f"backup {bid} failed: {row['error']}", hint="opsbook backups show " + bid
        )
    return out


def _out(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for k in ("manifest", "copies", "verify_result"):
        out[k] = json.loads(row[k]) if row.get(k) else None
    return out


def get(db: Database, backup_id: str) -> dict[str, Any]:
    row = db.one("SELECT * FROM backups WHERE id = ?", (backup_id,))
    if row is None:
        raise NotFoundError(f"no backup {backup_id}", hint="opsbook backups list")
    return _out(row)


def list_backups(
    db: Database, *, environment: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    if environment:
        rows = db.query(
            "SELECT * FROM backups WHERE environment = ? ORDER BY started_at DESC LIMIT ?",
            (environment, limit),
        )
    else:
        rows = db.query("SELECT * FROM backups ORDER BY started_at DESC LIMIT ?", (limit,))
    return [_out(r) for r in rows]


def _restore_checked(
    b: dict[str, Any], key: bytes, target: Path
) -> tuple[list[str], dict[str, Any]]:
    """Restore the first copy whose checksum matches into ``target``; (problems, inspection)."""
    problems: list[str] = []
    good = None
    for c in b["copies"] or []:
        path = Path(c["path"])
        if not path.is_file():
            problems.append(f"{c['location']} copy {path}: missing")
        elif sha256_file(path) != b["sha256"]:
            problems.append(
                f"{c['location']} copy {path}: corrupted (SHA-256 differs from the catalogue)"
            )
        elif good is None:
            good = path
    if good is None:
        return problems or ["no copy to restore from"], {}
    if b["key_id"] != key_id(key):
        return [*problems, f"wrong encryption key: the backup was made with key {b['key_id']}"], {}
    try:
        decrypt_file(good, target, key)
    except DecryptError as exc:
        return [*problems, f"{good}: {exc}"], {}
    found = inspect(target)
    want = b["manifest"] or {}
    if found["integrity"] != "ok":
        problems.append(f"integrity check: {found['integrity']}")
    for t, n in (want.get("counts") or {}).items():
        if found["counts"].get(t) != n:
            problems.append(f"{t}: {found['counts'].get(t)} rows restored, the manifest says {n}")
    for k in ("unbalanced_transfers", "balances_not_matching_entries", "journal_gaps"):
        if found[k]:
            problems.append(f"ledger invariant: {k.replace('_', ' ')} = {found[k]}")
    return problems, found


def _restore_checked_pg(
    b: dict[str, Any], key: bytes, cfg: SandboxConfig
) -> tuple[list[str], dict[str, Any]]:
    """pgbackrest verify on each copy, then a restore of the first good one into a scratch
    instance: its counts against the manifest and the ledger invariants."""
    from opsbook.backup import pgbackrest, pgbackups  # noqa: PLC0415

    problems: list[str] = []
    if b["key_id"] != key_id(key):
        return [f"wrong encryption key: the backup was made with key {b['key_id']}"], {}
    label = str((b["manifest"] or {}).get("label"))
    for c in b["copies"] or []:
        where = f"{c['location']} copy"
        path, repo = Path(c["path"]), Path(c["repo"])
        if not path.is_file():
            problems.append(f"{where} {path}: missing")
            continue
        if pgbackups.sha256(path) != b["sha256"]:
            problems.append(f"{where} {path}: its manifest differs from the catalogue")
            continue
        # pgBackRest's restore checks every file's checksum as it restores it; when it fails,
        # `pgbackrest verify` names what is damaged.
        try:
            with pgbackups.scratch_instance(
                data_dir=cfg.data_path, key=key, label=label, repo=repo
            ) as (url, took, _pgdata, _port):
                restored = pgbackups.inspect_url(url)
        except OpsbookError as exc:
            found = pgbackrest.verify_repo(cfg.data_path, key, repo=repo, label=label)
            problems += [f"{where} {repo}: {p}" for p in found] or [
                f"{where}: restore of {label} from {repo} failed: {exc}"
            ]
            continue
        restored["restore_s"] = round(took, 3)
        restored["restored_from"] = c["location"]
        return [*problems, *pgbackups.check_restored(b["manifest"] or {}, restored)], restored
    return problems or ["no copy to restore from"], {}


def verify(
    db: Database, *, workspace: Workspace, settings: Settings, backup_id: str, actor: str
) -> dict[str, Any]:
    b = get(db, backup_id)
    if b["state"] == "bad" and not b["copies"]:
        raise BackupFailed(f"backup {backup_id} never completed: {b['error']}")
    key = load_or_create_key(settings.secrets_dir_for(workspace.state_dir))
    t0 = time.perf_counter()
    if str(b["method"]).startswith("pgbackrest"):
        problems, found = _restore_checked_pg(b, key, _ledger(workspace, b["environment"]))
    else:
        with tempfile.TemporaryDirectory(prefix="opsbook-verify-") as tmp:
            problems, found = _restore_checked(b, key, Path(tmp) / "ledger.db")
    took = round(time.perf_counter() - t0, 3)
    result = {"ok": not problems, "problems": problems, "restored": found}
    with db.transaction():
        db.execute(
            "UPDATE backups SET verified_at = ?, verify_ok = ?, verify_duration_s = ?,"
            " verify_result = ?, state = ? WHERE id = ?",
            (
                _z(datetime.now(UTC)),
                1 if not problems else 0,
                took,
                json.dumps(result),
                "ok" if not problems else "bad",
                backup_id,
            ),
        )
        audit.record(
            db=db,
            actor=actor,
            action="backup.verified" if not problems else "backup.verification_failed",
            subject=f"backup:{backup_id}",
            payload={"ok": not problems, "problems": problems, "restore_s": took},
        )
    return get(db, backup_id)


def restore(
    db: Database,
    *,
    workspace: Workspace,
    settings: Settings,
    backup_id: str,
    target: Path,
    actor: str,
) -> dict[str, Any]:
    """Restore into a new file (never over anything): the checks as verify does them."""
    if target.exists():
        raise UsageError(f"{target} exists: a restore never overwrites", field="--to")
    b = get(db, backup_id)
    key = load_or_create_key(settings.secrets_dir_for(workspace.state_dir))
    target.parent.mkdir(parents=True, exist_ok=True)
    problems, found = _restore_checked(b, key, target)
    if problems:
        target.unlink(missing_ok=True)
    audit.record(
        db=db,
        actor=actor,
        action="backup.restored" if not problems else "backup.restore_failed",
        subject=f"backup:{backup_id}",
        payload={"to": str(target), "problems": problems},
    )
    if problems:
        raise BackupFailed(f"backup {backup_id} does not restore: {'; '.join(problems)}")
    return {"backup": backup_id, "to": str(target), "restored": found}


def prune(
    db: Database,
    *,
    workspace: Workspace,
    settings: Settings,
    environment: str,
    keep: int,
    actor: str,
) -> dict[str, Any]:
    """Retention: keep the newest ``keep`` full backups (and what depends on them). On
    PostgreSQL ``pgbackrest expire`` (the DR mirror follows); on SQLite the older backups'
    files are removed. Their catalogue rows stay, marked ``expired``: the record is evidence."""
    cfg = _ledger(workspace, environment)
    expired: list[str] = []
    if cfg.managed_postgres:
        from opsbook.backup import pgbackrest, pgbackups  # noqa: PLC0415
        from opsbook.backup.paths import pg_repo, pg_repo_dr  # noqa: PLC0415

        key = load_or_create_key(settings.secrets_dir_for(workspace.state_dir))
        pgbackrest.run(cfg.data_path, key, "expire", f"--repo1-retention-full={keep}")
        pgbackups.mirror(
            pg_repo(workspace, environment), pg_repo_dr(workspace, environment), delete=True
        )
        labels = {b["label"] for b in pgbackrest.info(cfg.data_path, key).get("backup", [])}
        for b in list_backups(db, environment=environment, limit=10_000):
            label = (b["manifest"] or {}).get("label")
            if b["state"] == "ok" and label and label not in labels:
                expired.append(b["id"])
    else:
        good = [
            b
            for b in list_backups(db, environment=environment, limit=10_000)
            if b["state"] == "ok" and not str(b["method"]).startswith("pgbackrest")
        ]
        for b in good[keep:]:
            for c in b["copies"] or []:
                Path(c["path"]).unlink(missing_ok=True)
            expired.append(b["id"])
    with db.transaction():
        for bid in expired:
            db.execute("UPDATE backups SET state = 'expired' WHERE id = ?", (bid,))
        audit.record(
            db=db,
            actor=actor,
            action="backup.pruned",
            subject=f"backups:{environment}",
            payload={"keep": keep, "expired": expired},
        )
    return {"environment": environment, "keep": keep, "expired": expired}
