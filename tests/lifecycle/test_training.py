"""Training and certification over a workspace `opsbook init` wrote (its runbooks, contacts.yaml
and training.yaml), real SQLite and the real engine: assessments generated from the shipped
runbooks (deterministic, scored, malformed answers refused at file:line), the onboarding
checklist, training.yaml's errors, and a certification gating a production-class run (refused
without, allowed with, refused again once expired, never for a dry run)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from opsbook.config import Settings
from opsbook.db import Database, open_database
from opsbook.engine.states import State
from opsbook.errors import PermissionDenied, ValidationError
from opsbook.executions.local import make_engine
from opsbook.lifecycle import assessments, certifications, onboarding
from opsbook.lifecycle.training_config import load_training
from opsbook.runbooks.catalogue import load_catalogue
from opsbook.runbooks.parser import parse_file
from opsbook.workspace import Workspace, load_environment
from opsbook.workspace.init import init_workspace

AREA = "platform-operations"


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    root = tmp_path / "ws"
    init_workspace(target=root)
    toml = root / "opsbook.toml"  # production runs of unpublished text are the changes gate's
    toml.write_text(
        toml.read_text(encoding="utf-8").replace(
            "require_published = true", "require_published = false"
        ),
        encoding="utf-8",
    )
    return Workspace.load(root)


@pytest.fixture
def db(ws: Workspace) -> Iterator[Database]:
    database = open_database(f"sqlite:///{ws.state_dir / 'opsbook.db'}")
    yield database
    database.close()


def answer(path: Path, *, person: str, right: int) -> None:
    """Fill in the quiz: the first ``right`` questions right, the rest wrong."""
    ws = Workspace.load(path.parent)
    config = load_training(ws)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    quiz = assessments.generate(
        workspace=ws,
        config=config,
        area=data["quiz"]["area"],
        seed=data["quiz"]["seed"],
    )
    data["person"] = person
    for i, (q, key) in enumerate(zip(data["questions"], quiz.questions, strict=True)):
        good = assessments.LETTERS[key.answer]
        q["answer"] = good if i < right else next(x for x in "abcd" if x != good)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def test_a_quiz_is_generated_from_the_runbooks_the_same_for_the_same_seed(
    ws: Workspace,
) -> None:
    config = load_training(ws)
    one = assessments.generate(workspace=ws, config=config, area=AREA, seed=42)
    two = assessments.generate(workspace=ws, config=config, area=AREA, seed=42)
    other = assessments.generate(workspace=ws, config=config, area=AREA, seed=43)
    assert one == two
    assert [q.text for q in one.questions] != [q.text for q in other.questions]
    assert len(one.questions) == config.questions == 10
    # every kind of question is asked, and each comes from the runbooks or contacts.yaml
    assert {q.kind for q in one.questions} == {"symptom", "prerequisite", "expected", "escalation"}
    procs = {f"{rb.id}#{p.id}" for rb in load_catalogue(ws.runbooks_dir) for p in rb.procedures}
    for q in one.questions:
        assert 3 <= len(q.choices) <= 4 and len(set(q.choices)) == len(q.choices)
        assert q.source == "contacts.yaml" or q.source.split("/")[0] in procs
    # the file carries no answers
    out = ws.root / "quiz.yaml"
    assessments.write_quiz(one, out)
    written = yaml.safe_load(out.read_text(encoding="utf-8"))
    assert all(q["answer"] is None for q in written["questions"])
    assert "right" not in out.read_text(encoding="utf-8")


def test_an_answered_quiz_is_scored_stored_and_audited(ws: Workspace, db: Database) -> None:
    config = load_training(ws)
    quiz = assessments.generate(workspace=ws, config=config, area=AREA, seed=7)
    path = ws.root / "quiz.yaml"
    assessments.write_quiz(quiz, path)
    answer(path, person="tina", right=7)
    low = assessments.score(
        db=db, workspace=ws, config=config, path=path, person=None, actor="tina"
    )
    assert (low.correct, low.score, low.passed) == (7, 70.0, False)
    assert [d["correct"] for d in low.detail] == [True] * 7 + [False] * 3
    answer(path, person="tina", right=9)
    high = assessments.score(
        db=db, workspace=ws, config=config, path=path, person=None, actor="tina"
    )
    assert (high.score, high.passed) == (90.0, True)
    assert high.certification is None  # no graded drill yet
    rows = db.query("SELECT person, score, passed FROM training_assessments ORDER BY id")
    assert [(r["person"], r["score"], r["passed"]) for r in rows] == [
        ("tina", 70.0, 0),
        ("tina", 90.0, 1),
    ]
    assert len(db.query("SELECT 1 FROM events WHERE action = 'training.assessment.scored'")) == 2
    ticked = {i.id: i for i in onboarding.status(db=db, config=config, person="tina")}
    assert ticked["assessment"].done_at is not None
    assert ticked["shadow"].done_at is None


def test_malformed_answer_files_are_refused_at_file_and_line(ws: Workspace, db: Database) -> None:
    config = load_training(ws)
    quiz = assessments.generate(workspace=ws, config=config, area=AREA, seed=3)
    path = ws.root / "quiz.yaml"
    assessments.write_quiz(quiz, path)
    text = path.read_text(encoding="utf-8")

    def refused(body: str) -> ValidationError:
        path.write_text(body, encoding="utf-8")
        with pytest.raises(ValidationError) as err:
            assessments.score(
                db=db, workspace=ws, config=config, path=path, person="tina", actor="tina"
            )
        assert err.value.location is not None and err.value.location.path == str(path)
        return err.value

    bad_yaml = refused(text + "  - [unclosed\n")
    assert bad_yaml.location is not None and bad_yaml.location.line is not None
    letter = refused(text.replace("answer: null", "answer: e", 1))
    assert "not one of a, b, c, d" in str(letter)
    lines = text.splitlines()
    assert letter.location is not None
    assert "answer" in lines[letter.location.line - 1] or "- id:" in lines[letter.location.line - 1]
    edited = refused(text.replace("seed: 3", "seed: 4"))
    assert "changed since this quiz was generated" in str(edited)
    assert "not a quiz file" in str(refused("questions: []\n"))
    assert db.query("SELECT COUNT(*) AS n FROM training_assessments")[0]["n"] == 0


def test_onboarding_items_are_ticked_and_unknown_ones_named(ws: Workspace, db: Database) -> None:
    config = load_training(ws)
    state = onboarding.tick(db=db, config=config, person="tina", item="shadow", actor="lead")
    assert state.done_at and state.recorded_by == "lead"
    with pytest.raises(ValidationError, match="unknown onboarding item") as err:
        onboarding.tick(db=db, config=config, person="tina", item="shadw", actor="lead")
    assert "did you mean shadow" in (err.value.hint or "")
    assert db.query("SELECT action FROM events WHERE action LIKE 'training.%'") == [
        {"action": "training.onboarding.ticked"}
    ]


def test_training_yaml_errors_name_the_line(ws: Workspace) -> None:
    path = ws.root / "training.yaml"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("fault: crash", "fault: crashh"), encoding="utf-8")
    with pytest.raises(ValidationError) as err:
        load_training(ws)
    assert err.value.location is not None
    lines = path.read_text(encoding="utf-8").splitlines()
    assert "crashh" in lines[(err.value.location.line or 1) - 1]
    path.write_text(text.replace("pass_mark: 80", "pass_mark: 180"), encoding="utf-8")
    with pytest.raises(ValidationError, match="percentage"):
        load_training(ws)


def _certify(db: Database, person: str, *, earned: datetime, area: str = AREA) -> None:
    """A passed assessment and a passed drill, as the training commands store them."""
    when = earned.isoformat().replace("+00:00", "Z")
    db.insert(
        "INSERT INTO training_assessments (person, area, quiz_digest, questions, correct, score,"
        " pass_mark, passed, detail, submitted_at) VALUES (?, ?, 'x', 10, 9, 90, 80, 1, '[]', ?)",
        (person, area, when),
    )
    db.insert(
        "INSERT INTO training_drills (scenario, area, trainee, environment, state, started_at,"
        " started_by, faults, ended_at, score, passed) VALUES ('payment-crash', ?, ?, 'sandbox',"
        " 'ended', ?, 'lead', '[]', ?, 90, 1)",
        (area, person, when, when),
    )


async def test_a_certification_gates_production_class_runs(ws: Workspace, db: Database) -> None:
    config = load_training(ws)
    assert config.require_certification  # opsbook init turns the gate on
    prod = ws.environments_dir / "prod-like.yaml"
    data: dict[str, Any] = yaml.safe_load(
        (ws.environments_dir / "sandbox.yaml").read_text(encoding="utf-8")
    )
    prod.write_text(
        yaml.safe_dump({**data, "name": "prod-like", "class": "production"}), encoding="utf-8"
    )
    (ws.runbooks_dir / "hello.md").write_text(
        "---\nid: hello\ntitle: Hello\nowner: operations\n---\n\n# Hello\n\n## Greet\n\n"
        "```yaml procedure\npermissions: [operator]\n```\n\n### Say hello\n\nGreets.\n\n"
        "```sh\necho hello\n```\n\n```expect\nexit_code == 0\n```\n",
        encoding="utf-8",
    )

    async def run(user: str, env: str = "prod-like", dry_run: bool = False) -> Any:
        rb = parse_file(ws.runbooks_dir / "hello.md")
        return await make_engine(ws, Settings.from_env(), db).start(
            runbook=rb,
            procedure=rb.procedures[0],
            environment=load_environment(ws, env),
            params={},
            started_by=user,
            dry_run=dry_run,
        )

    with pytest.raises(PermissionDenied, match="holds no platform-operations certification"):
        await run("tina")
    denied = db.query(
        "SELECT payload FROM events WHERE action = 'execution.start.denied' ORDER BY id"
    )
    assert json.loads(denied[-1]["payload"])["guard"] == "training.require_certification"
    assert (await run("tina", env="sandbox")).state is State.SUCCEEDED  # not production
    assert (await run("tina", dry_run=True)).state is State.SUCCEEDED  # dry runs never refused

    now = datetime.now(UTC)
    _certify(db, "tina", earned=now - timedelta(days=1))
    cert = certifications.award_if_earned(
        db=db, config=config, person="tina", area=AREA, actor="lead"
    )
    assert cert is not None and cert["status"] == "valid"
    assert (await run("tina")).state is State.SUCCEEDED

    # a certification earned 400 days ago has expired (valid_for 365d)
    _certify(db, "olaf", earned=now - timedelta(days=400))
    old = certifications.award_if_earned(
        db=db, config=config, person="olaf", area=AREA, actor="lead", now=now - timedelta(days=400)
    )
    assert old is not None
    with pytest.raises(PermissionDenied, match="expired on"):
        await run("olaf")
    due = certifications.due(db=db, config=config)
    assert [(c.person, c.status) for c in due] == [("olaf", "expired")]


def test_training_from_the_command_line(ws: Workspace) -> None:
    def ob(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "opsbook.cli.main", "training", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=ws.root,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "OPSBOOK_WORKSPACE": str(ws.root), "OPSBOOK_USER": "tina"},
        )

    out = ob("assess", "--area", AREA, "--seed", "5", "--out", "quiz.yaml", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["seed"] == 5
    unanswered = ob("submit", "quiz.yaml")
    assert unanswered.returncode == 2  # nobody named
    assert "person: is empty" in unanswered.stderr
    assert "Traceback" not in unanswered.stderr
    failed = ob("submit", "quiz.yaml", "--person", "tina", "--json")
    assert failed.returncode == 1
    assert json.loads(failed.stdout)["passed"] is False
    unknown = ob("assess", "--area", "cooking", "--out", "q.yaml")
    assert unknown.returncode == 2 and "unknown training area" in unknown.stderr
    ticked = ob("onboarding", "--check", "shadow", "--json")
    assert ticked.returncode == 0, ticked.stderr
    items = {i["id"]: i for i in json.loads(ticked.stdout)["items"]}
    assert items["shadow"]["done_at"]
    scen = ob("scenarios", "--json")
    assert {s["id"] for s in json.loads(scen.stdout)} >= {"payment-crash"}
    status = ob("status", "--json")
    assert json.loads(status.stdout)[0]["person"] == "tina"
    certs = ob("certs", "--due")
    assert certs.returncode == 0 and "no certification is due" in certs.stdout
