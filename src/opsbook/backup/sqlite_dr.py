"""The DR region of the sandbox ledger on SQLite (issue 13): the ledger's journal shipped to a
replica file in the DR region (:mod:`opsbook.sandbox.shipping`, asynchronous, every second),
failover with measured RTO and RPO, and failback without loss.

- **setup**: the replica (``<data_dir>/dr/westus2/ledger.db``) is seeded with SQLite's online
  backup and the supervisor ships the journal to it every ``interval`` seconds.
- **failover**: the ledger is fenced (every query refused, as a lost region would be), shipping
  stops, the services are pointed at the replica (the endpoint file); RTO ends when every
  service answers healthy and a write is accepted; RPO counts the transfers the old file
  committed after the replica's last one (and their seconds).
- **failback**: fenced for the moment of a copy (no write is lost: refused writes are failed
  requests the clients see), the old home file is kept aside for the investigation and re-seeded
  from the current one, the services move home, shipping resumes to the DR region.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opsbook import audit
from opsbook.errors import ConflictError, OpsbookError, UsageError
from opsbook.sandbox import endpoint, shipping

if TYPE_CHECKING:
    from opsbook.db import Database
    from opsbook.sandbox.config import SandboxConfig
    from opsbook.workspace import Workspace

HOME, DR = "eastus", "westus2"
REGIONS = {HOME: "East US", DR: "West US 2"}
INTERVAL = 1.0


def paths(cfg: SandboxConfig) -> dict[str, Path]:
    return {
        HOME: cfg.data_path / "ledger.db",
        DR: shipping.dr_dir(cfg.data_path) / DR / "ledger.db",
    }


def primary(cfg: SandboxConfig) -> str:
    end = endpoint.read(cfg.data_path)
    return (
        str(end["cluster"]) if end and end.get("path") and end.get("cluster") in REGIONS else HOME
    )


def _supervisor_up(cfg: SandboxConfig) -> None:
    from opsbook.sandbox.state import read_state, supervisor_alive  # noqa: PLC0415

    state = read_state(cfg.data_path)
    if state is None or not supervisor_alive(state) or state.get("phase") != "ready":
        raise UsageError(
            "the sandbox is not up: its supervisor ships the journal",
            hint="opsbook sandbox up",
        )


def _max_id(path: Path) -> tuple[int, str | None]:
    import sqlite3  # noqa: PLC0415

    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        row = conn.execute(
            "SELECT id, created_at FROM transfers ORDER BY id DESC LIMIT 1"
        ).fetchone()
    finally:
        conn.close()
    return (int(row[0]), str(row[1])) if row else (0, None)


def status(
    *, workspace: Workspace, cfg: SandboxConfig, targets: dict[str, float]
) -> dict[str, Any]:
    where = paths(cfg)
    now_primary = primary(cfg)
    conf = shipping.read_json(shipping.dr_dir(cfg.data_path) / shipping.CONFIG) or {}
    shipped = shipping.read_json(shipping.dr_dir(cfg.data_path) / shipping.STATE) or {}
    repl = None
    if conf.get("enabled"):
        replica = DR if now_primary == HOME else HOME
        live_last = _max_id(where[now_primary])[0]
        repl = {
            "state": "shipping" if not shipped.get("error") else "failing",
            "sync_state": "async (log shipping)",
            "lag_s": round(time.time() - float(shipped.get("at", 0)), 3) if shipped else None,
            "lag_bytes": 0,
            "transfers_behind": max(0, live_last - int(shipped.get("last_transfer_id", 0))),
            "error": shipped.get("error"),
            "replica": replica,
        }
    clusters = []
    for name, path in where.items():
        role = "primary" if name == now_primary else ("replica" if conf.get("enabled") else "none")
        clusters.append(
            {
                "name": name,
                "region": REGIONS[name],
                "role": role,
                "port": None,
                "path": str(path),
                "running": path.exists(),
                "sync": False,
                "upstream": now_primary if role == "replica" else None,
                "replication": repl if role == "replica" else None,
                "note": "",
            }
        )
    return {
        "environment": cfg.env_name,
        "database": "sqlite",
        "primary": now_primary,
        "endpoint": endpoint.read(cfg.data_path),
        "clusters": clusters,
        "targets": targets,
    }


def setup(
    db: Database, *, cfg: SandboxConfig, actor: str, interval: float = INTERVAL
) -> dict[str, Any]:
    _supervisor_up(cfg)
    where = paths(cfg)
    source_name = primary(cfg)
    target_name = DR if source_name == HOME else HOME
    source, target = where[source_name], where[target_name]
    conf_path = shipping.dr_dir(cfg.data_path) / shipping.CONFIG
    shipping.write_json(conf_path, {"enabled": False})
    time.sleep(0.6)  # a pass in flight ends
    t0 = time.perf_counter()
    shipping.seed(source, target)
    started = time.time()
    shipping.write_json(
        conf_path,
        {"enabled": True, "source": str(source), "target": str(target), "interval": interval},
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        shipped = shipping.read_json(shipping.dr_dir(cfg.data_path) / shipping.STATE) or {}
        if float(shipped.get("at", 0)) > started:
            if shipped.get("error"):
                raise OpsbookError(f"shipping to {target} fails: {shipped['error']}")
            break
        time.sleep(0.1)
    else:
        raise OpsbookError("the supervisor did not ship the journal within 30 s")
    out = {
        "environment": cfg.env_name,
        "replica": target_name,
        "region": REGIONS[target_name],
        "port": None,
        "path": str(target),
        "of": source_name,
        "mode": f"asynchronous (log shipping every {interval:g}s)",
        "seeded_s": round(time.perf_counter() - t0, 3),
    }
    with db.transaction():
        audit.record(
            db=db,
            actor=actor,
            action="dr.replica_seeded",
            subject=f"ledger:{cfg.env_name}",
            payload=out,
        )
    return out


def _stop_shipping(cfg: SandboxConfig) -> None:
    shipping.write_json(shipping.dr_dir(cfg.data_path) / shipping.CONFIG, {"enabled": False})
    time.sleep(0.6)  # the loop reads it every 0.25 s; a pass takes milliseconds


def failover(
    db: Database,
    *,
    workspace: Workspace,
    cfg: SandboxConfig,
    actor: str,
    reason: str,
    targets: dict[str, float],
    execution_id: str | None,
) -> dict[str, Any]:
    from opsbook.backup import probe  # noqa: PLC0415
    from opsbook.backup.catalogue import inspect  # noqa: PLC0415
    from opsbook.sandbox.config import set_ledger_url  # noqa: PLC0415

    conf = shipping.read_json(shipping.dr_dir(cfg.data_path) / shipping.CONFIG) or {}
    if not conf.get("enabled"):
        raise ConflictError("there is no DR replica to fail over to", hint="opsbook dr setup")
    where = paths(cfg)
    old = primary(cfg)
    new = DR if old == HOME else HOME
    declared = datetime.now(UTC)
    t0 = time.perf_counter()
    # 1. the primary region is lost: every query refused from now on, shipping ends
    endpoint.write(cfg.data_path, cluster=old, path=where[old], fenced=True, reason=reason)
    _stop_shipping(cfg)
    fenced = time.perf_counter() - t0
    cut, cut_at = _max_id(where[new])
    # 2. the services move to the replica
    endpoint.write(cfg.data_path, cluster=new, path=where[new], reason=f"failover: {reason}")
    probe.services_healthy(cfg, timeout=120)
    probe.ledger_write_ok(cfg)
    after = inspect(where[new])
    invariants_ok = not (after["unbalanced_transfers"] or after["balances_not_matching_entries"])
    rto = time.perf_counter() - t0
    set_ledger_url(Path(cfg.env_path), f"sqlite:///{where[new]}")
    # 3. RPO: what the fenced file committed after the replica's last transfer
    import sqlite3  # noqa: PLC0415

    conn = sqlite3.connect(f"file:{where[old]}?mode=ro", uri=True)
    try:
        n, newest = conn.execute(
            "SELECT COUNT(*), MAX(created_at) FROM transfers WHERE id > ?", (cut,)
        ).fetchone()
    finally:
        conn.close()
    seconds = 0.0
    if n and newest and cut_at:
        seconds = max(0.0, (probe.ts(newest) - probe.ts(cut_at)).total_seconds())
    rpo = {"transfers": int(n), "seconds": round(seconds, 3), "after_transfer_id": cut}
    return probe.record_failover(
        db,
        environment=cfg.env_name,
        actor=actor,
        execution_id=execution_id,
        targets=targets,
        rto=rto,
        rpo=rpo,
        reason=reason,
        declared=declared,
        old=old,
        new=new,
        mode="asynchronous (log shipping)",
        fenced_s=fenced,
        promoted_s=fenced,
        invariants_ok=invariants_ok,
        next_step="opsbook dr failback (re-seeds the old home, then moves the ledger home)",
    )


def failback(db: Database, *, cfg: SandboxConfig, actor: str) -> dict[str, Any]:
    from opsbook.backup import probe  # noqa: PLC0415
    from opsbook.backup.catalogue import inspect  # noqa: PLC0415
    from opsbook.sandbox.config import set_ledger_url  # noqa: PLC0415

    _supervisor_up(cfg)
    where = paths(cfg)
    current = primary(cfg)
    if current == HOME:
        raise ConflictError(f"the ledger is already home ({HOME}): nothing to fail back")
    t0 = time.perf_counter()
    # the lost region's file is kept for the investigation, then re-seeded from the current one
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    for suffix in ("", "-wal", "-shm"):
        old = Path(str(where[HOME]) + suffix)
        if old.exists():
            old.replace(Path(str(where[HOME]) + suffix + f".fenced-{stamp}"))
    t1 = time.perf_counter()
    endpoint.write(
        cfg.data_path,
        cluster=current,
        path=where[current],
        fenced=True,
        reason="failback: switching over",
    )
    time.sleep(0.3)  # queries in flight end; new ones are refused (the clients see it)
    shipping.seed(where[current], where[HOME])
    endpoint.write(cfg.data_path, cluster=HOME, path=where[HOME], reason="failback")
    probe.services_healthy(cfg, timeout=120)
    switched = time.perf_counter() - t1
    set_ledger_url(Path(cfg.env_path), f"sqlite:///{where[HOME]}")
    after = inspect(where[HOME])
    out_setup = setup(db, cfg=cfg, actor=actor)
    out = {
        "environment": cfg.env_name,
        "primary": HOME,
        "replica": out_setup["replica"],
        "mode": out_setup["mode"],
        "kept": str(where[HOME]) + f".fenced-{stamp}",
        "reseeded_s": round(t1 - t0, 3),
        "switchover_s": round(switched, 3),
        "took_s": round(time.perf_counter() - t0, 3),
        "invariants_ok": not (
            after["unbalanced_transfers"] or after["balances_not_matching_entries"]
        ),
    }
    with db.transaction():
        audit.record(
            db=db,
            actor=actor,
            action="dr.failback",
            subject=f"ledger:{cfg.env_name}",
            payload=out,
        )
    return out


def checks(*, workspace: Workspace, cfg: SandboxConfig) -> list[Any]:
    """``DR replica lag`` for the shipped SQLite ledger (when the DR region is set up)."""
    from opsbook.backup.check import Check  # noqa: PLC0415
    from opsbook.backup.pghealth import _limits  # noqa: PLC0415

    conf = shipping.read_json(shipping.dr_dir(cfg.data_path) / shipping.CONFIG) or {}
    if not conf.get("enabled"):
        return []
    lag_max = _limits(workspace)[1]
    shipped = shipping.read_json(shipping.dr_dir(cfg.data_path) / shipping.STATE) or {}
    age = time.time() - float(shipped.get("at", 0))
    ok = not shipped.get("error") and age <= lag_max
    detail = (
        f"shipping fails: {shipped['error']}"
        if shipped.get("error")
        else f"the journal was shipped {age:.1f} s ago (at most {lag_max:g} s)"
    )
    return [
        Check(
            "DR replica lag",
            ok,
            False,
            detail,
            "is the sandbox up (its supervisor ships)? opsbook dr status",
        )
    ]
