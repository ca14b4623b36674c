"""Backup, point-in-time recovery and failover of the sandbox ledger on PostgreSQL with
pgBackRest (issue 13), on a ledger of 1,000,000 entries with the load generator running.

Goals:
- a full backup + its verification by restore takes <= 3x a plain copy of the database files,
  measured in the same run (the baseline), both starting with the page cache dropped (the
  database read from disk, as a production one larger than memory is); the same with a warm
  cache is reported beside it;
- PITR is exact: 0 transfers committed before the target missing, 0 after it present (with a
  0.5 s margin around the target for transfers in flight at that instant);
- failover to a synchronous replica with the load running: RTO <= 30 s and RPO 0 committed
  transfers (committed as the clients were told: a transfer the bank answered as done; the
  transfers in the old primary's WAL beyond the new primary, which can include one commit in
  flight at the loss that no client was told of, are reported beside it); the asynchronous
  replica's RPO is measured and reported.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _common import report

ENTRIES = 1_000_000
GOAL_RATIO = 3.0
GOAL_RTO_S = 30.0


def _fill(cluster: Any, pgcluster: Any) -> int:
    """500,000 transfers back and forth between two accounts (balances unchanged), 2 entries
    each: the ledger's invariants hold."""
    a, b = (
        int(r[0]) for r in pgcluster.sql(cluster, "SELECT id FROM accounts ORDER BY id LIMIT 2")
    )
    old = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    start = int(pgcluster.sql(cluster, "SELECT COALESCE(MAX(id), 0) FROM transfers")[0][0])
    pgcluster.sql(
        cluster,
        "INSERT INTO transfers (from_account, to_account, amount_cents, status, kind,"
        " created_at) SELECT CASE WHEN g %% 2 = 0 THEN %s ELSE %s END,"
        " CASE WHEN g %% 2 = 0 THEN %s ELSE %s END, 1, 'completed', 'transfer', %s"
        " FROM generate_series(1, %s) g",
        (a, b, b, a, old, ENTRIES // 2),
        timeout=600,
    )
    pgcluster.sql(
        cluster,
        "INSERT INTO entries (transfer_id, account_id, amount_cents, created_at)"
        " SELECT id, from_account, -amount_cents, created_at FROM transfers WHERE id > %s"
        " UNION ALL SELECT id, to_account, amount_cents, created_at FROM transfers WHERE id > %s",
        (start, start),
        timeout=600,
    )
    return int(pgcluster.sql(cluster, "SELECT COUNT(*) FROM entries")[0][0])


def _drop_caches() -> bool:
    """Empty the page cache (root only); whether it was."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        return False
    return True


def main() -> int:
    from opsbook.backup import catalogue, dr, recovery
    from opsbook.config import Settings
    from opsbook.db import open_database
    from opsbook.sandbox import lifecycle, pgcluster
    from opsbook.sandbox.load import run_load
    from opsbook.workspace import Workspace
    from opsbook.workspace.init import init_workspace

    tmp = Path(tempfile.mkdtemp(prefix="bench-backup-"))
    tmp.chmod(0o711)  # PostgreSQL runs as another user when the bench runs as root
    root = tmp / "ws"
    init_workspace(target=root)
    ws = Workspace.load(root)
    settings = Settings.from_env()
    up = lifecycle.up(workspace=ws, db="postgres")
    db = open_database(settings.database_url_for(ws.state_dir))
    urls = {s["name"]: s["url"] for s in up.status["services"]}
    stop = threading.Event()
    out: dict[str, Any] = {}
    try:
        reg = pgcluster.load_registry(up.config.data_path)
        entries = _fill(reg.current(), pgcluster)
        # the bulk load's dirty pages are written out now, as the periodic checkpoint would
        # have done long before a daily backup: the backup's own checkpoint is then its usual one
        pgcluster.sql(reg.current(), "CHECKPOINT", timeout=600)

        acknowledged: set[str] = set()  # transfers the bank told its clients were done

        def load() -> None:
            while not stop.is_set():
                try:
                    asyncio.run(run_load(urls=urls, rate=20, duration=3, acknowledged=acknowledged))
                except Exception:
                    time.sleep(0.2)

        loader = threading.Thread(target=load, daemon=True)
        loader.start()
        time.sleep(1)
        # -- baseline: a plain copy of the database files, then backup + verify ---------------
        # Both are measured twice: with the page cache dropped first (the database read from
        # disk, as one larger than memory is: the goal) and warm (it fits in memory here).
        data = reg.path_of(reg.primary)
        for cache in ("cold", "warm"):
            dropped = cache == "cold" and _drop_caches()
            t0 = time.perf_counter()
            shutil.copytree(data, tmp / "plain-copy", symlinks=True)
            os.sync()
            plain = time.perf_counter() - t0
            shutil.rmtree(tmp / "plain-copy")
            if cache == "cold":
                dropped = _drop_caches() and dropped
            t0 = time.perf_counter()
            b = catalogue.take(
                db, workspace=ws, environment="sandbox", settings=settings, actor="bench"
            )
            took_backup = time.perf_counter() - t0
            v = catalogue.verify(
                db, workspace=ws, settings=settings, backup_id=b["id"], actor="bench"
            )
            took_both = time.perf_counter() - t0
            out[f"backup_{cache}"] = {
                "entries": entries,
                "database_bytes": b["raw_bytes"],
                "stored_bytes": b["stored_bytes"],
                "page_cache_dropped": dropped,
                "plain_copy_s": round(plain, 3),
                "backup_s": round(took_backup, 3),
                "backup_and_verify_s": round(took_both, 3),
                "restore_s": (v["verify_result"] or {}).get("restored", {}).get("restore_s"),
                "ratio": round(took_both / plain, 2),
                "verified": bool(v["verify_ok"]),
            }
        # -- PITR exactness ---------------------------------------------------------------------
        time.sleep(2)
        target = datetime.now(UTC)
        time.sleep(2)
        prepared = recovery.prepare(
            db,
            workspace=ws,
            settings=settings,
            environment="sandbox",
            kind="time",
            value=target.isoformat(),
            actor="bench",
        )
        restored = pgcluster.load_registry(up.config.data_path).get(prepared["instance"])
        live = reg.current()
        margin = timedelta(seconds=0.5)
        iso = lambda t: t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"  # noqa: E731
        before = {
            int(r[0])
            for r in pgcluster.sql(
                live,
                "SELECT id FROM transfers WHERE created_at < %s",
                (iso(target - margin),),
                timeout=120,
            )
        }
        have = {int(r[0]) for r in pgcluster.sql(restored, "SELECT id FROM transfers", timeout=120)}
        late = pgcluster.sql(
            restored,
            "SELECT COUNT(*) FROM transfers WHERE created_at > %s",
            (iso(target + margin),),
        )[0][0]
        out["pitr"] = {
            "missing_before_target": len(before - have),
            "present_after_target": int(late),
            "lost_by_cutover": prepared["lost"].get("transfers"),
            "restore_s": prepared["restore_s"],
        }
        recovery.discard(
            db, workspace=ws, environment="sandbox", instance=prepared["instance"], actor="bench"
        )
        # -- failover with the load running ------------------------------------------------------
        for mode in ("sync", "async"):
            dr.setup(
                db,
                workspace=ws,
                settings=settings,
                environment="sandbox",
                sync=mode == "sync",
                actor="bench",
            )
            time.sleep(2)
            f = dr.failover(
                db,
                workspace=ws,
                settings=settings,
                environment="sandbox",
                actor="bench",
                reason=f"bench {mode}",
            )
            lost = set(f["rpo"].get("lost_request_ids") or [])
            out[f"failover_{mode}"] = {
                "rto_s": f["rto_s"],
                # committed transfers a client was told of and the new primary lacks
                "rpo_transfers": len(lost & acknowledged),
                # everything the old primary's WAL held beyond the new one, including a commit
                # in flight at the loss that no client was told of
                "rpo_transfers_in_old_wal": f["rpo"]["transfers"],
                "rpo_s": f["rpo"]["seconds"],
                "invariants_ok": f["invariants_ok"],
            }
            dr.failback(
                db,
                workspace=ws,
                settings=settings,
                environment="sandbox",
                actor="bench",
                sync=True,
            )
    finally:
        stop.set()
        db.close()
        lifecycle.down(workspace=ws)
        shutil.rmtree(tmp, ignore_errors=True)
    bk, p, fs = out["backup_cold"], out["pitr"], out["failover_sync"]
    met = (
        bk["verified"]
        and out["backup_warm"]["verified"]
        and bk["page_cache_dropped"]
        and bk["ratio"] <= GOAL_RATIO
        and p["missing_before_target"] == 0
        and p["present_after_target"] == 0
        and fs["rto_s"] <= GOAL_RTO_S
        and fs["rpo_transfers"] == 0
        and fs["invariants_ok"]
        and out["failover_async"]["invariants_ok"]
    )
    return report(
        "bench_backup",
        bool(met),
        goal={"backup_verify_ratio_max": GOAL_RATIO, "rto_s_max": GOAL_RTO_S, "rpo_sync": 0},
        **out,
    )


if __name__ == "__main__":
    raise SystemExit(main())
