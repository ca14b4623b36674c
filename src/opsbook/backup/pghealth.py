"""The checks only a ledger on PostgreSQL has (issue 13): the WAL archive (is ``archive_command``
succeeding, how old is the last archived segment) and the DR replica's lag, read from
``pg_stat_archiver`` and ``pg_stat_replication`` on the primary. ``[backups] wal_max_age``
(default 1h) and ``replica_max_lag`` (default 30s)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from opsbook.backup.check import Check
from opsbook.errors import ValidationError
from opsbook.sandbox import pgcluster

if TYPE_CHECKING:
    from pathlib import Path

    from opsbook.workspace import Workspace


def _limits(ws: Workspace) -> tuple[float, float]:
    from opsbook.durations import duration_seconds  # noqa: PLC0415

    raw = ws.config.get("backups") or {}
    try:
        return (
            duration_seconds(raw.get("wal_max_age", "1h")),
            duration_seconds(raw.get("replica_max_lag", "30s")),
        )
    except (ValueError, TypeError) as exc:
        raise ValidationError(f"[backups] in opsbook.toml: {exc}", field="backups") from None


def checks(*, workspace: Workspace, data_dir: Path, now: datetime | None = None) -> list[Check]:
    reg = pgcluster.load_registry(data_dir)
    if not reg.clusters:
        return []
    when = now or datetime.now(UTC)
    wal_max, lag_max = _limits(workspace)
    primary = reg.current()
    try:
        row = pgcluster.sql(
            primary,
            "SELECT archived_count, last_archived_wal, last_archived_time, failed_count,"
            " last_failed_wal, last_failed_time, pg_current_wal_lsn()::text,"
            " pg_walfile_name(pg_current_wal_lsn()) FROM pg_stat_archiver",
        )[0]
    except pgcluster.PgError as exc:
        return [Check("WAL archive", False, True, f"cannot read the primary: {exc}", "is it up?")]
    out = [_archive_check(row, when, wal_max)]
    replicas = [c for c in reg.clusters.values() if c.role == "replica"]
    if replicas:
        out.append(_lag_check(primary, replicas, lag_max))
    return out


def _archive_check(row: Any, when: datetime, wal_max: float) -> Check:
    count, last_wal, last_at, failed, failed_wal, failed_at, _lsn, current = row
    failing = failed_at is not None and (last_at is None or failed_at > last_at)
    if failing:
        return Check(
            "WAL archive",
            False,
            True,
            f"archive_command is failing: {failed_wal} could not be archived ({failed} failures)",
            "read the cluster's log (.opsbook/sandbox/pg/*.log) and the pgBackRest log",
        )
    age = (when - last_at).total_seconds() if last_at is not None else None
    behind = last_wal is not None and current > last_wal
    stale = age is None or (behind and age > wal_max)
    detail = (
        "nothing archived yet"
        if last_at is None
        else f"{count} segments archived, the last ({last_wal}) {age:.0f} s ago"
    )
    return Check(
        "WAL archive",
        count > 0 and not stale,
        True,
        detail,
        "point-in-time recovery needs every WAL segment: check archive_command",
    )


def _lag_check(
    primary: pgcluster.Cluster, replicas: list[pgcluster.Cluster], lag_max: float
) -> Check:
    rows = pgcluster.sql(
        primary,
        "SELECT application_name, state, sync_state,"
        " EXTRACT(EPOCH FROM COALESCE(replay_lag, interval '0'))::float,"
        " pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint FROM pg_stat_replication",
    )
    seen = {r[0]: r for r in rows}
    problems, notes = [], []
    for rep in replicas:
        r = seen.get(rep.name)
        if r is None:
            problems.append(f"{rep.name} is not streaming")
            continue
        _name, state, sync, lag_s, lag_bytes = r
        notes.append(f"{rep.name} {state} {sync}, {lag_s:.1f} s / {lag_bytes or 0} bytes behind")
        if state != "streaming" or lag_s > lag_max:
            problems.append(f"{rep.name} is {lag_s:.0f} s behind (at most {lag_max:g} s)")
    return Check(
        "DR replica lag",
        not problems,
        False,
        "; ".join(problems or notes),
        "opsbook dr status; a lagging replica loses those seconds on failover (RPO)",
    )
