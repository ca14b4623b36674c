"""Knowledge assessments generated from the runbooks themselves (issue 15).

Four kinds of multiple-choice question, each built from what the runbooks and contacts.yaml
say, so the quiz follows the procedures as they change:

- **symptom**: a procedure's description (its own words, its title hidden) → which procedure;
- **prerequisite**: a procedure → which of four statements is one of its prerequisites;
- **expected**: a step of a procedure → which check (``expect`` expression) verifies it;
- **escalation**: a contact's "when" → which role to call, and at which escalation level.

Generation is deterministic: the same area, seed, question count and runbook/contacts text
give the same quiz. The quiz file carries no answers: it carries the seed and a digest of what
it was generated from; scoring generates it again and compares (a quiz generated before a
runbook changed is refused with the reason, never scored against other answers).
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opsbook import audit
from opsbook.errors import Location, ValidationError

if TYPE_CHECKING:
    from opsbook.db import Database
    from opsbook.lifecycle.training_config import TrainingConfig
    from opsbook.runbooks.model import Runbook
    from opsbook.workspace import Workspace

LETTERS = ("a", "b", "c", "d")


@dataclass(frozen=True)
class Question:
    id: str
    kind: str
    text: str
    choices: tuple[str, ...]
    answer: int  # index into choices (never written to the quiz file)
    source: str  # where it comes from: runbook#procedure or contacts.yaml

    def to_quiz(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "question": self.text,
            "choices": {LETTERS[i]: c for i, c in enumerate(self.choices)},
            "answer": None,
        }


@dataclass(frozen=True)
class Quiz:
    area: str
    seed: int
    digest: str
    questions: tuple[Question, ...]

    def to_file(self) -> dict[str, Any]:
        return {
            "quiz": {"area": self.area, "seed": self.seed, "digest": self.digest},
            "person": None,
            "questions": [q.to_quiz() for q in self.questions],
        }


@dataclass(frozen=True)
class AssessmentResult:
    id: int
    person: str
    area: str
    questions: int
    correct: int
    score: float
    pass_mark: float
    passed: bool
    detail: tuple[dict[str, Any], ...]
    certification: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "person": self.person,
            "area": self.area,
            "questions": self.questions,
            "correct": self.correct,
            "score": self.score,
            "pass_mark": self.pass_mark,
            "passed": self.passed,
            "detail": list(self.detail),
            "certification": self.certification,
        }


def _first_sentence(text: str) -> str:
    flat = " ".join(text.split())
    for end in (". ", ": "):
        if end in flat:
            flat = flat.split(end, 1)[0] + "."
            break
    return flat[:300]


def _contacts(ws: Workspace) -> list[tuple[str, str, str]]:
    """(level title, role, when) of every contact with a "when"."""
    from opsbook.incidents._yamlfile import load_yaml  # noqa: PLC0415

    doc = load_yaml(ws.contacts_path, what="the contacts file")
    out: list[tuple[str, str, str]] = []
    for lv in (doc.data or {}).get("levels") or []:
        if not isinstance(lv, dict):
            continue
        title = str(lv.get("title") or lv.get("name") or "")
        for c in lv.get("contacts") or []:
            if isinstance(c, dict) and c.get("when") and (c.get("role") or c.get("name")):
                out.append((title, str(c.get("role") or c.get("name")), str(c["when"])))
    return out


def _pick(rng: random.Random, right: str, pool: list[str]) -> tuple[tuple[str, ...], int] | None:
    others = sorted({p for p in pool if p != right})
    if len(others) < 2:
        return None
    wrong = rng.sample(others, min(3, len(others)))
    choices = [right, *wrong]
    rng.shuffle(choices)
    return tuple(choices), choices.index(right)


def _candidates(
    rng: random.Random, runbooks: list[Runbook], contacts: list[tuple[str, str, str]]
) -> list[Question]:
    procs = [(rb, p) for rb in runbooks for p in rb.procedures]
    titles = [p.title for _, p in procs]
    prereqs = [x for _, p in procs for x in p.prerequisites]
    checks = [e.expr for _, p in procs for s in p.steps for e in s.expectations]
    out: list[Question] = []
    for rb, p in procs:
        ref = f"{rb.id}#{p.id}"
        desc = _first_sentence(p.description)
        if desc and p.title.lower() not in desc.lower():
            picked = _pick(rng, p.title, titles)
            if picked:
                out.append(
                    Question(
                        "",
                        "symptom",
                        f"Which procedure fits? {desc}",
                        picked[0],
                        picked[1],
                        ref,
                    )
                )
        if p.prerequisites:
            right = rng.choice(p.prerequisites)
            picked = _pick(rng, right, [x for x in prereqs if x not in p.prerequisites] + [right])
            if picked:
                out.append(
                    Question(
                        "",
                        "prerequisite",
                        f"Which of these must be true before you start '{p.title}' ({ref})?",
                        picked[0],
                        picked[1],
                        ref,
                    )
                )
        for s in p.steps:
            if not s.expectations:
                continue
            mine = {e.expr for e in s.expectations}
            right = rng.choice(sorted(mine))
            picked = _pick(rng, right, [c for c in checks if c not in mine] + [right])
            if picked:
                out.append(
                    Question(
                        "",
                        "expected",
                        f"In '{p.title}', which check verifies the step '{s.title}'?",
                        picked[0],
                        picked[1],
                        f"{ref}/{s.id}",
                    )
                )
    roles = [r for _, r, _ in contacts]
    levels = [lv for lv, _, _ in contacts]
    for level, role, when in contacts:
        picked = _pick(rng, role, roles)
        if picked:
            out.append(
                Question(
                    "",
                    "escalation",
                    f"Whom do you call for: {when}?",
                    picked[0],
                    picked[1],
                    "contacts.yaml",
                )
            )
        picked = _pick(rng, level, levels)
        if picked:
            out.append(
                Question(
                    "",
                    "escalation",
                    f"At which escalation level is the {role}?",
                    picked[0],
                    picked[1],
                    "contacts.yaml",
                )
            )
    return out


def _digest(area: str, seed: int, n: int, runbooks: list[Runbook], ws: Workspace) -> str:
    h = hashlib.sha256(f"{area}|{seed}|{n}".encode())
    for rb in sorted(runbooks, key=lambda r: r.id):
        h.update(f"|{rb.id}:{rb.content_hash}".encode())
    try:
        h.update(ws.contacts_path.read_bytes())
    except OSError:
        h.update(b"no contacts")
    return h.hexdigest()[:16]


def generate(*, workspace: Workspace, config: TrainingConfig, area: str, seed: int) -> Quiz:
    """The quiz for ``area`` (its runbooks and the escalation levels), ``config.questions``
    long, mixing the kinds of question."""
    from opsbook.runbooks.catalogue import load_catalogue  # noqa: PLC0415

    config.area(area)  # ValidationError naming the areas
    catalogue = list(load_catalogue(workspace.runbooks_dir))
    mine = [rb for rb in catalogue if config.area_of(rb.id) == area]
    if not mine:
        raise ValidationError(
            f"area {area!r} has no runbook in this workspace",
            field="area",
            hint="list its runbooks under areas in training.yaml",
        )
    rng = random.Random(seed)  # noqa: S311 - a quiz, not a secret
    pool = _candidates(rng, mine, _contacts(workspace))
    by_kind: dict[str, list[Question]] = {}
    for q in pool:
        by_kind.setdefault(q.kind, []).append(q)
    for qs in by_kind.values():
        rng.shuffle(qs)
    chosen: list[Question] = []
    kinds = sorted(by_kind)
    while len(chosen) < config.questions and any(by_kind.values()):
        for k in kinds:  # round robin over the kinds: every kind is asked
            if by_kind[k] and len(chosen) < config.questions:
                chosen.append(by_kind[k].pop())
    questions = tuple(
        Question(f"q{i + 1}", q.kind, q.text, q.choices, q.answer, q.source)
        for i, q in enumerate(chosen)
    )
    return Quiz(area, seed, _digest(area, seed, config.questions, mine, workspace), questions)


def write_quiz(quiz: Quiz, path: Path) -> None:
    import yaml  # noqa: PLC0415

    header = (
        f"# Runbook knowledge assessment: {quiz.area} ({len(quiz.questions)} questions).\n"
        "# Put your name under person: and a letter (a-d) after each answer:, then\n"
        f"#   opsbook training submit {path.name}\n"
    )
    text = yaml.safe_dump(quiz.to_file(), sort_keys=False, allow_unicode=True, width=100)
    path.write_text(header + text, encoding="utf-8")


def score(
    *,
    db: Database,
    workspace: Workspace,
    config: TrainingConfig,
    path: Path,
    person: str | None,
    actor: str,
    now: datetime | None = None,
) -> AssessmentResult:
    """Score an answered quiz file; the result is stored and audited, and a pass may complete
    a certification (:func:`opsbook.lifecycle.certifications.award_if_earned`)."""
    from opsbook.incidents._yamlfile import load_yaml  # noqa: PLC0415
    from opsbook.lifecycle import certifications, onboarding  # noqa: PLC0415

    doc = load_yaml(path, what="the answer file")  # YAML errors at file:line
    data = doc.data
    meta = data.get("quiz") if isinstance(data, dict) else None
    if not isinstance(meta, dict) or not {"area", "seed", "digest"} <= set(meta):
        raise doc.error(
            "this is not a quiz file: quiz: {area, seed, digest} is missing",
            "quiz",
            hint="generate one with `opsbook training assess --area AREA --out quiz.yaml`",
        )
    seed = meta["seed"]
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise doc.error(
            "quiz.seed must be a whole number", "quiz", "seed", hint="do not edit quiz:"
        )
    who = person or (data.get("person") if isinstance(data.get("person"), str) else None)
    if not who:
        raise doc.error(
            "whose answers are these? person: is empty",
            "person",
            hint="write your name after person:, or pass --person NAME",
        )
    quiz = generate(workspace=workspace, config=config, area=str(meta["area"]), seed=seed)
    if quiz.digest != meta["digest"]:
        raise doc.error(
            "the runbooks or contacts changed since this quiz was generated",
            "quiz",
            "digest",
            hint="generate a new quiz: opsbook training assess --area " + quiz.area,
        )
    raw_qs = data.get("questions")
    if not isinstance(raw_qs, list):
        raise doc.error(
            "questions: is missing or not a list", "questions", hint="keep the quiz's questions"
        )
    given: dict[str, str | None] = {}
    for i, q in enumerate(raw_qs):
        if not isinstance(q, dict) or not isinstance(q.get("id"), str):
            raise doc.error(f"questions[{i}] has no id", "questions", i, hint="keep the quiz's ids")
        ans = q.get("answer")
        if ans is not None and (not isinstance(ans, str) or ans.strip().lower() not in LETTERS):
            raise doc.error(
                f"questions[{i}].answer: {ans!r} is not one of a, b, c, d",
                "questions",
                i,
                "answer",
                hint="answer: b",
            )
        given[q["id"]] = ans.strip().lower() if isinstance(ans, str) else None
    unknown = sorted(set(given) - {q.id for q in quiz.questions})
    if unknown:
        raise ValidationError(
            f"question {unknown[0]} is not in this quiz",
            location=Location(str(path), doc.line("questions")),
            hint="keep the quiz's questions as generated",
        )
    detail = []
    correct = 0
    for q in quiz.questions:
        ok = given.get(q.id) == LETTERS[q.answer]
        correct += ok
        detail.append(
            {
                "id": q.id,
                "kind": q.kind,
                "given": given.get(q.id),
                "right": LETTERS[q.answer],
                "correct": ok,
                "source": q.source,
            }
        )
    pct = round(100.0 * correct / len(quiz.questions), 1) if quiz.questions else 0.0
    passed = pct >= config.pass_mark
    when = (now or datetime.now(UTC)).isoformat(timespec="seconds").replace("+00:00", "Z")
    with db.transaction():
        aid = db.insert(
            "INSERT INTO training_assessments (person, area, quiz_digest, questions, correct,"
            " score, pass_mark, passed, detail, submitted_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                who,
                quiz.area,
                quiz.digest,
                len(quiz.questions),
                correct,
                pct,
                config.pass_mark,
                int(passed),
                json.dumps(detail),
                when,
            ),
        )
        audit.record(
            db=db,
            actor=actor,
            action="training.assessment.scored",
            subject=f"person:{who}",
            payload={"id": aid, "area": quiz.area, "score": pct, "passed": passed},
        )
        if passed:
            onboarding.tick_by(db=db, config=config, person=who, done_by="assessment", actor=actor)
    cert = (
        certifications.award_if_earned(
            db=db, config=config, person=who, area=quiz.area, actor=actor
        )
        if passed
        else None
    )
    return AssessmentResult(
        id=aid,
        person=who,
        area=quiz.area,
        questions=len(quiz.questions),
        correct=correct,
        score=pct,
        pass_mark=config.pass_mark,
        passed=passed,
        detail=tuple(detail),
        certification=cert,
    )
