"""`opsbook runbooks stats|feedback` and `opsbook report runbooks` (issue 15), run as real
subprocesses over a known history: the --json shapes, the human table, exit codes (2 for an
unknown reference, a bad window, a bad rating, a bad month or output file)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.conftest import Run
from tests.lifecycle import metrics_history as history


@pytest.fixture
def ws_root(tmp_path: Path) -> Iterator[Path]:  # replaces tests/cli's empty workspace
    ws, db, _ = history.workspace(tmp_path / "ws")
    history.known_history(db)
    db.close()
    yield ws.root


def test_stats_json_shape(ob: Run) -> None:
    r = ob("runbooks", "stats", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert set(data) >= {"since", "until", "opened", "resolved_incidents", "runbooks", "quality"}
    assert data["opened"] == "console pages, API reads and `opsbook runbooks show`"
    checks = next(rb for rb in data["runbooks"] if rb["runbook"] == "checks")
    assert checks["opened"] == 0
    assert checks["runs"] == 5 and checks["procedure"] is None
    quick = next(p for p in checks["procedures"] if p["ref"] == "checks#quick")
    assert set(quick) >= {
        "runs",
        "success_rate",
        "duration_s",
        "steps",
        "deviations",
        "incidents",
        "feedback",
    }
    assert quick["duration_s"] == {"median": 20.0, "p90": 30.0}
    assert quick["deviations"] == {
        "total": 3,
        "attested_with_note": 1,
        "aborted": 1,
        "failures_passed": 1,
    }
    assert quick["incidents"] == {"resolved": 1, "share": 0.5, "ttr_median_s": 3600.0}
    assert data["quality"]["overdue"] == ["checks"]
    assert data["quality"]["accuracy"][0]["ref"] == "checks#quick"


def test_runbooks_show_counts_as_opening(ob: Run) -> None:
    for ref in ("checks", "checks#quick", "checks#quick"):
        assert ob("runbooks", "show", ref).returncode == 0
    data = json.loads(ob("runbooks", "stats", "checks", "--json").stdout)
    checks = data["runbooks"][0]
    assert checks["opened"] == 3  # the runbook's figure includes its procedures'
    quick = next(p for p in checks["procedures"] if p["ref"] == "checks#quick")
    assert quick["opened"] == 2
    table = ob("runbooks", "stats", "checks").stdout
    header = next(line for line in table.splitlines() if line.startswith("RUNBOOK#PROCEDURE"))
    assert header.split()[1] == "OPENED"
    row = next(line for line in table.splitlines() if line.startswith("checks#quick "))
    assert row.split()[1:3] == ["2", "5"]


def test_stats_of_one_procedure_and_the_table(ob: Run) -> None:
    r = ob("runbooks", "stats", "checks#quick", "--since", "7d", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert [p["ref"] for rb in data["runbooks"] for p in rb["procedures"]] == ["checks#quick"]
    table = ob("runbooks", "stats", "checks")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    header = next(line for line in lines if line.startswith("RUNBOOK#PROCEDURE"))
    assert "RUNS" in header and "P90" in header and "RATING" in header
    quick = next(line for line in lines if line.startswith("checks#quick "))
    assert quick.split()[1:4] == ["0", "5", "50%"]
    assert any(line.startswith("checks#never ") for line in lines)  # no runs: listed
    assert "second: 1 failed, 1 skipped" in table.stdout
    assert "checks overdue" in table.stdout
    assert "Training: no certifications" in table.stdout


def test_stats_usage_errors(ob: Run) -> None:
    r = ob("runbooks", "stats", "chekcs")
    assert r.returncode == 2 and "checks" in r.stderr and "Traceback" not in r.stderr
    r = ob("runbooks", "stats", "checks#quik")
    assert r.returncode == 2 and "checks#quick" in r.stderr
    r = ob("runbooks", "stats", "--since", "soon")
    assert r.returncode == 2 and "--since" in r.stderr and "Traceback" not in r.stderr


def test_feedback_command(ob: Run) -> None:
    bad = ob("runbooks", "feedback", "x4", "--rating", "9")
    assert bad.returncode == 2 and "--rating" in bad.stderr and "Traceback" not in bad.stderr
    missing = ob("runbooks", "feedback", "nope", "--rating", "3")
    assert missing.returncode == 2
    ok = ob(
        "runbooks",
        "feedback",
        "x4",
        "--rating",
        "2",
        "--comment",
        "too slow",
        "--json",
        "--as",
        "zoe",
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout) == {
        **json.loads(ok.stdout),
        "execution": "x4",
        "person": "zoe",
        "rating": 2,
        "comment": "too slow",
        "runbook": "checks",
        "procedure": "quick",
    }
    stats = json.loads(ob("runbooks", "stats", "checks#quick", "--json").stdout)
    assert stats["runbooks"][0]["procedures"][0]["feedback"]["count"] == 4
    human = ob("runbooks", "feedback", "x4", "--rating", "5", "--as", "zoe")
    assert human.returncode == 0 and "rated checks#quick 5/5" in human.stdout


def test_the_monthly_report(ob: Run, tmp_path: Path) -> None:
    r = ob("report", "runbooks", "--month", "2026-11", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert set(data) == {"month", "stats", "daily", "worst", "comments", "quality"}
    assert len(data["daily"]) == 30 and data["daily"][4] == {
        "day": "2026-11-05",
        "runs": 1,
        "succeeded": 1,
    }
    assert [w["ref"] for w in data["worst"]] == ["checks#quick"]
    assert "50% of runs did not succeed" in data["worst"][0]["why"]
    assert [c["comment"] for c in data["comments"]] == ["second is wrong", "fine"]  # newest first
    assert data["quality"]["reviews"][0]["overdue_days"] == 60  # as of 2026-11-30
    md = ob("report", "runbooks", "--month", "2026-11")
    assert md.returncode == 0
    for part in (
        "# Runbook report 2026-11",
        "## Worst procedures",
        "**checks#quick**",
        "second is wrong",
        "## Overdue reviews",
        "60 day(s) overdue",
        "No certifications.",
    ):
        assert part in md.stdout, part
    out = tmp_path / "runbooks-2026-11.html"
    html = ob("report", "runbooks", "--month", "2026-11", "--out", str(out))
    assert html.returncode == 0 and out.read_text().count("<svg") == 2
    assert "<script" not in out.read_text()


def test_the_monthly_report_refuses_bad_input(ob: Run, tmp_path: Path) -> None:
    r = ob("report", "runbooks", "--month", "2026-13")
    assert r.returncode == 2 and "month" in r.stderr and "Traceback" not in r.stderr
    r = ob("report", "runbooks", "--month", "2026-11", "--out", str(tmp_path / "x.pdf"))
    assert r.returncode == 2 and "--out" in r.stderr
    assert not (tmp_path / "x.pdf").exists()
