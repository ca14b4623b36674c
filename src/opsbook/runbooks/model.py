"""The runbook model: what the parser produces and the engine runs. Frozen, fully built.

Nothing here is filled in after construction. Line numbers are 1-based and point into the
runbook file so every later error (lint, validation, a failed expectation) can name file:line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any


class StepKind(StrEnum):
    """What a step does; ``MANUAL`` is a step with no executable block."""

    SH = "sh"
    HTTP = "http"
    SQL = "sql"
    PROMQL = "promql"
    ACTION = "action"
    APPROVAL = "approval"
    DECIDE = "decide"
    MANUAL = "manual"


#: Info strings that run, mapped to the step kind (``bash`` runs with bash, ``sh`` with sh).
EXECUTABLE_INFO: Mapping[str, StepKind] = {
    "sh": StepKind.SH,
    "bash": StepKind.SH,
    "http": StepKind.HTTP,
    "sql": StepKind.SQL,
    "promql": StepKind.PROMQL,
    "action": StepKind.ACTION,
    "approval": StepKind.APPROVAL,
    "decide": StepKind.DECIDE,
}

PARAM_TYPES = ("string", "integer", "number", "boolean", "choice", "duration", "secret")
RISKS = ("low", "medium", "high")
WHEN_TO_USE = ("proactive", "reactive", "knowledge-transfer")
#: A queue name (a step's ``{queue=…}``, an environment's ``queue:`` and ``queues:``): the
#: workers' queue that runs it (ADR 0017 §5).
QUEUE_PATTERN = r"[a-z0-9][a-z0-9._-]*"
#: ``###`` headings inside a procedure that are documentation, never steps (any case).
DOC_HEADINGS = ("troubleshooting", "common issues", "notes", "references", "see also")


@dataclass(frozen=True)
class Param:
    name: str
    type: str  # one of PARAM_TYPES
    line: int
    required: bool = False
    default: Any = None
    choices: tuple[str, ...] = ()
    min: float | None = None
    max: float | None = None
    pattern: str | None = None
    secret_from: str | None = None  # for type=secret: the secret's name in the providers
    description: str = ""


@dataclass(frozen=True)
class OnFailure:
    """``stop`` (default) | ``continue`` | ``goto`` (target = step id) | ``run`` (RUNBOOK#PROC)."""

    action: str = "stop"
    target: str | None = None


@dataclass(frozen=True)
class StepOptions:
    """The block's attributes, typed. Durations are seconds."""

    timeout: float | None = None
    retries: int = 0
    retry_delay: float = 1.0
    when: str | None = None  # CEL
    for_each: str | None = None  # CEL evaluating to a list
    on_failure: OnFailure = field(default_factory=OnFailure)
    idempotent: bool = False
    risk: str | None = None
    cwd: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    db: str | None = None  # sql: which database of the environment
    write: bool = False  # sql: allow writes
    interpreter: str | None = None  # sh: "bash" for ```bash blocks, None = /bin/sh
    queue: str | None = None  # the workers' queue (logical, mapped by the environment's queues:)


@dataclass(frozen=True)
class Block:
    info: str  # the info string's type word as written (sh, bash, http, ...)
    body: str
    attrs: Mapping[str, str]  # raw attributes as written
    line: int  # line of the opening fence


@dataclass(frozen=True)
class Expectation:
    expr: str  # one CEL expression
    line: int


@dataclass(frozen=True)
class ChecklistItem:
    text: str
    line: int


@dataclass(frozen=True)
class DecideRule:
    """One branch of a ``decide`` block. ``condition`` is None for the ``else`` branch."""

    condition: str | None
    goto: str | None
    run: str | None
    line: int


@dataclass(frozen=True)
class ApprovalSpec:
    quorum: int = 1
    roles: tuple[str, ...] = ()
    expires: float | None = None  # seconds after the approval is requested


@dataclass(frozen=True)
class Step:
    id: str
    title: str
    kind: StepKind
    line: int
    instruction: str = ""  # the prose under the heading (Markdown), shown to the operator
    block: Block | None = None
    options: StepOptions = field(default_factory=StepOptions)
    expectations: tuple[Expectation, ...] = ()
    checklist: tuple[ChecklistItem, ...] = ()
    decide: tuple[DecideRule, ...] = ()
    approval: ApprovalSpec | None = None
    action_name: str | None = None  # for kind=action: the action's registered name
    action_args: Mapping[str, Any] = field(default_factory=dict)  # for kind=action (untemplated)

    @property
    def changes_state(self) -> bool:
        """Whether the step may change something (used by the risk: high approval rule)."""
        return self.kind in (StepKind.SH, StepKind.HTTP, StepKind.ACTION) or (
            self.kind is StepKind.SQL and self.options.write
        )


@dataclass(frozen=True)
class DocSection:
    title: str
    body: str
    line: int


@dataclass(frozen=True)
class Procedure:
    id: str
    title: str
    line: int
    steps: tuple[Step, ...]
    when_to_use: str | None = None
    schedule: str | None = None
    permissions: tuple[str, ...] = ()
    prerequisites: tuple[str, ...] = ()
    environments: tuple[str, ...] = ()
    risk: str = "low"
    params: tuple[Param, ...] = ()
    description: str = ""  # prose between the procedure heading and the first step
    doc_sections: tuple[DocSection, ...] = ()  # Troubleshooting, Common issues, Notes, ...
    meta_line: int = 0  # line of the ```yaml procedure fence

    def step(self, step_id: str) -> Step | None:
        return next((s for s in self.steps if s.id == step_id), None)

    @property
    def troubleshooting(self) -> tuple[DocSection, ...]:
        return tuple(
            d for d in self.doc_sections if d.title.lower() in ("troubleshooting", "common issues")
        )


@dataclass(frozen=True)
class RunbookMeta:
    id: str
    title: str
    purpose: str = ""
    owner: str = ""
    review_interval: str | None = None  # e.g. "30d", "90d", "365d"
    last_reviewed: str | None = None  # ISO date
    use_cases: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    services: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Runbook:
    meta: RunbookMeta
    path: Path
    content_hash: str  # sha256 hex of the file's bytes
    source: str  # the file's text
    procedures: tuple[Procedure, ...]
    doc_sections: tuple[DocSection, ...] = ()  # ## sections that are not procedures

    @property
    def id(self) -> str:
        return self.meta.id

    def procedure(self, procedure_id: str) -> Procedure | None:
        return next((p for p in self.procedures if p.id == procedure_id), None)
