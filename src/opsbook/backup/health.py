"""Backup freshness and health as checks, in the Barman manner (issue 13): each has a name, a
status, whether it is critical, what it saw and the fix. Critical failures fail `opsbook backups
check` (exit 1) and, from `opsbook serve`, raise an alert linking the backup runbook.

``[backups]`` in opsbook.toml: ``max_age`` (default 26h: a daily backup plus slack),
``verify_max_age`` (26h), ``min_size`` (bytes, default 1024), ``dr_location``."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from opsbook.backup.check import Check
from opsbook.backup.crypto import sha256_file
from opsbook.errors import OpsbookError, ValidationError

if TYPE_CHECKING:
    from opsbook.db import Database
    from opsbook.workspace import Workspace

RUNBOOK = "backup-recovery#backup-verification"


def _settings(ws: Workspace) -> tuple[float, float, int]:
    from opsbook.durations import duration_seconds  # noqa: PLC0415

    raw = ws.config.get("backups") or {}
    try:
        max_age = duration_seconds(raw.get("max_age", "26h"))
        verify_age = duration_seconds(raw.get("verify_max_age", "26h"))
        min_size = int(raw.get("min_size", 1024))
    except (ValueError, TypeError) as exc:
        raise ValidationError(f"[backups] in opsbook.toml: {exc}", field="backups") from None
    return max_age, verify_age, min_size


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def check(
    db: Database, *, workspace: Workspace, environment: str, now: datetime | None = None
) -> list[Check]:
    when = now or datetime.now(UTC)
    max_age, verify_age, min_size = _settings(workspace)
    last = db.one(
        "SELECT * FROM backups WHERE environment = ? ORDER BY started_at DESC LIMIT 1",
        (environment,),
    )
    take = "opsbook backups take --verify"
    if last is None:
        return [
            Check("backup exists", False, True, f"no backup of {environment}", take),
            *_pg_checks(workspace, environment, when),
        ]
    good = db.one(
        "SELECT * FROM backups WHERE environment = ? AND state = 'ok'"
        " ORDER BY started_at DESC LIMIT 1",
        (environment,),
    )
    out = [
        Check(
            "last backup ok",
            last["state"] == "ok",
            True,
            f"{last['id']} is {last['state']}" + (f": {last['error']}" if last["error"] else ""),
            f"opsbook backups show {last['id']}; then {take}",
        )
    ]
    if good is None:
        return [
            *out,
            Check("backup maximum age", False, True, "no good backup at all", take),
            *_pg_checks(workspace, environment, when),
        ]
    age = when - _ts(str(good["finished_at"]))
    out.append(
        Check(
            "backup maximum age",
            age <= timedelta(seconds=max_age),
            True,
            f"the last good backup {good['id']} is {age.total_seconds() / 3600:.1f} h old"
            f" (at most {max_age / 3600:g} h)",
            "is `opsbook serve` running (it takes one daily)? " + take,
        )
    )
    # The size of the database backed up (an incremental pgBackRest backup, or a compressed
    # small ledger, stores far less): an empty one is not a backup.
    size = int(good["raw_bytes"] or 0)
    out.append(
        Check(
            "backup minimum size",
            size >= min_size,
            True,
            f"{size} bytes in the database backed up (at least {min_size})",
            "an empty backup is not a backup: check the ledger path and take another",
        )
    )
    verified = db.one(
        "SELECT * FROM backups WHERE environment = ? AND verify_ok = 1"
        " ORDER BY verified_at DESC LIMIT 1",
        (environment,),
    )
    vage = when - _ts(str(verified["verified_at"])) if verified else None
    out.append(
        Check(
            "last verified restore age",
            vage is not None and vage <= timedelta(seconds=verify_age),
            True,
            "never verified by restore"
            if vage is None
            else f"{verified['id']} restored and checked {vage.total_seconds() / 3600:.1f} h ago"  # type: ignore[index]
            f" (at most {verify_age / 3600:g} h)",
            "opsbook backups verify",
        )
    )
    copies = json.loads(good["copies"] or "[]")
    dr = [c for c in copies if c.get("location") == "dr"]
    dr_ok = (
        bool(dr)
        and Path(dr[0]["path"]).is_file()
        and sha256_file(Path(dr[0]["path"])) == good["sha256"]
    )
    out.append(
        Check(
            "copy in the DR location",
            dr_ok,
            True,
            f"{dr[0]['path']} {'matches' if dr_ok else 'is missing or differs'}"
            if dr
            else "no DR copy recorded",
            "check [backups] dr_location and take another backup",
        )
    )
    failed = db.one(
        "SELECT COUNT(*) AS n FROM backups WHERE environment = ? AND state = 'bad'"
        " AND started_at >= ?",
        (environment, (when - timedelta(days=7)).isoformat().replace("+00:00", "Z")),
    )
    n = int(failed["n"]) if failed else 0
    out += _pg_checks(workspace, environment, when)
    out.append(
        Check(
            "failed backups",
            n == 0,
            False,
            f"{n} bad backup(s) in the last 7 days",
            "opsbook backups list shows them and why",
        )
    )
    return out


def alert_failures(db: Database, *, environment: str, checks: list[Check], actor: str) -> int:
    """One firing alert per failing critical check (resolved when it passes again)."""
    from opsbook.monitoring.alerts import IncomingAlert, ingest, iso  # noqa: PLC0415

    stamp = iso(datetime.now(UTC))
    firing = {
        str(r["fingerprint"])
        for r in db.query(
            "SELECT fingerprint FROM mon_alerts WHERE status = 'firing' AND fingerprint LIKE ?",
            (f"backup-{environment}-%",),
        )
    }
    alerts = [
        IncomingAlert(
            fingerprint=f"backup-{environment}-{c.name.replace(' ', '-')}",
            status="firing" if not c.ok else "resolved",
            labels={
                "alertname": "BackupCheckFailed",
                "check": c.name,
                "environment": environment,
                "service": "ledger",
                "severity": "critical",
            },
            annotations={"summary": f"backup check '{c.name}': {c.detail}", "runbook": RUNBOOK},
            starts_at=stamp,
            ends_at=None if not c.ok else stamp,
        )
        for c in checks
        if c.critical and (not c.ok or f"backup-{environment}-{c.name.replace(' ', '-')}" in firing)
    ]
    if alerts:
        ingest(db, alerts=alerts, source="backups", actor=actor, runbook_for=lambda a: RUNBOOK)
    return sum(1 for c in checks if c.critical and not c.ok)


def _pg_checks(workspace: Workspace, environment: str, when: datetime) -> list[Check]:
    """The WAL archive and the DR replica, when the sandbox runs its ledger on PostgreSQL."""
    from opsbook.sandbox.lifecycle import load_config  # noqa: PLC0415

    try:
        cfg = load_config(workspace=workspace, env_name=environment)
    except OpsbookError:  # not a sandbox environment: nothing to add
        return []
    if not cfg.managed_postgres:
        if not cfg.database_url.startswith("sqlite:///"):
            return []
        from opsbook.backup import sqlite_dr  # noqa: PLC0415

        return list(sqlite_dr.checks(workspace=workspace, cfg=cfg))
    from opsbook.backup import pghealth  # noqa: PLC0415

    return pghealth.checks(workspace=workspace, data_dir=cfg.data_path, now=when)
