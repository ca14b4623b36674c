"""Runbook metrics (issue 15) over a small known history (tests/lifecycle/metrics_history.py): exact
numbers per procedure and per runbook, the --since window, a procedure with no runs, a runbook
no longer in the catalogue, unknown references, and real runs of the engine counted."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from opsbook.errors import NotFoundError, UsageError
from opsbook.lifecycle import feedback, metrics, quality
from opsbook.workspace import load_environment
from tests.engine.conftest import Harness
from tests.lifecycle import metrics_history as history
from tests.lifecycle.metrics_history import NOW


@pytest.fixture
def hist(tmp_path: Path) -> Iterator[tuple[Any, Any, Any]]:
    ws, db, cat = history.workspace(tmp_path / "ws")
    history.known_history(db)
    yield ws, db, cat
    db.close()


def stats(db: Any, cat: Any, since: str = "90d", ref: str | None = None) -> metrics.StatsReport:
    start, end = metrics.window_since(since, now=NOW)
    return metrics.runbook_stats(db, catalogue=cat, since=start, until=end, ref=ref, now=NOW)


def by_ref(report: metrics.StatsReport) -> dict[str, metrics.Stats]:
    out = {p.ref: p for p in report.procedures()}
    out.update({rb.total.ref: rb.total for rb in report.runbooks})
    return out


def test_exact_numbers_of_a_known_history(hist: tuple[Any, Any, Any]) -> None:
    _, db, cat = hist
    report = stats(db, cat)
    assert report.resolved_incidents == 2  # incidents 1 and 2 (3 is a drill, 4 is open)
    q = by_ref(report)["checks#quick"]
    assert (q.runs, q.finished, q.succeeded, q.failed, q.aborted) == (5, 4, 2, 1, 1)
    assert q.success_rate == 0.5
    assert (q.duration_median, q.duration_p90) == (20.0, 30.0)
    assert [s.to_dict() for s in q.steps] == [
        {"step": "second", "failed": 1, "skipped": 1},
        {"step": "first", "failed": 1, "skipped": 0},
    ]
    assert (q.attested_with_note, q.aborted, q.failures_passed, q.deviations) == (1, 1, 1, 3)
    assert (q.incidents, q.incident_share, q.ttr_median) == (1, 0.5, 3600.0)
    assert q.feedback.to_dict() == {"count": 3, "mean": 3.33, "low": 1}
    solo = by_ref(report)["other#solo"]
    assert (solo.runs, solo.success_rate, solo.duration_median, solo.incidents) == (
        1,
        0.0,
        7.0,
        0,
    )


def test_a_procedure_with_no_runs_is_listed_with_zeros(hist: tuple[Any, Any, Any]) -> None:
    _, db, cat = hist
    never = by_ref(stats(db, cat))["checks#never"]
    assert never.in_catalogue
    d = never.to_dict()
    assert d["runs"] == 0 and d["success_rate"] is None
    assert d["duration_s"] == {"median": None, "p90": None}
    assert d["steps"] == [] and d["deviations"]["total"] == 0
    assert d["feedback"] == {"count": 0, "mean": None, "low": 0}


def test_the_runbook_adds_up_its_procedures(hist: tuple[Any, Any, Any]) -> None:
    _, db, cat = hist
    total = by_ref(stats(db, cat))["checks"]
    assert (total.runs, total.succeeded, total.deviations, total.incidents) == (5, 2, 3, 1)
    assert total.feedback.count == 3 and total.feedback.mean == 3.33
    assert total.steps[0].step == "quick/second"
    assert total.duration_median is None  # procedures' durations are not mixed


def test_the_since_window(hist: tuple[Any, Any, Any]) -> None:
    _, db, cat = hist
    report = stats(db, cat, since="7d")  # from 2026-11-24: only x3
    q = by_ref(report)["checks#quick"]
    assert (q.runs, q.failed, q.duration_median) == (1, 1, 30.0)
    assert report.resolved_incidents == 0 and q.incident_share is None
    assert q.feedback.count == 1 and q.feedback.mean == 1.0
    wide = by_ref(stats(db, cat, since="200d"))["checks#quick"]
    assert wide.runs == 6  # x6 of August too
    assert metrics.parse_since("4w") == timedelta(days=28)
    for bad in ("banana", "0d", "-3d", ""):
        with pytest.raises(UsageError) as exc:
            metrics.parse_since(bad)
        assert exc.value.field == "--since"


def test_one_reference_and_unknown_ones(hist: tuple[Any, Any, Any]) -> None:
    _, db, cat = hist
    one = stats(db, cat, ref="checks#quick")
    assert [p.ref for p in one.procedures()] == ["checks#quick"]
    assert [rb.total.ref for rb in one.runbooks] == ["checks"]
    rb = stats(db, cat, ref="other")
    assert [p.ref for p in rb.procedures()] == ["other#solo"]
    with pytest.raises(NotFoundError) as exc:
        stats(db, cat, ref="chekcs")
    assert "checks" in (exc.value.hint or "")
    with pytest.raises(NotFoundError) as exc:
        stats(db, cat, ref="checks#quik")
    assert "checks#quick" in (exc.value.hint or "")


def test_runs_of_a_runbook_no_longer_in_the_catalogue(hist: tuple[Any, Any, Any]) -> None:
    _, db, cat = hist
    history.add_run(
        db,
        "gone1",
        at=NOW - timedelta(days=3),
        state="succeeded",
        seconds=3,
        steps=[("a", "succeeded")],
        ref="retired#old",
    )
    gone = by_ref(stats(db, cat))["retired#old"]
    assert gone.runs == 1 and not gone.in_catalogue


def test_real_engine_runs_are_counted(tmp_path: Path) -> None:
    ws, db, cat = history.workspace(tmp_path / "ws")
    h = Harness(ws, db)
    rb, proc = cat.resolve("checks#quick")

    async def run() -> Any:
        return await h.engine().start(
            runbook=rb,
            procedure=proc,
            environment=load_environment(ws, "sandbox"),
            params={},
            started_by="alice",
        )

    for _ in range(2):
        assert str(asyncio.run(run()).state) == "succeeded"
    report = metrics.runbook_stats(db, catalogue=cat, since=NOW - timedelta(days=3650))
    q = by_ref(report)["checks#quick"]
    assert (q.runs, q.succeeded, q.success_rate) == (2, 2, 1.0)
    assert q.duration_median is not None and q.duration_median >= 0
    assert q.to_dict()["steps"] == []
    db.close()


@pytest.mark.postgres
def test_the_same_numbers_on_postgresql(pg_db: Any, tmp_path: Path) -> None:
    """The SQL is portable: the known history gives the same numbers on PostgreSQL."""
    mine = "runbook_feedback, incident_executions, incidents, mon_alerts"
    pg_db.execute(f"TRUNCATE {mine} RESTART IDENTITY CASCADE")
    try:
        _, sqlite_db, cat = history.workspace(tmp_path / "ws")
        sqlite_db.close()
        history.known_history(pg_db)
        report = stats(pg_db, cat)
        q = by_ref(report)["checks#quick"]
        assert report.resolved_incidents == 2
        assert (q.runs, q.finished, q.succeeded, q.success_rate) == (5, 4, 2, 0.5)
        assert (q.duration_median, q.duration_p90) == (20.0, 30.0)
        assert (q.deviations, q.incidents, q.ttr_median) == (3, 1, 3600.0)
        assert q.feedback.to_dict() == {"count": 3, "mean": 3.33, "low": 1}
        assert [s.step for s in q.steps] == ["second", "first"]
        since, until = history.iso(NOW - timedelta(days=90)), history.iso(NOW)
        signals = quality.accuracy_signals(pg_db, since=since, until=until)
        assert [(a.ref, a.step, a.executions) for a in signals] == [
            ("checks#quick", "second", ("x3",))
        ]
        assert quality.training_completion(pg_db).by_area == ()
        row = feedback.give_feedback(pg_db, execution_id="x4", person="pg", rating="4")
        assert row.rating == 4 and row.procedure == "quick"
    finally:
        pg_db.execute(f"TRUNCATE {mine} RESTART IDENTITY CASCADE")
