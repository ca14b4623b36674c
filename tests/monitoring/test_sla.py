"""SLA report: calendar month, time-weighted availability from probe rollups, approved
maintenance excluded and unapproved counted, budget consumed, charts in every format."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from opsbook.db import Database
from opsbook.errors import ValidationError
from opsbook.monitoring import render, store
from opsbook.monitoring.config import load_monitoring
from opsbook.monitoring.sla import month_bounds, sla_report
from tests.monitoring.conftest import make_ws

ENV = """\
name: sandbox
services: [{name: payment}, {name: account}]
monitoring:
  slos:
    - {name: payment-availability, service: payment, objective: 99.9}
  maintenance:
    - {start: 2026-11-10T02:00:00Z, end: 2026-11-10T03:00:00Z, services: [payment],
       approved_by: cab, change: CHG-1}
    - {start: 2026-11-20T02:00:00Z, end: 2026-11-20T02:20:00Z, services: [payment],
       change: CHG-2}
"""
START = int(datetime(2026, 11, 1, tzinfo=UTC).timestamp())
MIN = 60


def fill(db: Database, *, service: str, down: list[tuple[int, int]], interval: int = 60) -> None:
    """One probe checking every ``interval`` seconds all month; failing inside ``down``."""
    ids = store.probe_ids(
        db, environment="sandbox", probes=[(service, f"{service}-health", "http")]
    )
    pid = ids[f"{service}-health"]
    rows = []
    for ts in range(START, START + 30 * 86400, interval):
        ok = 0 if any(a <= ts < b for a, b in down) else 1
        rows.append((pid, ts, ok, 20, None))
    with db.transaction():
        store.store_samples(db, rows)


def at(day: int, hour: int, minute: int = 0) -> int:
    return int(datetime(2026, 11, day, hour, minute, tzinfo=UTC).timestamp())


def test_month_bounds() -> None:
    assert month_bounds("2026-02") == (
        datetime(2026, 2, 1, tzinfo=UTC),
        datetime(2026, 3, 1, tzinfo=UTC),
    )
    assert month_bounds("2026-12")[1] == datetime(2027, 1, 1, tzinfo=UTC)
    with pytest.raises(ValidationError):
        month_bounds("November")


def test_availability_matches_the_injected_downtime(db: Database, tmp_path: Path) -> None:
    down = [
        (at(5, 12), at(5, 12, 30)),  # 30 min outage
        (at(10, 2, 10), at(10, 2, 40)),  # inside approved maintenance: excluded
        (at(20, 2), at(20, 2, 20)),  # inside unapproved maintenance: counts
    ]
    fill(db, service="payment", down=down)
    fill(db, service="account", down=[])
    config = load_monitoring(make_ws(tmp_path, ENV), "sandbox")
    report = sla_report(db, config=config, month="2026-11", now=datetime(2026, 12, 2, tzinfo=UTC))
    payment, account = report.services
    covered = 30 * 1440 - 60
    assert payment.covered_minutes == covered and payment.excluded_minutes == 60
    assert payment.downtime_minutes == pytest.approx(50)
    assert payment.availability == pytest.approx(1 - 50 / covered)
    assert payment.budget_consumed == pytest.approx(50 / (0.001 * covered))
    assert payment.met is False  # 99.884 % < 99.9 %
    assert [(d.start.day, d.start.hour, d.minutes) for d in payment.downtimes] == [
        (5, 12, 30),
        (20, 2, 20),
    ]
    assert len(payment.unapproved) == 1
    assert dict(payment.daily)[5] == pytest.approx(1 - 30 / 1440)
    assert account.availability == 1.0 and account.objective is None

    md = render.sla_markdown(report)
    assert re.search(r"\| payment \| 99\.9% \| 99\.884% \| [0-9.]+ h \([0-9.]+%\) \| 50\.0 \|", md)
    assert "MISSED" in md
    html = render.sla_html(report)
    assert html.count("<svg") == 2 and "objective 99.9%" in html
    assert re.search(r"2026-11-05: 97\.917%", html)


def test_a_month_without_data(db: Database, tmp_path: Path) -> None:
    config = load_monitoring(make_ws(tmp_path, ENV), "sandbox")
    report = sla_report(db, config=config, month="2026-10")
    assert all(s.availability is None for s in report.services)
    assert "—" in render.sla_markdown(report)
