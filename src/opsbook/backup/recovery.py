"""Point-in-time recovery of the sandbox ledger on PostgreSQL (issue 13), in two halves with a
four-eyes approval between them (the runbook ``backup-recovery#point-in-time-recovery`` does
the approval; ``opsbook recover`` starts it):

1. **prepare**: pgBackRest restores the ledger as it was at the target (a time, a transaction id
   or a named restore point) into a NEW instance, which is started and checked (the ledger
   invariants), and what would be lost is shown: the transfers committed on the live ledger
   after the target. Nothing running is touched.
2. **cut over**: the new instance gets WAL archiving (a new timeline in the same repository),
   the services are pointed at it (the endpoint file, between two queries), the old primary is
   retired (stopped, its data kept). The outbox is part of the ledger and comes back with it.

A target outside the recovery window (before the oldest backup, or in the future) is refused
before anything is restored (exit 2)."""

from __future__ import annotations

import contextlib
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opsbook import audit
from opsbook.backup import pgbackrest, pgbackups
from opsbook.backup.crypto import load_or_create_key
from opsbook.errors import ConflictError, OpsbookError, UsageError
from opsbook.sandbox import pgcluster

if TYPE_CHECKING:
    from opsbook.config import Settings
    from opsbook.db import Database
    from opsbook.sandbox.config import SandboxConfig
    from opsbook.workspace import Workspace

TARGET_KINDS = ("time", "xid", "name")


def parse_time(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"{text!r} is not a time", field="--to", hint="ISO 8601 UTC, e.g. 2026-12-04T05:30:00Z"
        ) from None
    if when.tzinfo is None:
        raise UsageError(
            f"{text!r} has no time zone", field="--to", hint="end it with Z (UTC) or +00:00"
        )
    return when.astimezone(UTC)


def _cfg(workspace: Workspace, environment: str) -> SandboxConfig:
    from opsbook.backup.catalogue import _ledger  # noqa: PLC0415

    cfg = _ledger(workspace, environment)
    if not cfg.managed_postgres:
        raise UsageError(
            "point-in-time recovery needs the ledger on PostgreSQL (WAL archive)",
            field="--env",
            hint="opsbook sandbox down; opsbook sandbox up --db postgres (SQLite backups restore"
            " whole: opsbook backups restore)",
        )
    return cfg


def window(*, workspace: Workspace, settings: Settings, environment: str) -> dict[str, Any]:
    """The recovery window: from the end of the oldest backup to now (the WAL archive)."""
    cfg = _cfg(workspace, environment)
    key = load_or_create_key(settings.secrets_dir_for(workspace.state_dir))
    info = pgbackrest.info(cfg.data_path, key)
    backups = info.get("backup") or []
    if not backups:
        raise UsageError("there is no backup to recover from", hint="opsbook backups take --verify")
    earliest = datetime.fromtimestamp(int(backups[0]["timestamp"]["stop"]), UTC)
    wal = (info.get("archive") or [{}])[-1]
    return {
        "earliest": earliest.isoformat().replace("+00:00", "Z"),
        "latest": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "backups": len(backups),
        "wal": {"min": wal.get("min"), "max": wal.get("max")},
    }


def check_target(kind: str, value: str, win: dict[str, Any]) -> str:
    if kind not in TARGET_KINDS:
        raise UsageError(f"unknown target kind {kind!r}", hint="--to, --to-xid or --to-name")
    if kind == "time":
        when = parse_time(value)
        earliest = parse_time(win["earliest"])
        if when < earliest or when > datetime.now(UTC):
            raise UsageError(
                f"{value} is outside the recovery window {win['earliest']} .. now",
                field="--to",
                hint="choose a time after the end of the oldest backup and not in the future"
                " (opsbook recover window)",
            )
        return when.strftime("%Y-%m-%d %H:%M:%S.%f+00")
    if kind == "xid" and not value.isdigit():
        raise UsageError(f"{value!r} is not a transaction id", field="--to-xid", hint="e.g. 1234")
    if kind == "name" and not value.replace("-", "").replace("_", "").isalnum():
        raise UsageError(f"{value!r} is not a restore point name", field="--to-name")
    return value


def _archive_now(primary: pgcluster.Cluster) -> None:
    """Close the current WAL segment and wait for it to be archived, so the target is in the
    archive (when the primary is up; after its loss the archive is all there is)."""
    with contextlib.suppress(pgcluster.PgError):
        wal = pgcluster.sql(primary, "SELECT pg_walfile_name(pg_switch_wal())", db="postgres")
        name = str(wal[0][0])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            row = pgcluster.sql(
                primary, "SELECT last_archived_wal FROM pg_stat_archiver", db="postgres"
            )
            if row and row[0][0] and str(row[0][0]) >= name:
                return
            time.sleep(0.1)


def prepare(
    db: Database,
    *,
    workspace: Workspace,
    settings: Settings,
    environment: str,
    kind: str,
    value: str,
    actor: str,
    execution_id: str | None = None,
) -> dict[str, Any]:
    """Restore the ledger at the target into a new instance; what it holds and what is lost."""
    cfg = _cfg(workspace, environment)
    key = load_or_create_key(settings.secrets_dir_for(workspace.state_dir))
    win = window(workspace=workspace, settings=settings, environment=environment)
    target = check_target(kind, value, win)
    reg = pgcluster.load_registry(cfg.data_path)
    live = reg.current()
    _archive_now(live)
    from opsbook.sandbox.config import free_port  # noqa: PLC0415

    name = f"pitr-{datetime.now(UTC):%Y%m%d%H%M%S}"
    port = free_port()
    pgdata = reg.path_of(name)
    t0 = time.perf_counter()
    try:
        pgbackrest.restore(cfg.data_path, key, target_dir=pgdata, target=(kind, target))
        cluster = pgcluster.Cluster(name, port, "recovered", live.region, note=f"{kind} {value}")
        pgcluster.write_conf(reg, cluster, archive_command=None)
        reg.put(cluster)
        pgcluster.start(reg, cluster, env=pgbackrest.cipher_env(key), timeout=600)
        _wait_promoted(reg, cluster)
    except OpsbookError as exc:
        if name in reg.clusters:
            with contextlib.suppress(OpsbookError):
                pgcluster.stop(reg, reg.clusters[name], mode="immediate")
        reg.clusters.pop(name, None)
        reg.save()
        shutil.rmtree(pgdata, ignore_errors=True)
        why = _log_reasons(reg.base / f"{name}.log")
        if why:
            exc = OpsbookError(f"{exc}; the server said: {why}")
        audit.record(
            db=db,
            actor=actor,
            action="backup.recovery_failed",
            subject=f"ledger:{environment}",
            payload={"target": {kind: value}, "error": str(exc)},
        )
        raise OpsbookError(
            f"point-in-time recovery to {kind} {value} failed: {exc}",
            hint="nothing running was touched; check the target against `opsbook recover window`",
        ) from None
    restored = pgbackups.inspect_url(cluster.url())
    took = time.perf_counter() - t0
    app = _restore_app_state(
        db,
        workspace=workspace,
        settings=settings,
        environment=environment,
        kind=kind,
        value=value,
        instance=name,
        cluster=cluster,
    )
    lost = _lost(live, restored)
    problems = [
        f"ledger invariant: {k.replace('_', ' ')} = {restored[k]}"
        for k in pgbackups.INVARIANTS
        if restored[k]
    ]
    out = {
        "environment": environment,
        "instance": name,
        "port": port,
        "target": {"kind": kind, "value": value},
        "restored": restored,
        "lost": lost,
        "invariants_ok": not problems,
        "problems": problems,
        "restore_s": round(took, 3),
        "app_state": app,
        "live": live.name,
        "next": f"approve, then cut over: opsbook recover cutover {name} --env {environment}",
    }
    with db.transaction():
        audit.record(
            db=db,
            actor=actor,
            action="backup.recovery_prepared",
            subject=f"ledger:{environment}",
            payload={
                "instance": name,
                "target": {kind: value},
                "lost_transfers": lost.get("transfers"),
                "invariants_ok": not problems,
                "execution": execution_id,
            },
        )
    return out


def _restore_app_state(
    db: Database,
    *,
    workspace: Workspace,
    settings: Settings,
    environment: str,
    kind: str,
    value: str,
    instance: str,
    cluster: pgcluster.Cluster,
) -> dict[str, Any]:
    """Bring back the application state of the newest backup at or before the target into
    ``.opsbook/recovery/<instance>/`` (the environment file as it was, the secret names it
    had): for review beside the live ones, never over them (opsbook rewrites ports and URLs in
    the live file). The notification outbox is in the recovered ledger itself."""
    import json  # noqa: PLC0415

    rows = db.query(
        "SELECT id, started_at, manifest FROM backups WHERE environment = ? AND state = 'ok'"
        " ORDER BY started_at DESC",
        (environment,),
    )
    limit = parse_time(value).isoformat() if kind == "time" else None
    chosen = next(
        (r for r in rows if limit is None or str(r["started_at"]).replace("Z", "+00:00") <= limit),
        None,
    )
    outbox = pgcluster.sql(
        cluster, "SELECT status, COUNT(*) FROM outbox GROUP BY status ORDER BY status"
    )
    out: dict[str, Any] = {"outbox": {str(s): int(n) for s, n in outbox}}
    state = (json.loads(chosen["manifest"] or "{}").get("app_state") if chosen else None) or {}
    if not state:
        return {**out, "from_backup": None, "note": "no backup at or before the target records it"}
    target = workspace.state_dir / "recovery" / instance
    target.mkdir(parents=True, exist_ok=True)
    env_file = state.get("environment_file") or {}
    (target / "environment.yaml").write_text(str(env_file.get("text", "")), encoding="utf-8")
    live_dir = settings.secrets_dir_for(workspace.state_dir)
    live = {p.name for p in live_dir.iterdir()} if live_dir.is_dir() else set()
    refs = list(state.get("secret_refs") or [])
    (target / "secret-refs.json").write_text(json.dumps(refs, indent=2), encoding="utf-8")
    current = (
        Path(str(env_file.get("path", ""))).read_text(encoding="utf-8")
        if env_file.get("path") and Path(str(env_file["path"])).is_file()
        else ""
    )
    return {
        **out,
        "from_backup": chosen["id"] if chosen else None,
        "saved_to": str(target),
        "environment_file_changed_since": current != env_file.get("text"),
        "secret_refs": refs,
        "secret_refs_missing": sorted(set(refs) - live),
        "ledger_role": state.get("ledger_role"),
    }


def _log_reasons(log: Path) -> str:
    """The lines of a failed recovery's server log that say why (a missing WAL segment, the
    target not reached)."""
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    keys = ("FATAL", "could not", "unable to find", "recovery ended", "ERROR")
    found = [ln.split(":  ", 1)[-1].strip() for ln in lines if any(k in ln for k in keys)]
    return " | ".join(dict.fromkeys(found[-4:]))


def _wait_promoted(
    reg: pgcluster.Registry, cluster: pgcluster.Cluster, timeout: float = 600
) -> None:
    """Until recovery ends; a server that stopped (recovery failed) is an error at once."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pgcluster.running(reg, cluster):
            raise OpsbookError(f"{cluster.name} stopped during recovery")
        with contextlib.suppress(pgcluster.PgError):
            row = pgcluster.sql(cluster, "SELECT pg_is_in_recovery()", db="postgres")
            if row and not row[0][0]:
                return
        time.sleep(0.1)
    raise OpsbookError(f"{cluster.name} did not finish recovery within {timeout:g}s")


def _lost(live: pgcluster.Cluster, restored: dict[str, Any]) -> dict[str, Any]:
    """The transfers on the live ledger after the restored one's last: what the cut-over loses."""
    last = int(restored["last_ids"]["transfers"])
    try:
        rows = pgcluster.sql(
            live,
            "SELECT COUNT(*), COALESCE(SUM(amount_cents), 0), MIN(created_at), MAX(created_at)"
            " FROM transfers WHERE id > %s",
            (last,),
        )
    except pgcluster.PgError as exc:
        return {"known": False, "why": f"the live ledger cannot be read: {exc}"}
    n, amount, first, newest = rows[0]
    return {
        "known": True,
        "transfers": int(n),
        "amount_cents": int(amount),
        "first_at": first,
        "last_at": newest,
        "after_transfer_id": last,
    }


def cutover(
    db: Database,
    *,
    workspace: Workspace,
    settings: Settings,
    environment: str,
    instance: str,
    actor: str,
    execution_id: str | None = None,
) -> dict[str, Any]:
    """Make the recovered instance the primary: archiving on, services pointed at it, the old
    primary retired (stopped, data kept). Seconds taken and where things are now."""
    from opsbook.backup.pgsetup import make_primary  # noqa: PLC0415

    cfg = _cfg(workspace, environment)
    key = load_or_create_key(settings.secrets_dir_for(workspace.state_dir))
    reg = pgcluster.load_registry(cfg.data_path)
    new = reg.get(instance)
    if new.role != "recovered":
        raise ConflictError(
            f"{instance} is {new.role}, not a recovered instance waiting for its cut-over",
            hint="opsbook dr status lists the clusters",
        )
    if not pgcluster.running(reg, new):
        raise ConflictError(f"{instance} is not running", hint="prepare the recovery again")
    old = reg.current()
    t0 = time.perf_counter()
    pgcluster.enable_archiving(reg, new, archive_command=pgbackrest.archive_command(cfg.data_path))
    pgcluster.stop(reg, new)
    pgcluster.start(reg, new, env=pgbackrest.cipher_env(key))
    pgcluster.wait_ready(new)
    make_primary(
        workspace=workspace,
        cfg=cfg,
        reg=reg,
        cluster=new,
        reason=f"recovery {instance}",
        replaced=old,  # stopped after the services moved (its last WAL archived as before)
        replaced_role="retired",
        replaced_note=f"replaced by {instance}",
    )
    stale = [c.name for c in reg.clusters.values() if c.role == "replica"]
    took = time.perf_counter() - t0
    out = {
        "environment": environment,
        "primary": new.name,
        "port": new.port,
        "retired": old.name,
        "cutover_s": round(took, 3),
        "replicas_to_reseed": stale,
        "next": "take a full backup now (a new timeline): opsbook backups take --verify",
    }
    with db.transaction():
        audit.record(
            db=db,
            actor=actor,
            action="backup.recovery_cutover",
            subject=f"ledger:{environment}",
            payload={**out, "execution": execution_id},
        )
    return out


def discard(
    db: Database, *, workspace: Workspace, environment: str, instance: str, actor: str
) -> dict[str, Any]:
    """Stop and remove a recovered instance that was not cut over."""
    cfg = _cfg(workspace, environment)
    reg = pgcluster.load_registry(cfg.data_path)
    cluster = reg.get(instance)
    if cluster.role != "recovered":
        raise ConflictError(f"{instance} is {cluster.role}: only a recovered instance is discarded")
    pgcluster.stop(reg, cluster, mode="immediate")
    shutil.rmtree(reg.path_of(instance), ignore_errors=True)
    reg.clusters.pop(instance)
    reg.save()
    with db.transaction():
        audit.record(
            db=db,
            actor=actor,
            action="backup.recovery_discarded",
            subject=f"ledger:{environment}",
            payload={"instance": instance},
        )
    return {"discarded": instance}
