"""DORA's four keys from release records: what counts as a deployment and a change failure
(an aborted canary does not), the medians, and the 2023 performance bands."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from opsbook.deploy import dora
from opsbook.errors import UsageError

SINCE = datetime(2026, 11, 1, tzinfo=UTC)
UNTIL = datetime(2026, 12, 1, tzinfo=UTC)  # 30 days


def z(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def release(
    n: int,
    *,
    state: str = "promoted",
    day: int = 1,
    production: bool = True,
    lead_hours: float | None = 2.0,
    incident_ids: list[str] | None = None,
    restored_after_min: float | None = None,
) -> dict[str, Any]:
    finished = SINCE + timedelta(days=day - 1, hours=10)
    return {
        "id": f"rel-{n}",
        "service": "payment",
        "environment": "production" if production else "staging",
        "version": f"1.{n}.0",
        "state": state,
        "production": production,
        "requested_at": z(finished - timedelta(minutes=5)),
        "finished_at": z(finished),
        "lead_started_at": None
        if lead_hours is None
        else z(finished - timedelta(hours=lead_hours)),
        "rolled_back_at": z(finished + timedelta(minutes=5)) if state == "rolled_back" else None,
        "restored_at": None
        if restored_after_min is None
        else z(finished + timedelta(minutes=restored_after_min)),
        "incident_ids": incident_ids or [],
    }


def test_a_month_of_releases() -> None:
    releases = [release(i, day=i * 2, lead_hours=float(i)) for i in range(1, 11)]  # 1..10 h
    releases += [
        release(11, state="rolled_back", day=21, lead_hours=30.0, restored_after_min=20),
        release(12, day=22, lead_hours=None, incident_ids=["INC-7"]),  # no restore yet
        release(13, state="aborted", day=23),  # the canary caught it: not a failure
        release(14, state="aborted", day=24),
        release(15, state="refused", day=25),
        release(16, day=26, production=False),  # staging: not counted
        release(17, day=31),  # after the period
        release(18, state="failed", day=27),  # never started
    ]
    report = dora.compute(releases=releases, since=SINCE, until=UNTIL)
    assert report.days == 30
    assert report.deployments == 12
    assert report.per_day == pytest.approx(0.4)
    assert report.per_week == pytest.approx(2.8)
    assert report.frequency_band == "high"  # between daily and weekly
    # lead times 1..10 h and 30 h (the incident release has no evidence): 11 samples
    assert report.lead_time_samples == 11
    assert report.lead_time_median_s == 6 * 3600
    assert report.lead_time_p90_s == 10 * 3600  # nearest rank: the 10th of 11
    assert report.lead_time_band == "elite"  # under a day
    assert report.change_failures == 2
    assert report.failed_releases == ("rel-11", "rel-12")
    assert report.change_failure_rate == pytest.approx(2 / 12)
    assert report.change_failure_band == "low"  # above 15 %
    assert report.restore_samples == 1 and report.restore_median_s == 20 * 60
    assert report.restore_band == "elite"
    assert report.not_deployments == {"aborted": 2, "refused": 1, "failed": 1}
    data = report.to_dict()
    assert data["change_failure_rate"]["rate"] == pytest.approx(0.1667)
    assert data["deployment_frequency"] == {
        "deployments": 12,
        "per_day": 0.4,
        "per_week": 2.8,
        "band": "high",
    }
    assert data["bands_from"].startswith("2023 Accelerate State of DevOps")
    text = report.render_text()
    assert "12 (0.40/day, 2.8/week)" in text
    assert "median 6h, p90 10h (11 releases)" in text
    assert "16.7% (2 of 12: rel-11, rel-12)" in text
    assert "median 20m (1 failure)" in text
    assert "2 aborted canaries: not change failures" in text


def test_an_aborted_canary_is_not_a_change_failure() -> None:
    releases = [release(1), release(2, state="aborted"), release(3, state="aborted")]
    report = dora.compute(releases=releases, since=SINCE, until=UNTIL)
    assert report.deployments == 1
    assert report.change_failures == 0 and report.change_failure_rate == 0.0
    assert report.change_failure_band == "elite"


def test_a_period_without_deployments() -> None:
    report = dora.compute(releases=[release(1, state="aborted")], since=SINCE, until=UNTIL)
    assert report.deployments == 0 and report.frequency_band == "low"
    assert report.change_failure_rate is None and report.change_failure_band is None
    assert report.lead_time_median_s is None and report.lead_time_band is None
    assert report.restore_median_s is None and report.restore_band is None
    text = report.render_text()
    assert "no deployments" in text and "no restored failure" in text
    assert "1 aborted canary:" in text


@pytest.mark.parametrize(
    ("deploys", "band"),
    [(30, "elite"), (29, "high"), (5, "high"), (4, "medium"), (1, "medium"), (0, "low")],
)
def test_deployment_frequency_bands(deploys: int, band: str) -> None:
    releases = [release(i, day=1) for i in range(deploys)]
    assert dora.compute(releases=releases, since=SINCE, until=UNTIL).frequency_band == band


@pytest.mark.parametrize(
    ("hours", "band"),
    [(23.9, "elite"), (24.0, "high"), (167.0, "high"), (200.0, "medium"), (800.0, "low")],
)
def test_lead_time_bands(hours: float, band: str) -> None:
    report = dora.compute(releases=[release(1, lead_hours=hours)], since=SINCE, until=UNTIL)
    assert report.lead_time_band == band


@pytest.mark.parametrize(
    ("failures", "band"), [(1, "elite"), (2, "high"), (3, "medium"), (4, "low")]
)
def test_change_failure_bands(failures: int, band: str) -> None:
    """Of 20 deployments: 5 %, 10 %, 15 %, 20 %."""
    releases = [release(i, state="rolled_back" if i < failures else "promoted") for i in range(20)]
    assert dora.compute(releases=releases, since=SINCE, until=UNTIL).change_failure_band == band


@pytest.mark.parametrize(
    ("minutes", "band"),
    [(59, "elite"), (60, "high"), (23 * 60, "high"), (3 * 24 * 60, "medium"), (8 * 24 * 60, "low")],
)
def test_time_to_restore_bands(minutes: float, band: str) -> None:
    rel = release(1, state="rolled_back", restored_after_min=minutes)
    assert dora.compute(releases=[rel], since=SINCE, until=UNTIL).restore_band == band


def test_timestamps_with_offsets_and_a_missing_finish() -> None:
    rel = release(1)
    rel["finished_at"] = "2026-11-05T12:00:00+02:00"  # 10:00 UTC
    rel["lead_started_at"] = "2026-11-05T09:00:00Z"
    late = release(2)
    late["finished_at"] = None
    late["requested_at"] = "2026-11-30T23:59:00Z"  # counted by its request time
    report = dora.compute(releases=[rel, late], since=SINCE, until=UNTIL)
    assert report.deployments == 2
    assert report.lead_time_median_s == 3600  # the late one has no finish: no lead time


def test_a_bad_period_is_refused() -> None:
    with pytest.raises(UsageError, match="the period is empty") as caught:
        dora.compute(releases=[], since=UNTIL, until=SINCE)
    assert caught.value.exit_code == 2
    with pytest.raises(UsageError, match="no time zone"):
        dora.compute(releases=[], since=datetime(2026, 11, 1), until=UNTIL)  # naive


def test_human_durations() -> None:
    assert dora.human(42) == "42s"
    assert dora.human(1500) == "25m"
    assert dora.human(93784) == "1d 2h"
    assert dora.human(7260) == "2h 1m"
