"""Runbook changes as data: the states and their transition table, a change with its reviews
and acknowledgements, published versions, and the reads (opsbook.lifecycle.changes has the
operations that change them)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from opsbook.errors import ConflictError, NotFoundError, ValidationError

if TYPE_CHECKING:
    from opsbook.db import Database


class ChangeState(StrEnum):
    DRAFT = "draft"  # identified and drafted, waiting for its two reviews
    REVIEWED = "reviewed"  # both reviews approved, waiting for a test run
    TESTED = "tested"  # test evidence recorded, waiting for approval
    APPROVED = "approved"
    PUBLISHED = "published"  # committed and tagged, people being informed
    TRAINED = "trained"  # everyone who must know acknowledged it
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"


S = ChangeState
TRANSITIONS: Mapping[ChangeState, frozenset[ChangeState]] = {
    S.DRAFT: frozenset({S.REVIEWED, S.REJECTED, S.WITHDRAWN}),
    S.REVIEWED: frozenset({S.TESTED, S.WITHDRAWN}),
    S.TESTED: frozenset({S.APPROVED, S.REJECTED, S.WITHDRAWN}),
    S.APPROVED: frozenset({S.PUBLISHED, S.WITHDRAWN}),
    S.PUBLISHED: frozenset({S.TRAINED}),
}
OPEN_STATES = frozenset({S.DRAFT, S.REVIEWED, S.TESTED, S.APPROVED})
REVIEW_KINDS = ("technical", "operational")


def check_transition(current: ChangeState, proposed: ChangeState, *, change_id: int) -> None:
    allowed = TRANSITIONS.get(current, frozenset())
    if proposed not in allowed:
        nexts = ", ".join(sorted(allowed)) or "none (it is final)"
        raise ConflictError(
            f"change {change_id} is {current}: it cannot become {proposed}",
            hint=f"from {current} it may become: {nexts}",
        )


@dataclass(frozen=True)
class Review:
    kind: str
    reviewer: str
    decision: str
    comment: str
    ts: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Ack:
    person: str
    note: str
    ts: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Change:
    id: int
    runbook_id: str
    path: str
    content_hash: str
    content: str
    base_version: int | None
    reason: str
    state: ChangeState
    proposed_by: str
    created_at: str
    updated_at: str
    lint_warnings: tuple[str, ...]
    test_execution_id: str | None
    test_environment: str | None
    tested_by: str | None
    tested_at: str | None
    approved_by: str | None
    approved_at: str | None
    published_by: str | None
    published_at: str | None
    version: int | None
    git_commit: str | None
    git_tag: str | None
    inform: tuple[str, ...]
    trained_at: str | None
    closed_reason: str | None
    reviews: tuple[Review, ...] = ()
    acks: tuple[Ack, ...] = ()

    def review(self, kind: str) -> Review | None:
        return next((r for r in self.reviews if r.kind == kind), None)

    @property
    def pending_acks(self) -> tuple[str, ...]:
        done = {a.person for a in self.acks}
        return tuple(p for p in self.inform if p not in done)

    def steps(self) -> list[dict[str, Any]]:
        """The seven steps with what is recorded for each (for show and the console)."""
        tech, ops = self.review("technical"), self.review("operational")

        def rv(r: Review | None) -> str:
            return f"{r.decision} by {r.reviewer} at {r.ts[:19]}Z" if r else "waiting"

        return [
            {"step": "identify", "done": True, "detail": self.reason},
            {
                "step": "draft",
                "done": True,
                "detail": f"{self.path} sha256 {self.content_hash[:12]}",
            },
            {
                "step": "review",
                "done": bool(tech and ops and tech.decision == ops.decision == "approved"),
                "detail": f"technical: {rv(tech)}; operational: {rv(ops)}",
            },
            {
                "step": "test",
                "done": self.test_execution_id is not None,
                "detail": (
                    f"execution {self.test_execution_id} on {self.test_environment}"
                    f" (recorded by {self.tested_by})"
                    if self.test_execution_id
                    else "waiting"
                ),
            },
            {
                "step": "approve",
                "done": self.approved_by is not None,
                "detail": f"by {self.approved_by}" if self.approved_by else "waiting",
            },
            {
                "step": "publish",
                "done": self.version is not None,
                "detail": (
                    f"v{self.version}, tag {self.git_tag}, commit {(self.git_commit or '')[:12]}"
                    if self.version
                    else "waiting"
                ),
            },
            {
                "step": "train",
                "done": self.state is S.TRAINED,
                "detail": (
                    "acknowledged by "
                    + (", ".join(a.person for a in self.acks) or "nobody yet")
                    + (f"; waiting for {', '.join(self.pending_acks)}" if self.pending_acks else "")
                    if self.version is not None
                    else "waiting (after publication)"
                ),
            },
        ]

    def to_dict(self, *, content: bool = False) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k not in ("reviews", "acks", "content")}
        out["state"] = str(self.state)
        out["lint_warnings"] = list(self.lint_warnings)
        out["inform"] = list(self.inform)
        out["reviews"] = [r.to_dict() for r in self.reviews]
        out["acks"] = [a.to_dict() for a in self.acks]
        out["pending_acks"] = list(self.pending_acks)
        out["steps"] = self.steps()
        if content:
            out["content"] = self.content
        return out


@dataclass(frozen=True)
class Publication:
    runbook_id: str
    version: int
    content_hash: str
    path: str
    git_commit: str
    git_tag: str
    change_id: int | None
    published_by: str
    published_at: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


# ------------------------------------------------------------------------------ reading
def _change(row: Mapping[str, Any], reviews: Sequence[Review], acks: Sequence[Ack]) -> Change:
    return Change(
        id=int(row["id"]),
        runbook_id=str(row["runbook_id"]),
        path=str(row["path"]),
        content_hash=str(row["content_hash"]),
        content=str(row["content"]),
        base_version=int(row["base_version"]) if row["base_version"] is not None else None,
        reason=str(row["reason"]),
        state=ChangeState(row["state"]),
        proposed_by=str(row["proposed_by"]),
        created_at=str(row["created_at"]),
        updated_at=str(row["updated_at"]),
        lint_warnings=tuple(json.loads(row["lint_warnings"] or "[]")),
        test_execution_id=row["test_execution_id"],
        test_environment=row["test_environment"],
        tested_by=row["tested_by"],
        tested_at=row["tested_at"],
        approved_by=row["approved_by"],
        approved_at=row["approved_at"],
        published_by=row["published_by"],
        published_at=row["published_at"],
        version=int(row["version"]) if row["version"] is not None else None,
        git_commit=row["git_commit"],
        git_tag=row["git_tag"],
        inform=tuple(json.loads(row["inform"] or "[]")),
        trained_at=row["trained_at"],
        closed_reason=row["closed_reason"],
        reviews=tuple(reviews),
        acks=tuple(acks),
    )


def _parse_id(change_id: int | str) -> int:
    text = str(change_id).strip().lstrip("#")
    if not text.isdigit():
        raise ValidationError(
            f"{change_id!r} is not a change id",
            field="id",
            hint="a number, as `changes list` shows",
        )
    return int(text)


def get_change(*, db: Database, change_id: int | str) -> Change:
    cid = _parse_id(change_id)
    row = db.one("SELECT * FROM runbook_changes WHERE id = ?", (cid,))
    if row is None:
        raise NotFoundError(
            f"no runbook change {cid}", hint="list them with `opsbook changes list`"
        )
    reviews = [
        Review(
            str(r["kind"]), str(r["reviewer"]), str(r["decision"]), str(r["comment"]), str(r["ts"])
        )
        for r in db.query(
            "SELECT * FROM runbook_change_reviews WHERE change_id = ? ORDER BY id", (cid,)
        )
    ]
    acks = [
        Ack(str(r["person"]), str(r["note"]), str(r["ts"]))
        for r in db.query(
            "SELECT * FROM runbook_change_acks WHERE change_id = ? ORDER BY ts", (cid,)
        )
    ]
    return _change(row, reviews, acks)


def list_changes(
    *, db: Database, state: str | None = None, runbook_id: str | None = None, limit: int = 200
) -> list[Change]:
    """Newest first, without reviews and acks (``get_change`` has them)."""
    where: list[str] = []
    args: list[Any] = []
    if state:
        if state == "open":
            where.append("state IN (" + ",".join("?" * len(OPEN_STATES)) + ")")
            args.extend(sorted(OPEN_STATES))
        else:
            try:
                ChangeState(state)
            except ValueError:
                raise ValidationError(
                    f"no change state {state!r}",
                    field="state",
                    hint="one of: open, " + ", ".join(s.value for s in ChangeState),
                ) from None
            where.append("state = ?")
            args.append(state)
    if runbook_id:
        where.append("runbook_id = ?")
        args.append(runbook_id)
    sql = "SELECT * FROM runbook_changes"
    if where:
        sql += " WHERE " + " AND ".join(where)
    rows = db.query(sql + " ORDER BY id DESC LIMIT ?", (*args, limit))
    return [_change(r, (), ()) for r in rows]


def _publication(row: Mapping[str, Any]) -> Publication:
    return Publication(
        runbook_id=str(row["runbook_id"]),
        version=int(row["version"]),
        content_hash=str(row["content_hash"]),
        path=str(row["path"]),
        git_commit=str(row["git_commit"]),
        git_tag=str(row["git_tag"]),
        change_id=int(row["change_id"]) if row["change_id"] is not None else None,
        published_by=str(row["published_by"]),
        published_at=str(row["published_at"]),
    )


def publications(*, db: Database, runbook_id: str | None = None) -> list[Publication]:
    """Published versions, oldest first (of one runbook, or of all)."""
    if runbook_id:
        rows = db.query(
            "SELECT * FROM runbook_publications WHERE runbook_id = ? ORDER BY version",
            (runbook_id,),
        )
    else:
        rows = db.query("SELECT * FROM runbook_publications ORDER BY runbook_id, version")
    return [_publication(r) for r in rows]


def published(*, db: Database, runbook_id: str, content_hash: str) -> Publication | None:
    """The newest publication of exactly this digest, if any."""
    row = db.one(
        "SELECT * FROM runbook_publications WHERE runbook_id = ? AND content_hash = ?"
        " ORDER BY version DESC LIMIT 1",
        (runbook_id, content_hash),
    )
    return _publication(row) if row else None


def latest_publication(*, db: Database, runbook_id: str) -> Publication | None:
    row = db.one(
        "SELECT * FROM runbook_publications WHERE runbook_id = ? ORDER BY version DESC LIMIT 1",
        (runbook_id,),
    )
    return _publication(row) if row else None
