"""OB114 (issue 18 §5): a schedule that starts a procedure more than once a day must not run
into manual steps (every run would park, and nobody answers 96 a day)."""

from __future__ import annotations

from pathlib import Path

from tests.runbooks.test_lint import CLEAN, codes, line, lint_text


def _scheduled(cron: str) -> str:
    return CLEAN.replace("risk: high\n", f'risk: high\nschedule: "{cron}"\n', 1)


def test_a_frequent_schedule_on_manual_steps_is_an_error(tmp_path: Path) -> None:
    text = _scheduled("*/15 * * * *")
    assert "schedule:" in text
    found = [f for f in lint_text(tmp_path, text) if f.code == "OB114"]
    assert len(found) == 1 and found[0].severity == "error"
    assert found[0].line == line(text, "schedule:")
    assert "every 15 min" in found[0].message and "confirm-with-the-team" in found[0].message


def test_a_daily_schedule_may_end_with_a_sign_off(tmp_path: Path) -> None:
    """One run a day that waits for the shift's sign-off does not pile up: the scheduler
    skips while it waits."""
    assert "OB114" not in codes(lint_text(tmp_path, _scheduled("0 7 * * *")))


def test_a_frequent_schedule_without_manual_steps_is_clean(tmp_path: Path) -> None:
    text = _scheduled("*/15 * * * *").replace(
        "### Confirm with the team\n\n- [ ] The channel was told\n\n", ""
    )
    assert "OB114" not in codes(lint_text(tmp_path, text))
