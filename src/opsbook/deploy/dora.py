"""DORA's four keys from the release records (issue 11), with the performance band of each.

Definitions (production-tier releases only; a release's deployment time is its
``finished_at``, or ``requested_at`` when that is missing, and must fall in the period):

- **deployment**: a release that reached all users: state ``promoted``, or ``rolled_back``
  (promoted, or switched over by blue-green/rolling, then rolled back). An **aborted**
  canary is not a deployment and not a change failure: it never reached all users, and
  catching a bad version on a slice of traffic is what the canary is for (Argo Rollouts'
  and DORA's practice). Refused, failed (never started), cancelled and running releases are
  counted apart for the report, nothing more.
- **deployment frequency**: deployments per day and per week of the period.
- **lead time for changes**: ``finished_at - lead_started_at`` (the earliest testing
  evidence for the version) of deployments that have both; median and p90 (nearest rank).
- **change failure rate**: deployments rolled back or with a linked incident, over all
  deployments.
- **time to restore** (2023: "failed deployment recovery time"): the median of
  ``restored_at - finished_at`` of the change failures that have ``restored_at``; a failure
  without it (an incident still open) is counted in the rate but not here.

Bands: the 2023 Accelerate State of DevOps Report (DORA, Google Cloud) describes its four
clusters as: elite - on demand (several deploys a day), lead time under a day, 5 % change
failures, recovery under an hour; high - between daily and weekly, a day to a week, 10 %,
under a day; medium - between weekly and monthly, a week to a month, 15 %, a day to a week;
low - the same throughput as medium, 64 %, one to six months. The report gives cluster
descriptions, not cut points; the cut points below take each cluster's figure as its upper
bound, and "low" is anything worse than medium.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from opsbook.errors import UsageError

BANDS = ("elite", "high", "medium", "low")
DEPLOYED = ("promoted", "rolled_back")
DAY = 86400.0
HOUR = 3600.0
# 2023 Accelerate State of DevOps Report clusters, as upper bounds (see the docstring).
FREQUENCY_PER_DAY = ((1.0, "elite"), (1.0 / 7, "high"), (1.0 / 30, "medium"))  # at least
LEAD_TIME_S = ((DAY, "elite"), (7 * DAY, "high"), (30 * DAY, "medium"))  # below
FAILURE_RATE = ((0.05, "elite"), (0.10, "high"), (0.15, "medium"))  # at most
RESTORE_S = ((HOUR, "elite"), (DAY, "high"), (7 * DAY, "medium"))  # below
SOURCE = "2023 Accelerate State of DevOps Report (DORA)"


def _band_at_least(value: float, cuts: tuple[tuple[float, str], ...]) -> str:
    for cut, band in cuts:
        if value >= cut:
            return band
    return "low"


def _band_below(value: float, cuts: tuple[tuple[float, str], ...], *, inclusive: bool) -> str:
    for cut, band in cuts:
        if value < cut or (inclusive and value == cut):
            return band
    return "low"


@dataclass(frozen=True)
class DoraReport:
    since: datetime
    until: datetime
    deployments: int
    per_day: float
    per_week: float
    frequency_band: str
    lead_time_median_s: float | None
    lead_time_p90_s: float | None
    lead_time_samples: int
    lead_time_band: str | None
    change_failures: int
    change_failure_rate: float | None
    change_failure_band: str | None
    restore_median_s: float | None
    restore_samples: int
    restore_band: str | None
    failed_releases: tuple[str, ...] = ()
    not_deployments: dict[str, int] = field(default_factory=dict)  # state -> count

    @property
    def days(self) -> float:
        return (self.until - self.since).total_seconds() / DAY

    def to_dict(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "days": round(self.days, 3),
            "deployment_frequency": {
                "deployments": self.deployments,
                "per_day": round(self.per_day, 4),
                "per_week": round(self.per_week, 4),
                "band": self.frequency_band,
            },
            "lead_time_for_changes": {
                "median_s": _round(self.lead_time_median_s),
                "p90_s": _round(self.lead_time_p90_s),
                "releases": self.lead_time_samples,
                "band": self.lead_time_band,
            },
            "change_failure_rate": {
                "rate": None
                if self.change_failure_rate is None
                else round(self.change_failure_rate, 4),
                "failures": self.change_failures,
                "deployments": self.deployments,
                "releases": list(self.failed_releases),
                "band": self.change_failure_band,
            },
            "time_to_restore": {
                "median_s": _round(self.restore_median_s),
                "failures": self.restore_samples,
                "band": self.restore_band,
            },
            "not_deployments": dict(self.not_deployments),
            "bands_from": SOURCE,
        }

    def render_text(self) -> str:
        def band(b: str | None) -> str:
            return b or "-"

        lines = [
            f"DORA metrics, production, {self.since:%Y-%m-%d %H:%M}Z to "
            f"{self.until:%Y-%m-%d %H:%M}Z ({self.days:g} days)",
            _row(
                "deployment frequency",
                f"{self.deployments} ({self.per_day:.2f}/day, {self.per_week:.1f}/week)",
                self.frequency_band,
            ),
        ]
        if self.lead_time_median_s is None:
            lines.append(_row("lead time for changes", "no release with testing evidence", "-"))
        else:
            lines.append(
                _row(
                    "lead time for changes",
                    f"median {human(self.lead_time_median_s)}, p90 "
                    f"{human(self.lead_time_p90_s or 0.0)} ({self.lead_time_samples} releases)",
                    band(self.lead_time_band),
                )
            )
        if self.change_failure_rate is None:
            lines.append(_row("change failure rate", "no deployments", "-"))
        else:
            which = f": {', '.join(self.failed_releases)}" if self.failed_releases else ""
            lines.append(
                _row(
                    "change failure rate",
                    f"{self.change_failure_rate:.1%} ({self.change_failures} of "
                    f"{self.deployments}{which})",
                    band(self.change_failure_band),
                )
            )
        if self.restore_median_s is None:
            lines.append(_row("time to restore", "no restored failure", "-"))
        else:
            lines.append(
                _row(
                    "time to restore",
                    f"median {human(self.restore_median_s)} ({self.restore_samples} "
                    f"failure{'' if self.restore_samples == 1 else 's'})",
                    band(self.restore_band),
                )
            )
        aborted = self.not_deployments.get("aborted", 0)
        if aborted:
            lines.append(
                f"{aborted} aborted canar{'y' if aborted == 1 else 'ies'}: not change failures "
                "(they never reached all users)"
            )
        lines.append(f"bands: elite/high/medium/low from the {SOURCE}")
        return "\n".join(lines)


def _row(name: str, value: str, band: str) -> str:
    return f"  {name:<23}{value:<52} {band}"


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def human(seconds: float) -> str:
    """``93784`` -> ``1d 2h``; ``1500`` -> ``25m``; ``42`` -> ``42s``."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s"
    parts = []
    for unit, size in (("d", DAY), ("h", HOUR), ("m", 60.0)):
        n = int(seconds // size)
        if n:
            parts.append(f"{n}{unit}")
            seconds -= n * size
        if len(parts) == 2:
            break
    return " ".join(parts)


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 timestamp (``Z`` or an offset; none means UTC) as an aware datetime."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        parsed = value
    else:
        try:
            parsed = datetime.fromisoformat(str(value))
        except ValueError:
            return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def p90(values: Sequence[float]) -> float:
    """The 90th percentile, nearest rank (a value that occurred)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]


def compute(
    *, releases: Sequence[Mapping[str, Any]], since: datetime, until: datetime
) -> DoraReport:
    """The four keys over the production releases deployed in ``[since, until)``."""
    for name, moment in (("since", since), ("until", until)):
        if moment.tzinfo is None:
            raise UsageError(f"{name} has no time zone", field=name, hint="use UTC times")
    since, until = since.astimezone(UTC), until.astimezone(UTC)
    if since >= until:
        raise UsageError(
            f"the period is empty: since {since.isoformat()} is not before until "
            f"{until.isoformat()}",
            field="since",
            hint="give an earlier --since or a later --until",
        )
    deployed: list[Mapping[str, Any]] = []
    others: dict[str, int] = {}
    for rel in releases:
        if not rel.get("production"):
            continue
        at = parse_time(rel.get("finished_at")) or parse_time(rel.get("requested_at"))
        if at is None or not since <= at < until:
            continue
        state = str(rel.get("state"))
        if state in DEPLOYED:
            deployed.append(rel)
        else:
            others[state] = others.get(state, 0) + 1
    days = (until - since).total_seconds() / DAY
    n = len(deployed)
    per_day = n / days
    lead = _lead_times(deployed)
    failures = [r for r in deployed if r.get("state") == "rolled_back" or r.get("incident_ids")]
    restores = _restore_times(failures)
    rate = len(failures) / n if n else None
    lead_median = statistics.median(lead) if lead else None
    restore_median = statistics.median(restores) if restores else None
    return DoraReport(
        since=since,
        until=until,
        deployments=n,
        per_day=per_day,
        per_week=per_day * 7,
        frequency_band=_band_at_least(per_day, FREQUENCY_PER_DAY),
        lead_time_median_s=lead_median,
        lead_time_p90_s=p90(lead) if lead else None,
        lead_time_samples=len(lead),
        lead_time_band=None
        if lead_median is None
        else _band_below(lead_median, LEAD_TIME_S, inclusive=False),
        change_failures=len(failures),
        change_failure_rate=rate,
        change_failure_band=None
        if rate is None
        else _band_below(rate, FAILURE_RATE, inclusive=True),
        restore_median_s=restore_median,
        restore_samples=len(restores),
        restore_band=None
        if restore_median is None
        else _band_below(restore_median, RESTORE_S, inclusive=False),
        failed_releases=tuple(str(r.get("id")) for r in failures),
        not_deployments=others,
    )


def _lead_times(deployed: Sequence[Mapping[str, Any]]) -> list[float]:
    out = []
    for rel in deployed:
        start = parse_time(rel.get("lead_started_at"))
        end = parse_time(rel.get("finished_at"))
        if start is not None and end is not None and end >= start:
            out.append((end - start).total_seconds())
    return out


def _restore_times(failures: Sequence[Mapping[str, Any]]) -> list[float]:
    out = []
    for rel in failures:
        failed = parse_time(rel.get("finished_at"))
        restored = parse_time(rel.get("restored_at"))
        if failed is not None and restored is not None and restored >= failed:
            out.append((restored - failed).total_seconds())
    return out
