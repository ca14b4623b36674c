"""SLA reports: availability per service per calendar month (UTC), time-weighted from the
minute rollups of the service's probes, excluding only *approved* maintenance windows; the
downtime periods, the alerts of the month and the error budget consumed.

A verdict (met / MISSED) is only given on enough data: probe results for at least
``MIN_MEASURED`` of the reporting window (the month so far, less approved maintenance), and no
alert of the service firing (the probes may not see what the alert sees, e.g. an error rate)."""

from __future__ import annotations

import calendar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from opsbook.db import Database
from opsbook.errors import ValidationError
from opsbook.monitoring.config import Maintenance, MonitoringConfig

#: The share of the reporting window that must have probe results for a verdict.
MIN_MEASURED = 0.9


@dataclass(frozen=True)
class Downtime:
    start: datetime
    end: datetime
    minutes: float  # weighted: a minute where half the checks failed counts 0.5


@dataclass(frozen=True)
class ServiceSla:
    service: str
    objective: float | None
    covered_minutes: int  # minutes with probe results, outside approved maintenance
    downtime_minutes: float
    excluded_minutes: int  # approved maintenance
    daily: tuple[tuple[int, float | None], ...]  # (day of month, availability or None)
    downtimes: tuple[Downtime, ...]
    alerts: tuple[dict[str, Any], ...] = ()
    unapproved: tuple[Maintenance, ...] = ()
    month_minutes: int = 0  # the whole month, less approved maintenance: the budget's base
    window_minutes: int = 0  # the month so far, less approved maintenance

    @property
    def measured_share(self) -> float | None:
        """Share of the reporting window with probe results."""
        if not self.window_minutes:
            return None
        return min(1.0, self.covered_minutes / self.window_minutes)

    @property
    def availability(self) -> float | None:
        if not self.covered_minutes:
            return None
        return 1.0 - self.downtime_minutes / self.covered_minutes

    @property
    def budget_consumed(self) -> float | None:
        """Share of the month's error budget used so far (1.0 = all of it): the downtime
        measured against the budget of the whole month, never of the minutes measured (two
        measured minutes must not turn one bad minute into 12,500 %)."""
        base = self.month_minutes or self.covered_minutes
        if self.objective is None or not self.covered_minutes or not base:
            return None
        budget = (1.0 - self.objective / 100.0) * base
        return self.downtime_minutes / budget if budget > 0 else None

    @property
    def firing(self) -> tuple[str, ...]:
        """Names of the service's alerts of the month that are still firing."""
        return tuple(
            dict.fromkeys(str(a["alertname"]) for a in self.alerts if a["status"] == "firing")
        )

    @property
    def verdict(self) -> str:
        """ "met", "MISSED", "not enough data", "no verdict: ALERT firing", or "—" (no
        objective)."""
        a = self.availability
        if self.objective is None:
            return "—"
        share = self.measured_share
        if a is None or share is None or share < MIN_MEASURED:
            return "not enough data"
        if a * 100 < self.objective:
            return "MISSED"
        if self.firing:
            return f"no verdict: {', '.join(self.firing)} firing"
        return "met"

    @property
    def met(self) -> bool | None:
        """True/False only with a verdict (see :attr:`verdict`)."""
        return {"met": True, "MISSED": False}.get(self.verdict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "objective": self.objective,
            "availability": self.availability,
            "met": self.met,
            "verdict": self.verdict,
            "covered_minutes": self.covered_minutes,
            "window_minutes": self.window_minutes,
            "measured_share": self.measured_share,
            "firing_alerts": list(self.firing),
            "downtime_minutes": round(self.downtime_minutes, 2),
            "excluded_minutes": self.excluded_minutes,
            "budget_consumed": self.budget_consumed,
            "daily": [{"day": d, "availability": a} for d, a in self.daily],
            "downtimes": [
                {"start": d.start.isoformat(), "end": d.end.isoformat(), "minutes": d.minutes}
                for d in self.downtimes
            ],
            "alerts": list(self.alerts),
            "unapproved_maintenance": [
                {"start": m.start.isoformat(), "end": m.end.isoformat(), "change": m.change}
                for m in self.unapproved
            ],
        }


@dataclass(frozen=True)
class SlaReport:
    environment: str
    month: str
    start: datetime
    end: datetime
    generated: datetime
    services: tuple[ServiceSla, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "month": self.month,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "generated": self.generated.isoformat(),
            "services": [s.to_dict() for s in self.services],
        }


def month_bounds(month: str) -> tuple[datetime, datetime]:
    try:
        year, mon = (int(x) for x in month.split("-"))
        start = datetime(year, mon, 1, tzinfo=UTC)
    except ValueError as exc:
        raise ValidationError(
            f"--month {month!r} is not a month", field="month", hint="write YYYY-MM, e.g. 2026-11"
        ) from exc
    days = calendar.monthrange(year, mon)[1]
    end = datetime(year, mon, days, tzinfo=UTC).replace(hour=0) + _days(1)
    return start, end


def _days(n: int) -> Any:
    from datetime import timedelta  # noqa: PLC0415

    return timedelta(days=n)


def _objective_of(config: MonitoringConfig, service: str) -> float | None:
    for slo in config.slos:
        if slo.service == service and slo.latency_ms is None:
            return slo.objective
    return None


def sla_report(
    db: Database, *, config: MonitoringConfig, month: str, now: datetime | None = None
) -> SlaReport:
    """Build the month's report (up to ``now`` for the current month)."""
    start, end = month_bounds(month)
    generated = now or datetime.now(UTC)
    end_eff = min(end, generated) if generated > start else end
    m0, m1 = int(start.timestamp()) // 60, -(-int(end_eff.timestamp()) // 60)  # ceil: now counts
    m_end = int(end.timestamp()) // 60
    services = []
    for service in config.services:
        windows = [m for m in config.maintenance if not m.services or service in m.services]
        approved = [m for m in windows if m.approved and m.end > start and m.start < end]
        unapproved = tuple(m for m in windows if not m.approved and m.end > start and m.start < end)
        excl_sql, excl_params = "", []
        excluded = month_excluded = 0
        for m in approved:
            a = max(int(m.start.timestamp()) // 60, m0)
            month_excluded += max(0, min(-(-int(m.end.timestamp()) // 60), m_end) - a)
            b = min(-(-int(m.end.timestamp()) // 60), m1)
            if b > a:
                excluded += b - a
                excl_sql += " AND NOT (r.minute >= ? AND r.minute < ?)"
                excl_params += [a, b]
        base = (
            " FROM mon_rollups r JOIN mon_probes p ON p.id = r.probe_id"
            " WHERE p.environment = ? AND p.service = ? AND r.minute >= ? AND r.minute < ?"
            + excl_sql
        )
        params = [config.environment, service, m0, m1, *excl_params]
        per_day = {
            int(r["d"]): int(r["c"])
            for r in db.query(
                f"SELECT (r.minute - ?) / 1440 AS d, COUNT(DISTINCT r.minute) AS c {base}"
                " GROUP BY d",
                [m0, *params],
            )
        }
        bad = db.query(
            f"SELECT r.minute AS m, SUM(r.n) AS n, SUM(r.ok) AS ok {base}"
            " GROUP BY r.minute HAVING SUM(r.ok) < SUM(r.n) ORDER BY r.minute",
            params,
        )
        down_day: dict[int, float] = {}
        downtimes: list[Downtime] = []
        total_down = 0.0
        run: list[tuple[int, float]] = []
        for row in bad:
            minute, frac = int(row["m"]), 1.0 - int(row["ok"]) / int(row["n"])
            total_down += frac
            down_day[(minute - m0) // 1440] = down_day.get((minute - m0) // 1440, 0.0) + frac
            if run and minute != run[-1][0] + 1:
                downtimes.append(_period(run))
                run = []
            run.append((minute, frac))
        if run:
            downtimes.append(_period(run))
        days = (end - start).days
        daily = tuple(
            (
                d + 1,
                (1.0 - down_day.get(d, 0.0) / per_day[d]) if per_day.get(d) else None,
            )
            for d in range(days)
        )
        alerts = tuple(
            db.query(
                "SELECT id, alertname, severity, status, starts_at, ends_at, runbook"
                " FROM mon_alerts WHERE service = ? AND (environment = ? OR environment IS NULL)"
                " AND starts_at >= ? AND starts_at < ? ORDER BY starts_at",
                (service, config.environment, _iso(start), _iso(end)),
            )
        )
        services.append(
            ServiceSla(
                service=service,
                objective=_objective_of(config, service),
                covered_minutes=sum(per_day.values()),
                downtime_minutes=total_down,
                excluded_minutes=excluded,
                daily=daily,
                downtimes=tuple(downtimes),
                alerts=alerts,
                unapproved=unapproved,
                month_minutes=max(0, (m_end - m0) - month_excluded),
                window_minutes=max(0, (m1 - m0) - excluded),
            )
        )
    return SlaReport(config.environment, month, start, end, generated, tuple(services))


def _iso(dt: datetime) -> str:
    return dt.isoformat(timespec="seconds").replace("+00:00", "Z")


def _period(run: list[tuple[int, float]]) -> Downtime:
    start = datetime.fromtimestamp(run[0][0] * 60, UTC)
    end = datetime.fromtimestamp((run[-1][0] + 1) * 60, UTC)
    return Downtime(start, end, round(sum(f for _, f in run), 2))
