"""The DR region of the sandbox (issue 13): the seed's West US 2 as a PostgreSQL streaming
replica of the ledger (synchronous or asynchronous), failover with measured RPO and RTO, and
failback that re-seeds the old primary as a replica and moves the primary home.

- **setup**: ``pg_basebackup`` of the primary into ``westus2``, streaming; with ``sync`` the
  primary waits for it on every commit (``synchronous_standby_names``), so no committed
  transfer can be lost by a failover.
- **failover** (the primary region is lost): declared at t0; the old primary is fenced (stopped
  at once, as a lost region would be); the replica is promoted; the services are pointed at it
  (the endpoint file, a failover group's listener); RTO ends when every service answers healthy
  and the ledger invariants hold on the new primary. RPO is then measured from the fenced
  primary's own data (started on a scratch port, read-only use): the committed transfers it
  has that the new primary does not, and the seconds between the newest of each.
- **failback**: the old primary is re-seeded from the new one, caught up, and a planned
  switchover (no loss: the old primary shut down cleanly sends every WAL record) moves the
  primary back, then the DR region is re-seeded as its replica.

The targets are ``[backups] rto`` (default 30s) and ``rpo_transfers`` (default 0) in
opsbook.toml."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opsbook import audit
from opsbook.backup import pgbackrest, pgbackups
from opsbook.backup.probe import ledger_write_ok, record_failover, services_healthy, ts
from opsbook.errors import ConflictError, OpsbookError, UsageError
from opsbook.sandbox import endpoint, pgcluster

if TYPE_CHECKING:
    from opsbook.config import Settings
    from opsbook.db import Database
    from opsbook.sandbox.config import SandboxConfig
    from opsbook.workspace import Workspace


def _cfg(workspace: Workspace, environment: str) -> SandboxConfig:
    from opsbook.backup.catalogue import _ledger  # noqa: PLC0415

    cfg = _ledger(workspace, environment)
    if not cfg.managed_postgres:
        raise UsageError(
            "the DR region needs the ledger on PostgreSQL (streaming replication)",
            field="--env",
            hint="opsbook sandbox down; opsbook sandbox up --db postgres",
        )
    return cfg


def _any(workspace: Workspace, environment: str) -> SandboxConfig:
    """The sandbox's config, its ledger on PostgreSQL (streaming) or SQLite (log shipping)."""
    from opsbook.backup.catalogue import _ledger  # noqa: PLC0415

    return _ledger(workspace, environment)


def _key(workspace: Workspace, settings: Settings) -> bytes:
    from opsbook.backup.crypto import load_or_create_key  # noqa: PLC0415

    return load_or_create_key(settings.secrets_dir_for(workspace.state_dir))


def targets(workspace: Workspace) -> dict[str, float]:
    from opsbook.durations import duration_seconds  # noqa: PLC0415

    raw = workspace.config.get("backups") or {}
    try:
        return {
            "rto_s": duration_seconds(raw.get("rto", "30s")),
            "rpo_transfers": float(raw.get("rpo_transfers", 0)),
        }
    except (TypeError, ValueError) as exc:
        raise UsageError(f"[backups] in opsbook.toml: {exc}", field="backups") from None


def status(*, workspace: Workspace, environment: str) -> dict[str, Any]:
    cfg = _any(workspace, environment)
    if not cfg.managed_postgres:
        from opsbook.backup import sqlite_dr  # noqa: PLC0415

        return sqlite_dr.status(workspace=workspace, cfg=cfg, targets=targets(workspace))
    reg = pgcluster.load_registry(cfg.data_path)
    repl: dict[str, Any] = {}
    with contextlib.suppress(pgcluster.PgError):
        for name, state, sync, lag_s, lag_b in pgcluster.sql(
            reg.current(),
            "SELECT application_name, state, sync_state,"
            " EXTRACT(EPOCH FROM COALESCE(replay_lag, interval '0'))::float,"
            " pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint FROM pg_stat_replication",
        ):
            repl[str(name)] = {
                "state": state,
                "sync_state": sync,
                "lag_s": round(float(lag_s), 3),
                "lag_bytes": int(lag_b or 0),
            }
    clusters = []
    for c in reg.clusters.values():
        clusters.append(
            {
                "name": c.name,
                "region": c.region,
                "role": c.role,
                "port": c.port,
                "running": pgcluster.running(reg, c),
                "sync": c.sync,
                "upstream": c.upstream,
                "replication": repl.get(c.name),
                "note": c.note,
            }
        )
    return {
        "environment": environment,
        "primary": reg.primary,
        "endpoint": endpoint.read(cfg.data_path),
        "clusters": clusters,
        "targets": targets(workspace),
    }


def setup(
    db: Database,
    *,
    workspace: Workspace,
    settings: Settings,
    environment: str,
    sync: bool | None,
    actor: str,
) -> dict[str, Any]:
    """Make (or re-seed) the DR replica of the current primary. ``sync`` (default on
    PostgreSQL): a synchronous standby; SQLite ships its journal asynchronously."""
    from opsbook.sandbox.config import free_port  # noqa: PLC0415

    cfg = _any(workspace, environment)
    if not cfg.managed_postgres:
        if sync:
            raise UsageError(
                "a synchronous replica needs the ledger on PostgreSQL; SQLite ships its journal"
                " asynchronously",
                field="--sync",
                hint="opsbook dr setup --async, or opsbook sandbox up --db postgres",
            )
        from opsbook.backup import sqlite_dr  # noqa: PLC0415

        return sqlite_dr.setup(db, cfg=cfg, actor=actor)
    sync = True if sync is None else sync
    reg = pgcluster.load_registry(cfg.data_path)
    primary = reg.current()
    name = pgcluster.DR_NAME if primary.name != pgcluster.DR_NAME else pgcluster.PRIMARY_NAME
    old = reg.clusters.get(name)
    if old is not None:
        pgcluster.stop(reg, old, mode="immediate")
    t0 = time.perf_counter()
    key = _key(workspace, settings)
    replica = pgcluster.add_replica(
        reg,
        name=name,
        port=old.port if old is not None else free_port(),
        upstream=primary,
        sync=sync,
        archive_command=pgbackrest.archive_command(cfg.data_path),
        env=pgbackrest.cipher_env(key),
    )
    _wait_streaming(primary, replica.name, sync=sync)
    from opsbook.sandbox.config import set_ledger_url  # noqa: PLC0415

    set_ledger_url(Path(cfg.env_path), pgcluster.listener_url(reg))
    out = {
        "environment": environment,
        "replica": replica.name,
        "region": replica.region,
        "port": replica.port,
        "of": primary.name,
        "mode": "synchronous" if sync else "asynchronous",
        "seeded_s": round(time.perf_counter() - t0, 3),
    }
    with db.transaction():
        audit.record(
            db=db,
            actor=actor,
            action="dr.replica_seeded",
            subject=f"ledger:{environment}",
            payload=out,
        )
    return out


def _wait_streaming(
    primary: pgcluster.Cluster, name: str, *, sync: bool = False, timeout: float = 60
) -> None:
    """Until ``name`` streams from the primary (and, with ``sync``, the primary waits for it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = pgcluster.sql(
            primary,
            "SELECT state, sync_state FROM pg_stat_replication WHERE application_name = %s",
            (name,),
        )
        if rows and rows[0][0] == "streaming" and (not sync or rows[0][1] == "sync"):
            return
        time.sleep(0.1)
    raise OpsbookError(f"{name} is not streaming from {primary.name} after {timeout:g}s")


def failover(
    db: Database,
    *,
    workspace: Workspace,
    settings: Settings,
    environment: str,
    actor: str,
    reason: str = "drill",
    execution_id: str | None = None,
) -> dict[str, Any]:
    """Lose the primary region and bring the ledger up in the DR region; RTO and RPO."""
    from opsbook.backup.pgsetup import make_primary  # noqa: PLC0415

    cfg = _any(workspace, environment)
    if not cfg.managed_postgres:
        from opsbook.backup import sqlite_dr  # noqa: PLC0415

        return sqlite_dr.failover(
            db,
            workspace=workspace,
            cfg=cfg,
            actor=actor,
            reason=reason,
            targets=targets(workspace),
            execution_id=execution_id,
        )
    reg = pgcluster.load_registry(cfg.data_path)
    old = reg.current()
    replicas = [c for c in reg.clusters.values() if c.role == "replica" and c.upstream == old.name]
    if not replicas:
        raise ConflictError(
            "there is no DR replica to fail over to", hint="opsbook dr setup --sync"
        )
    new = replicas[0]
    if not pgcluster.running(reg, new):
        raise ConflictError(f"the DR replica {new.name} is not running", hint="opsbook dr setup")
    key = _key(workspace, settings)
    declared = datetime.now(UTC)
    t0 = time.perf_counter()
    # 1. the primary region is lost: fenced at once (no clean shutdown, nothing more streams)
    pgcluster.stop(reg, old, mode="immediate")
    fenced = time.perf_counter() - t0
    # 2. promote; nobody writes to it until the endpoint moves, so its last id is the cut
    pgcluster.promote(reg, new)
    pgcluster.wait_ready(new)
    pgcluster.sql(new, "ALTER SYSTEM SET synchronous_standby_names = ''", db="postgres")
    pgcluster.sql(new, "SELECT pg_reload_conf()", db="postgres")
    cut = pgbackups.inspect_url(new.url())
    promoted = time.perf_counter() - t0
    # 3. repoint the services (the listener; the fenced primary left out of it, pgBackRest on
    #    the new one) and wait for every one to answer healthy
    make_primary(
        workspace=workspace,
        cfg=cfg,
        reg=reg,
        cluster=new,
        reason=f"failover: {reason}",
        replaced=old,  # already stopped (fenced) in step 1
        replaced_role="fenced",
        replaced_note=f"lost in failover at {declared:%Y-%m-%dT%H:%M:%SZ}",
    )
    services_healthy(cfg, timeout=120)
    ledger_write_ok(cfg)
    after = pgbackups.inspect_url(new.url())
    invariants_ok = not any(after[k] for k in pgbackups.INVARIANTS)
    rto = time.perf_counter() - t0
    # 4. RPO: what the fenced primary committed that the new one does not have
    rpo = _measure_rpo(reg, old, cut, key)
    return record_failover(
        db,
        environment=environment,
        actor=actor,
        execution_id=execution_id,
        targets=targets(workspace),
        rto=rto,
        rpo=rpo,
        reason=reason,
        declared=declared,
        old=old.name,
        new=new.name,
        mode="synchronous" if new.sync else "asynchronous",
        fenced_s=fenced,
        promoted_s=promoted,
        invariants_ok=invariants_ok,
        next_step="opsbook dr failback (re-seeds the old primary, then moves the primary home)",
    )


def _measure_rpo(
    reg: pgcluster.Registry, old: pgcluster.Cluster, cut: dict[str, Any], key: bytes
) -> dict[str, Any]:
    """Start the fenced primary's data on a scratch port (archiving off, no replication) and
    count the committed transfers after the promoted replica's last one."""
    import shutil  # noqa: PLC0415
    import tempfile  # noqa: PLC0415

    from opsbook.sandbox.config import free_port  # noqa: PLC0415

    scratch = Path(tempfile.mkdtemp(prefix="opsbook-rpo-"))
    scratch.chmod(0o711)
    copy = scratch / "data"
    port = free_port()
    try:
        shutil.copytree(reg.path_of(old.name), copy, symlinks=True)
        for name in ("postmaster.pid", "standby.signal", "recovery.signal"):
            (copy / name).unlink(missing_ok=True)
        for p in [copy, *copy.rglob("*")]:
            pgcluster.give(p)
        pgcluster.give(scratch)
        (scratch / "log").touch()
        pgcluster.give(scratch / "log")
        pgcluster.run(
            [
                pgcluster.pg_bin("pg_ctl"),
                "-D",
                str(copy),
                "-l",
                str(scratch / "log"),
                "-w",
                "-o",
                f"-p {port} -k {scratch} -c archive_mode=off -c listen_addresses=127.0.0.1"
                " -c synchronous_standby_names=''",
                "start",
            ],
            env=pgbackrest.cipher_env(key),
            timeout=120,
        )
        try:
            url = f"postgresql://{pgcluster.SUPERUSER}@127.0.0.1:{port}/{pgcluster.DATABASE}"
            last = int(cut["last_ids"]["transfers"])
            import psycopg  # noqa: PLC0415

            with psycopg.connect(url, connect_timeout=10) as conn:
                row = conn.execute(
                    "SELECT COUNT(*), MAX(created_at) FROM transfers WHERE id > %s", (last,)
                ).fetchone()
                lost_ids = [
                    str(r[0])
                    for r in conn.execute(
                        "SELECT request_id FROM transfers WHERE id > %s AND request_id IS NOT"
                        " NULL ORDER BY id LIMIT 200",
                        (last,),
                    ).fetchall()
                ]
            n, newest_lost = (int(row[0]), row[1]) if row else (0, None)
        finally:
            with contextlib.suppress(OpsbookError):
                pgcluster.run(
                    [pgcluster.pg_bin("pg_ctl"), "-D", str(copy), "-m", "immediate", "stop"]
                )
    except (OSError, OpsbookError) as exc:
        return {
            "transfers": None,
            "seconds": None,
            "why": f"the fenced primary cannot be read: {exc}",
        }
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    seconds = 0.0
    kept = cut.get("last_transfer_at")
    if n and newest_lost and kept:
        seconds = max(0.0, (ts(newest_lost) - ts(kept)).total_seconds())
    return {
        # on the old primary and not the new: this includes a commit in flight at the loss
        # (in the old primary's WAL, never acknowledged to its client: with a synchronous
        # replica the client waits for the replica before it is told "committed")
        "transfers": n,
        "seconds": round(seconds, 3),
        "after_transfer_id": cut["last_ids"]["transfers"],
        "lost_request_ids": lost_ids,  # the first 200: match them with the clients' answers
    }


def failback(
    db: Database,
    *,
    workspace: Workspace,
    settings: Settings,
    environment: str,
    actor: str,
    sync: bool = True,
) -> dict[str, Any]:
    """Re-seed the fenced primary from the DR primary, switch over to it without loss, and
    re-seed the DR region as its replica again."""
    from opsbook.backup.pgsetup import make_primary  # noqa: PLC0415

    cfg = _any(workspace, environment)
    if not cfg.managed_postgres:
        from opsbook.backup import sqlite_dr  # noqa: PLC0415

        return sqlite_dr.failback(db, cfg=cfg, actor=actor)
    reg = pgcluster.load_registry(cfg.data_path)
    current = reg.current()
    home = reg.clusters.get(pgcluster.PRIMARY_NAME)
    if home is None or current.name == pgcluster.PRIMARY_NAME:
        raise ConflictError(
            f"the primary is already {current.name} (home): nothing to fail back",
            hint="opsbook dr status",
        )
    key = _key(workspace, settings)
    env = pgbackrest.cipher_env(key)
    archive = pgbackrest.archive_command(cfg.data_path)
    t0 = time.perf_counter()
    # 1. the old primary becomes a synchronous replica of the current one
    pgcluster.add_replica(
        reg,
        name=home.name,
        port=home.port,
        upstream=current,
        sync=True,
        archive_command=archive,
        env=env,
    )
    _wait_streaming(current, home.name, sync=True)
    seeded = time.perf_counter() - t0
    # 2. planned switchover: a clean shutdown streams every WAL record to the sync replica
    t1 = time.perf_counter()
    pgcluster.stop(reg, current, mode="fast")
    pgcluster.promote(reg, reg.get(home.name))
    home = reg.get(home.name)
    pgcluster.wait_ready(home)
    pgcluster.sql(home, "ALTER SYSTEM SET synchronous_standby_names = ''", db="postgres")
    pgcluster.sql(home, "SELECT pg_reload_conf()", db="postgres")
    make_primary(workspace=workspace, cfg=cfg, reg=reg, cluster=home, reason="failback", note="")
    services_healthy(cfg, timeout=120)
    switched = time.perf_counter() - t1
    # 3. the DR region is a replica again
    dr = pgcluster.add_replica(
        reg,
        name=current.name,
        port=current.port,
        upstream=home,
        sync=sync,
        archive_command=archive,
        env=env,
    )
    _wait_streaming(home, dr.name, sync=sync)
    after = pgbackups.inspect_url(home.url())
    out = {
        "environment": environment,
        "primary": home.name,
        "replica": dr.name,
        "mode": "synchronous" if sync else "asynchronous",
        "reseeded_s": round(seeded, 3),
        "switchover_s": round(switched, 3),
        "took_s": round(time.perf_counter() - t0, 3),
        "invariants_ok": not any(after[k] for k in pgbackups.INVARIANTS),
    }
    with db.transaction():
        audit.record(
            db=db,
            actor=actor,
            action="dr.failback",
            subject=f"ledger:{environment}",
            payload=out,
        )
    return out


def drill_report(failover_out: dict[str, Any], failback_out: dict[str, Any] | None) -> str:
    """The DR drill report (Markdown), for the quarterly DR test evidence."""
    f = failover_out
    rpo = f["rpo"]
    lines = [
        f"# DR drill — {f['environment']} — {f['declared_at']}",
        "",
        f"Failover from **{f['from']}** to **{f['to']}** ({f['mode']} replica), reason: "
        f"{f['reason']}.",
        "",
        "| Measure | Result | Target | Met |",
        "|---|---|---|---|",
        f"| RTO (declared → every service healthy, invariants verified) | {f['rto_s']:.1f} s |"
        f" ≤ {f['targets']['rto_s']:g} s | {'yes' if f['met']['rto'] else 'NO'} |",
        f"| RPO (committed transfers lost) | {rpo.get('transfers')} |"
        f" ≤ {f['targets']['rpo_transfers']:g} | {'yes' if f['met']['rpo'] else 'NO'} |",
        f"| RPO (seconds of transfers lost) | {rpo.get('seconds')} s | | |",
        f"| Ledger invariants after failover | {'hold' if f['invariants_ok'] else 'BROKEN'} |"
        " hold | " + ("yes" if f["invariants_ok"] else "NO") + " |",
        "",
    ]
    if failback_out:
        b = failback_out
        lines += [
            f"Failback: {b['primary']} re-seeded in {b['reseeded_s']:.1f} s, switched over in"
            f" {b['switchover_s']:.1f} s without loss; {b['replica']} is a {b['mode']} replica"
            " again.",
            "",
        ]
    lines.append(
        "```json\n"
        + json.dumps({"failover": f, "failback": failback_out}, indent=2, default=str)
        + "\n```"
    )
    return "\n".join(lines) + "\n"


def drill(
    db: Database,
    *,
    workspace: Workspace,
    settings: Settings,
    environment: str,
    actor: str,
    sync: bool = True,
    rate: int = 20,
    progress: Callable[[str], Any] | None = None,
) -> dict[str, Any]:
    """A DR drill on the sandbox with the load generator running: (re)seed the replica in the
    mode asked, fail over, fail back; the measures and the customers' failed requests."""
    import asyncio  # noqa: PLC0415
    import threading  # noqa: PLC0415

    from opsbook.sandbox.load import run_load  # noqa: PLC0415

    say = progress or (lambda _line: None)
    cfg = _any(workspace, environment)
    if cfg.managed_postgres:
        reg = pgcluster.load_registry(cfg.data_path)
        primary = reg.current()
        ready = [
            c
            for c in reg.clusters.values()
            if c.role == "replica" and c.upstream == primary.name and c.sync == sync
        ]
        seeded = bool(ready) and pgcluster.running(reg, ready[0])
    else:
        sync = False  # SQLite ships its journal asynchronously
        from opsbook.sandbox import shipping  # noqa: PLC0415

        conf = shipping.read_json(shipping.dr_dir(cfg.data_path) / shipping.CONFIG) or {}
        seeded = bool(conf.get("enabled"))
    if not seeded:
        say(f"seeding the {'synchronous' if sync else 'asynchronous'} DR replica")
        setup(
            db,
            workspace=workspace,
            settings=settings,
            environment=environment,
            sync=sync,
            actor=actor,
        )
    urls = {s.name: f"http://127.0.0.1:{s.port}" for s in cfg.services}
    report: dict[str, Any] = {}

    def load() -> None:
        got = asyncio.run(run_load(urls=urls, rate=rate, duration=10))
        report["load"] = got

    runner = threading.Thread(target=load, daemon=True)
    runner.start()
    time.sleep(3)
    say("declaring the loss of the primary region")
    out = failover(
        db,
        workspace=workspace,
        settings=settings,
        environment=environment,
        actor=actor,
        reason="DR drill",
    )
    say(f"failed over to {out['to']} in {out['rto_s']:.2f}s")
    runner.join(timeout=60)
    say("failing back")
    back = failback(
        db,
        workspace=workspace,
        settings=settings,
        environment=environment,
        actor=actor,
        sync=sync,
    )
    lr = report.get("load")
    sent = int(lr.sent) if lr is not None else 0
    failed = sum(int(s.errors) for s in lr.ops.values()) if lr is not None else 0
    result = {
        "environment": environment,
        "failover": out,
        "failback": back,
        "load": {"rate": rate, "sent": sent, "failed": failed},
    }
    with db.transaction():
        audit.record(
            db=db,
            actor=actor,
            action="dr.drill",
            subject=f"ledger:{environment}",
            payload={
                "rto_s": out["rto_s"],
                "rpo": out["rpo"],
                "met": out["met"],
                "load": result["load"],
            },
        )
    return result
