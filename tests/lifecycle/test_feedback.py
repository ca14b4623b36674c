"""Runbook feedback (issue 15): recorded and audited per execution and person (again =
replaced), a bad rating refused naming the field, asked after `opsbook run` at a terminal
(driven under a real pty: answered, skipped with Enter, not asked with --no-feedback) and
never when piped."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from opsbook.errors import ConflictError, NotFoundError, ValidationError
from opsbook.lifecycle import feedback
from tests.lifecycle import metrics_history as history

OPSBOOK = [sys.executable, "-m", "opsbook.cli.main"]
PROMPT = b"Rate 1-5 (Enter skips)"


@pytest.fixture
def hist(tmp_path: Path) -> Iterator[tuple[Path, Any]]:
    ws, db, _ = history.workspace(tmp_path / "ws")
    history.known_history(db)
    yield ws.root, db
    db.close()


def test_feedback_is_recorded_audited_and_replaced(hist: tuple[Path, Any]) -> None:
    _, db = hist
    row = feedback.give_feedback(db, execution_id="x4", person="carol", rating=2, comment=" ")
    assert (row.rating, row.comment, row.runbook, row.procedure) == (2, None, "checks", "quick")
    again = feedback.give_feedback(
        db, execution_id="x4", person="carol", rating="5", comment="better now"
    )
    assert again.rating == 5 and again.created_at == row.created_at
    assert [
        (f.person, f.rating, f.comment) for f in feedback.feedback_of(db, execution_id="x4")
    ] == [("carol", 5, "better now")]
    audit = db.query(
        "SELECT actor, subject, execution_id, payload FROM events"
        " WHERE action = 'runbook.feedback' ORDER BY id"
    )
    assert [(a["actor"], a["subject"], a["execution_id"]) for a in audit] == [
        ("carol", "runbook:checks#quick", "x4")
    ] * 2
    assert '"replaces":2' in audit[1]["payload"]


@pytest.mark.parametrize("bad", [0, 6, "4.5", "five", "", None, True, "-1"])
def test_a_bad_rating_is_refused_naming_the_field(hist: tuple[Path, Any], bad: object) -> None:
    _, db = hist
    with pytest.raises(ValidationError) as exc:
        feedback.give_feedback(db, execution_id="x1", person="carol", rating=bad)
    assert exc.value.field == "rating" and exc.value.exit_code == 2
    assert feedback.feedback_of(db, execution_id="x1")[-1].person == "bob"  # nothing added


def test_only_finished_executions_take_feedback(hist: tuple[Path, Any]) -> None:
    _, db = hist
    with pytest.raises(ConflictError):
        feedback.give_feedback(db, execution_id="x7", person="carol", rating=3)  # waiting
    with pytest.raises(NotFoundError):
        feedback.give_feedback(db, execution_id="nope", person="carol", rating=3)
    with pytest.raises(ValidationError) as exc:
        feedback.give_feedback(db, execution_id="x1", person="carol", rating=3, comment="x" * 2001)
    assert exc.value.field == "comment"


def test_when_it_is_asked() -> None:
    ask = feedback.should_ask
    assert ask(state="succeeded", interactive=True, environ={})
    assert ask(state="failed", interactive=True, environ={})
    assert not ask(state="aborted", interactive=True, environ={})
    assert not ask(state="waiting", interactive=True, environ={})
    assert not ask(state="succeeded", interactive=False, environ={})
    assert not ask(state="succeeded", interactive=True, no_feedback=True, environ={})
    assert not ask(state="succeeded", interactive=True, dry_run=True, environ={})
    assert not ask(state="succeeded", interactive=True, environ={"OPSBOOK_NO_FEEDBACK": "1"})


def test_the_prompt_function(hist: tuple[Path, Any]) -> None:
    _, db = hist
    said: list[str] = []

    def answers(*lines: str) -> Any:
        it = iter(lines)

        def read(prompt: str) -> str:
            said.append(prompt)
            try:
                return next(it)
            except StopIteration:
                raise EOFError from None

        return read

    assert (
        feedback.ask(db, execution_id="x4", person="dan", read=answers(""), write=said.append)
        is None
    )
    row = feedback.ask(
        db, execution_id="x4", person="dan", read=answers("9", "3", "ok"), write=said.append
    )
    assert row is not None and (row.rating, row.comment) == (3, "ok")
    assert any("not a rating from 1 to 5" in s for s in said)
    assert (
        feedback.ask(db, execution_id="x4", person="eve", read=answers(), write=said.append) is None
    )


# --- `opsbook run` at a terminal and piped -----------------------------------------------------


def _read_until(fd: int, marker: bytes, seen: bytearray, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while marker not in seen:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the child closed the terminal
            return marker in seen
        if not chunk:
            return marker in seen
        seen.extend(chunk)
    return True


def _run_in_pty(root: Path, *args: str, answers: list[bytes]) -> tuple[int, str]:
    master, slave = os.openpty()
    env = {**os.environ, "OPSBOOK_WORKSPACE": str(root), "OPSBOOK_USER": "tess"}
    env.pop("OPSBOOK_NO_FEEDBACK", None)
    proc = subprocess.Popen(
        [*OPSBOOK, "run", "checks#quick", *args],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        start_new_session=True,
    )
    os.close(slave)
    seen = bytearray()
    try:
        for answer in answers:
            if not _read_until(
                master, PROMPT if not seen or PROMPT not in seen else b"Comment", seen
            ):
                break
            os.write(master, answer)
        _read_until(master, b"\x00never", seen, timeout=30)  # drain until the child exits
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    return code, seen.decode("utf-8", "replace")


def _ratings(db: Any) -> list[tuple[str, int, str | None]]:
    return [
        (str(r["person"]), int(r["rating"]), r["comment"])
        for r in db.query(
            "SELECT f.person, f.rating, f.comment FROM runbook_feedback f"
            " JOIN executions e ON e.id = f.execution_id WHERE e.started_by = 'tess'"
        )
    ]


def test_asked_after_a_run_at_a_terminal(hist: tuple[Path, Any]) -> None:
    root, db = hist
    code, out = _run_in_pty(root, answers=[b"4\n", b"say which service\n"])
    assert code == 0, out
    assert "How useful was this runbook?" in out and "Thanks: rated 4/5" in out
    assert _ratings(db) == [("tess", 4, "say which service")]


def test_enter_skips_and_no_feedback_does_not_ask(hist: tuple[Path, Any]) -> None:
    root, db = hist
    code, out = _run_in_pty(root, answers=[b"\n"])
    assert code == 0 and "How useful" in out
    code, out = _run_in_pty(root, "--no-feedback", answers=[])
    assert code == 0 and "How useful" not in out
    assert _ratings(db) == []


def test_never_asked_when_piped(hist: tuple[Path, Any]) -> None:
    root, db = hist
    env = {**os.environ, "OPSBOOK_WORKSPACE": str(root), "OPSBOOK_USER": "tess"}
    done = subprocess.run(
        [*OPSBOOK, "run", "checks#quick"],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "How useful" not in done.stdout + done.stderr
    assert _ratings(db) == []
