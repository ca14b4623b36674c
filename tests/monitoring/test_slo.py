"""SLO math as in the Google SRE workbook and Sloth: budgets, burn rates, the four
multi-window pairs and their detection behaviour."""

from __future__ import annotations

import pytest

from opsbook.monitoring import slo
from opsbook.monitoring.config import Slo

HOUR = 3600
NOW = 100 * 86400


def test_budget_and_burn_rate() -> None:
    assert slo.error_budget(99.9) == pytest.approx(0.001)
    assert slo.budget_minutes(99.9, 30) == pytest.approx(43.2)
    assert slo.budget_minutes(99.95, 30) == pytest.approx(21.6)
    assert slo.budget_minutes(99.99, 30) == pytest.approx(4.32)
    assert slo.burn_rate(0.0144, 99.9) == pytest.approx(14.4)
    for bad in (100, 0, 100.1, -1):
        with pytest.raises(ValueError):
            slo.error_budget(bad)


def test_window_factors_match_sloth() -> None:
    assert [(w.severity, w.long, w.short, w.factor(30)) for w in slo.WINDOWS] == [
        ("page", HOUR, 300, 14.4),
        ("page", 6 * HOUR, 1800, 6.0),
        ("ticket", 24 * HOUR, 2 * HOUR, 3.0),
        ("ticket", 72 * HOUR, 6 * HOUR, 1.0),
    ]
    assert [w.factor(28) for w in slo.WINDOWS] == [13.44, 5.6, 2.8, pytest.approx(0.9333, abs=1e-3)]


def outage(start: int, end: int, ratio: float = 1.0) -> slo.ErrorRatio:
    """Error ratio of a window when the service fails ``ratio`` of checks in [start, end)."""

    def error_ratio(a: int, b: int) -> float | None:
        overlap = max(0, min(b, end) - max(a, start))
        return ratio * overlap / (b - a)

    return error_ratio


SLO = Slo(name="payment-availability", service="payment", objective=99.9)


def test_a_full_outage_pages_within_minutes() -> None:
    # 100 % errors for 5 minutes: 1h burn rate = (5/60)/0.001 = 83 > 14.4, 5m = 1000.
    status = slo.evaluate(SLO, error_ratio=outage(NOW - 300, NOW), now=NOW)
    assert status.alert == "page"
    fast = status.checks[0]
    assert fast.firing and fast.long_rate == pytest.approx(83.33, rel=1e-3)


def test_the_short_window_resets_the_alert_soon_after_recovery() -> None:
    # A 10-minute outage that ended 10 minutes ago: the 1h window still burns, the 5m does not.
    status = slo.evaluate(SLO, error_ratio=outage(NOW - 1200, NOW - 600), now=NOW)
    assert status.checks[0].long_rate and status.checks[0].long_rate > 14.4
    assert status.checks[0].short_rate == 0 and not status.checks[0].firing
    assert status.checks[1].firing  # the 30m short window still sees it: the slow page holds
    later = slo.evaluate(SLO, error_ratio=outage(NOW - 3000, NOW - 2400), now=NOW)
    assert not later.checks[0].firing and not later.checks[1].firing


def test_a_slow_burn_opens_a_ticket_not_a_page() -> None:
    # 0.5 % errors for 3 days: burn rate 5 → the 1d/2h pair (factor 3) fires, not the pages.
    status = slo.evaluate(SLO, error_ratio=outage(NOW - 3 * 86400, NOW, 0.005), now=NOW)
    assert status.alert == "ticket"
    assert [c.firing for c in status.checks] == [False, False, True, True]
    assert status.budget_remaining == pytest.approx(1 - (0.005 * 3 / 30) / 0.001)


def test_no_data_means_no_alert() -> None:
    status = slo.evaluate(SLO, error_ratio=lambda a, b: None, now=NOW)
    assert status.alert is None and status.budget_remaining is None
    windows = status.to_dict()["windows"]
    assert isinstance(windows, list) and windows[0]["long_burn_rate"] is None
