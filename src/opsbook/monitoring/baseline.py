"""Performance baselines that respect time of day and day of week (payment traffic is
seasonal): KPI samples are grouped into 168 weekly slots (weekday × hour, UTC); each slot gets
its median, 95th percentile and median absolute deviation, and a proposed threshold
``p95 + 3·MAD`` (maxima) or ``p5 - 3·MAD`` (minima). The proposal is a YAML fragment the team
reviews and pastes into the environment file (``monitoring.kpi_thresholds``)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from opsbook.db import Database
from opsbook.errors import ValidationError
from opsbook.monitoring.kpis import KPIS

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MIN_SAMPLES = 3


@dataclass(frozen=True)
class Slot:
    weekday: int  # 0 = Monday
    hour: int
    count: int
    median: float
    p05: float
    p95: float
    mad: float
    threshold: float

    @property
    def label(self) -> str:
        return f"{DAYS[self.weekday]} {self.hour:02d}:00"


@dataclass(frozen=True)
class Baseline:
    service: str
    kpi: str
    higher_is_worse: bool
    samples: int
    slots: tuple[Slot, ...]

    @property
    def threshold(self) -> float | None:
        """One static threshold covering every slot (the loosest slot's)."""
        if not self.slots:
            return None
        values = [s.threshold for s in self.slots]
        return max(values) if self.higher_is_worse else min(values)

    def to_dict(self) -> dict[str, object]:
        return {
            "service": self.service,
            "kpi": self.kpi,
            "samples": self.samples,
            "threshold": self.threshold,
            "bound": "max" if self.higher_is_worse else "min",
            "slots": [
                {
                    "slot": s.label,
                    "count": s.count,
                    "median": s.median,
                    "p95": s.p95,
                    "p05": s.p05,
                    "mad": s.mad,
                    "threshold": s.threshold,
                }
                for s in self.slots
            ],
        }


def _pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    pos = q * (len(ordered) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def compute(samples: Sequence[tuple[int, float]], *, service: str, kpi: str) -> Baseline:
    """A baseline from (epoch seconds, value) samples."""
    worse_high = KPIS.get(kpi, True)
    slots: dict[tuple[int, int], list[float]] = {}
    for ts, value in samples:
        dt = datetime.fromtimestamp(ts, UTC)
        slots.setdefault((dt.weekday(), dt.hour), []).append(value)
    out = []
    for (wd, hour), values in sorted(slots.items()):
        if len(values) < MIN_SAMPLES:
            continue
        med = statistics.median(values)
        mad = statistics.median(abs(v - med) for v in values)
        p95, p05 = _pct(values, 0.95), _pct(values, 0.05)
        threshold = p95 + 3 * mad if worse_high else max(0.0, p05 - 3 * mad)
        out.append(Slot(wd, hour, len(values), med, p05, p95, mad, round(threshold, 6)))
    return Baseline(service, kpi, worse_high, len(samples), tuple(out))


def baseline(
    db: Database, *, environment: str, service: str, kpi: str, days: int, now: int
) -> Baseline:
    if kpi not in KPIS:
        raise ValidationError(
            f"unknown KPI {kpi!r}", field="kpi", hint=f"use one of: {', '.join(KPIS)}"
        )
    if not 1 <= days <= 400:
        raise ValidationError("the window is 1 to 400 days", field="days", hint="e.g. --days 28")
    rows = db.query(
        "SELECT ts, value FROM mon_kpis WHERE environment = ? AND service = ? AND kpi = ?"
        " AND ts >= ? AND ts < ? ORDER BY ts",
        (environment, service, kpi, now - days * 86400, now),
    )
    return compute([(int(r["ts"]), float(r["value"])) for r in rows], service=service, kpi=kpi)


def proposal_yaml(baselines: Sequence[Baseline], *, days: int) -> str:
    """The ``monitoring.kpi_thresholds`` fragment for the environment file."""
    lines = [
        f"# Proposed by `opsbook monitor baseline` from {days} days of KPIs: review, then paste",
        "# under `monitoring:` in the environment file.",
        "kpi_thresholds:",
    ]
    by_service: dict[str, list[Baseline]] = {}
    for b in baselines:
        if b.threshold is not None:
            by_service.setdefault(b.service, []).append(b)
    for service, items in by_service.items():
        lines.append(f"  {service}:")
        for b in items:
            bound = "max" if b.higher_is_worse else "min"
            lines.append(f"    {b.kpi}: {{{bound}: {b.threshold:.6g}}}")
    return "\n".join(lines) + "\n"
