"""SLOs and error budgets, with the multi-window multi-burn-rate alerts of the Google SRE
workbook (as encoded in Sloth): page if the 1h and 5m burn rates exceed 14.4, or 6h and 30m
exceed 6; ticket if 1d and 2h exceed 3, or 3d and 6h exceed 1 (for a 30-day period; other
periods scale the factors so each pair still means the same share of the budget).

Notation: objective T (percent), budget B = 1 - T/100, error ratio e(W) over window W, burn
rate e(W)/B. The SLI is opsbook's own probe results (availability: failed checks are bad;
latency: checks slower than ``latency_ms`` are bad, per minute slice)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from opsbook.db import Database
from opsbook.monitoring import store
from opsbook.monitoring.config import Slo

HOUR = 3600


@dataclass(frozen=True)
class BurnWindow:
    severity: str  # page | ticket
    long: int  # seconds
    short: int
    budget_share: float  # share of the period's budget this pair detects being consumed

    def factor(self, period_days: int) -> float:
        """Burn-rate threshold: consuming ``budget_share`` of the budget within ``long``."""
        return round(self.budget_share * period_days * 86400 / self.long, 4)


WINDOWS = (
    BurnWindow("page", 1 * HOUR, 5 * 60, 0.02),
    BurnWindow("page", 6 * HOUR, 30 * 60, 0.05),
    BurnWindow("ticket", 24 * HOUR, 2 * HOUR, 0.10),
    BurnWindow("ticket", 72 * HOUR, 6 * HOUR, 0.10),
)


def error_budget(objective: float) -> float:
    """B = 1 - T (T in percent, strictly between 0 and 100)."""
    if not 0 < objective < 100:
        raise ValueError("objective must be above 0 and below 100")
    return 1.0 - objective / 100.0


def burn_rate(error_ratio: float, objective: float) -> float:
    return error_ratio / error_budget(objective)


def budget_minutes(objective: float, period_days: int) -> float:
    return error_budget(objective) * period_days * 1440


@dataclass(frozen=True)
class WindowCheck:
    severity: str
    long: int
    short: int
    factor: float
    long_rate: float | None
    short_rate: float | None

    @property
    def firing(self) -> bool:
        return (
            self.long_rate is not None
            and self.short_rate is not None
            and self.long_rate > self.factor
            and self.short_rate > self.factor
        )


@dataclass(frozen=True)
class SloStatus:
    slo: Slo
    error_ratio: float | None  # over the whole period
    budget_remaining: float | None  # 1 - e(P)/B; negative when overspent
    checks: tuple[WindowCheck, ...]

    @property
    def alert(self) -> str | None:
        """ "page", "ticket" or None: the most urgent firing window pair."""
        for sev in ("page", "ticket"):
            if any(c.firing and c.severity == sev for c in self.checks):
                return sev
        return None

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.slo.name,
            "service": self.slo.service,
            "objective": self.slo.objective,
            "period_days": self.slo.period_days,
            "error_budget": error_budget(self.slo.objective),
            "error_ratio": self.error_ratio,
            "budget_remaining": self.budget_remaining,
            "alert": self.alert,
            "windows": [
                {
                    "severity": c.severity,
                    "long": c.long,
                    "short": c.short,
                    "factor": c.factor,
                    "long_burn_rate": c.long_rate,
                    "short_burn_rate": c.short_rate,
                    "firing": c.firing,
                }
                for c in self.checks
            ],
        }


ErrorRatio = Callable[[int, int], float | None]  # (start, end) epoch seconds -> e or None


def evaluate(slo: Slo, *, error_ratio: ErrorRatio, now: int) -> SloStatus:
    """The SLO's budget and every window pair's burn rates, from ``error_ratio``."""
    budget = error_budget(slo.objective)

    def rate(seconds: int) -> float | None:
        e = error_ratio(now - seconds, now)
        return None if e is None else e / budget

    checks = tuple(
        WindowCheck(
            w.severity, w.long, w.short, w.factor(slo.period_days), rate(w.long), rate(w.short)
        )
        for w in WINDOWS
    )
    e_period = error_ratio(now - slo.period_days * 86400, now)
    remaining = None if e_period is None else 1.0 - e_period / budget
    return SloStatus(slo, e_period, remaining, checks)


def probe_error_ratio(db: Database, *, environment: str, slo: Slo) -> ErrorRatio:
    """The SLI from stored probe results (minute rollups)."""

    def ratio(start: int, end: int) -> float | None:
        if slo.latency_ms is not None:
            w = store.latency_window(
                db,
                environment=environment,
                probe=slo.probe,
                service=slo.service,
                start=start,
                end=end,
                threshold_ms=slo.latency_ms,
            )
        else:
            w = store.window(
                db,
                environment=environment,
                probe=slo.probe,
                service=slo.service,
                start=start,
                end=end,
            )
        return w.error_ratio

    return ratio
