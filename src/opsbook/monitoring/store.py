"""Probe results in the state database, compactly: ``mon_samples`` holds one small row per
check (integer time, ok flag, latency in ms, a reason only for failures) for
``RAW_RETENTION``; ``mon_rollups`` holds one row per probe and minute (checks, successes,
latency sum and max) for the SLA history. Availability, error ratios and charts read the
rollups, so 30 days of 10-second checks for 4 services is ~170k rows, not 1M."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from opsbook.db import Database
from opsbook.monitoring.probes import ProbeResult

RAW_RETENTION = 2 * 86400  # seconds of individual checks kept
ROLLUP_RETENTION = 400 * 86400  # a year and a bit of minute rollups: the SLA history


def probe_ids(
    db: Database, *, environment: str, probes: Iterable[tuple[str, str, str]]
) -> dict[str, int]:
    """Ids of (service, name, kind) probes of ``environment``, created when new."""
    wanted = list(probes)
    rows = db.query("SELECT id, name FROM mon_probes WHERE environment = ?", (environment,))
    known = {str(r["name"]): int(r["id"]) for r in rows}
    missing = [p for p in wanted if p[1] not in known]
    if missing:
        with db.transaction():
            for service, name, kind in missing:
                db.execute(
                    "INSERT INTO mon_probes (environment, service, name, kind) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (environment, name) DO NOTHING",
                    (environment, service, name, kind),
                )
        rows = db.query("SELECT id, name FROM mon_probes WHERE environment = ?", (environment,))
        known = {str(r["name"]): int(r["id"]) for r in rows}
    return known


def _many(db: Database, sql: str, rows: Sequence[tuple[Any, ...]]) -> None:
    if not rows:
        return
    if db.dialect == "postgresql":
        with db.raw.cursor() as cur:
            cur.executemany(sql.replace("?", "%s"), rows)
    else:
        db.raw.executemany(sql, rows)


def record_results(db: Database, *, environment: str, results: Sequence[ProbeResult]) -> None:
    """Store a batch of results and fold them into the minute rollups (one transaction)."""
    if not results:
        return
    ids = probe_ids(
        db, environment=environment, probes={(r.service, r.probe, r.kind) for r in results}
    )
    samples = [
        (ids[r.probe], r.ts, 1 if r.ok else 0, r.latency_ms, None if r.ok else r.detail)
        for r in results
    ]
    with db.transaction():
        store_samples(db, samples)


def store_samples(db: Database, samples: Sequence[tuple[int, int, int, int, str | None]]) -> None:
    """(probe_id, ts, ok, latency_ms, detail) rows into samples and rollups; the caller owns
    the transaction. Rollups are pre-aggregated per minute in Python first."""
    _many(
        db,
        "INSERT INTO mon_samples (probe_id, ts, ok, latency_ms, detail) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (probe_id, ts) DO NOTHING",
        samples,
    )
    fold: dict[tuple[int, int], list[int]] = {}
    for pid, ts, ok, lat, _ in samples:
        acc = fold.setdefault((pid, ts // 60), [0, 0, 0, 0])
        acc[0] += 1
        acc[1] += ok
        acc[2] += lat
        acc[3] = max(acc[3], lat)
    store_rollups(db, [(pid, m, acc[0], acc[1], acc[2], acc[3]) for (pid, m), acc in fold.items()])


def store_rollups(db: Database, rows: Sequence[tuple[int, int, int, int, int, int]]) -> None:
    """(probe_id, minute, n, ok, lat_sum, lat_max) merged into ``mon_rollups``."""
    _many(
        db,
        "INSERT INTO mon_rollups (probe_id, minute, n, ok, lat_sum, lat_max)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (probe_id, minute) DO UPDATE SET"
        " n = mon_rollups.n + excluded.n, ok = mon_rollups.ok + excluded.ok,"
        " lat_sum = mon_rollups.lat_sum + excluded.lat_sum,"
        " lat_max = CASE WHEN excluded.lat_max > mon_rollups.lat_max"
        " THEN excluded.lat_max ELSE mon_rollups.lat_max END",
        rows,
    )


def prune(db: Database, *, now: int) -> int:
    """Drop individual checks older than RAW_RETENTION and rollups older than the history."""
    with db.transaction():
        n = db.execute("DELETE FROM mon_samples WHERE ts < ?", (now - RAW_RETENTION,))
        n += db.execute(
            "DELETE FROM mon_rollups WHERE minute < ?", ((now - ROLLUP_RETENTION) // 60,)
        )
    return n


@dataclass(frozen=True)
class Window:
    n: int
    ok: int
    lat_sum: int

    @property
    def error_ratio(self) -> float | None:
        return None if self.n == 0 else 1.0 - self.ok / self.n

    @property
    def availability(self) -> float | None:
        return None if self.n == 0 else self.ok / self.n


def window(
    db: Database, *, environment: str, probe: str | None, service: str | None, start: int, end: int
) -> Window:
    """Checks and successes of a probe (or all probes of a service) in [start, end) seconds,
    read from the minute rollups."""
    where, params = _probe_filter(environment, probe, service)
    row = db.one(
        "SELECT COALESCE(SUM(r.n), 0) AS n, COALESCE(SUM(r.ok), 0) AS ok,"  # noqa: S608
        " COALESCE(SUM(r.lat_sum), 0) AS lat FROM mon_rollups r"
        f" JOIN mon_probes p ON p.id = r.probe_id WHERE {where}"
        " AND r.minute >= ? AND r.minute < ?",
        (*params, start // 60, end // 60),
    )
    assert row is not None
    return Window(int(row["n"]), int(row["ok"]), int(row["lat"]))


def _probe_filter(
    environment: str, probe: str | None, service: str | None
) -> tuple[str, list[Any]]:
    where, params = "p.environment = ?", [environment]
    if probe:
        where += " AND p.name = ?"
        params.append(probe)
    if service:
        where += " AND p.service = ?"
        params.append(service)
    return where, params


def series(
    db: Database,
    *,
    environment: str,
    service: str | None = None,
    probe: str | None = None,
    start: int,
    end: int,
    step: int,
) -> list[tuple[int, int, int, int]]:
    """(bucket start epoch s, n, ok, max latency ms) per ``step`` seconds, for charts."""
    where, params = _probe_filter(environment, probe, service)
    per = max(1, step // 60)
    rows = db.query(
        f"SELECT (r.minute / {per}) AS b, SUM(r.n) AS n, SUM(r.ok) AS ok,"  # noqa: S608
        " MAX(r.lat_max) AS mx"
        f" FROM mon_rollups r JOIN mon_probes p ON p.id = r.probe_id WHERE {where}"
        " AND r.minute >= ? AND r.minute < ? GROUP BY b ORDER BY b",
        (*params, start // 60, end // 60),
    )
    return [(int(r["b"]) * per * 60, int(r["n"]), int(r["ok"]), int(r["mx"] or 0)) for r in rows]


def latest(db: Database, *, environment: str) -> list[dict[str, Any]]:
    """The newest check of every probe of ``environment``."""
    return db.query(
        "SELECT p.service, p.name AS probe, p.kind, s.ts, s.ok, s.latency_ms, s.detail"
        " FROM mon_probes p JOIN mon_samples s ON s.probe_id = p.id"
        " WHERE p.environment = ?"
        " AND s.ts = (SELECT MAX(ts) FROM mon_samples WHERE probe_id = p.id)"
        " ORDER BY p.service, p.name",
        (environment,),
    )


def latency_window(
    db: Database,
    *,
    environment: str,
    probe: str | None,
    service: str | None,
    start: int,
    end: int,
    threshold_ms: int,
) -> Window:
    """Like :func:`window` for a latency SLI: a minute's checks count as good only when they
    succeeded and the slowest check of that minute was within ``threshold_ms``."""
    where, params = _probe_filter(environment, probe, service)
    row = db.one(
        "SELECT COALESCE(SUM(r.n), 0) AS n,"  # noqa: S608
        " COALESCE(SUM(CASE WHEN r.lat_max <= ? THEN r.ok ELSE 0 END), 0) AS ok,"
        " COALESCE(SUM(r.lat_sum), 0) AS lat FROM mon_rollups r"
        f" JOIN mon_probes p ON p.id = r.probe_id WHERE {where}"
        " AND r.minute >= ? AND r.minute < ?",
        (threshold_ms, *params, start // 60, end // 60),
    )
    assert row is not None
    return Window(int(row["n"]), int(row["ok"]), int(row["lat"]))
