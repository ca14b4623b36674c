"""How the engine talks to whoever drives it (the CLI, the server, a test): progress reports and
questions to a person. Both are optional; without them a run parks where a person must act."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from opsbook.engine.states import State
from opsbook.runbooks.model import Procedure, Step

if TYPE_CHECKING:
    from opsbook.db import Database


@dataclass(frozen=True)
class StepReport:
    step: Step
    seq: int
    state: State
    name: str
    duration: float | None = None
    reason: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)  # redacted result, outcomes, command


@dataclass(frozen=True)
class Attestation:
    """A person's confirmation of a manual step: which checklist items, and a note."""

    actor: str
    items: tuple[int, ...]  # indexes of attested checklist items
    note: str | None = None


class Reporter:
    """No-op base; the CLI overrides what it shows."""

    def execution_started(self, *, execution_id: str, procedure: Procedure, resumed: bool) -> None:
        return None

    def step_started(self, *, step: Step, seq: int, detail: dict[str, Any]) -> None:
        return None

    def step_finished(self, report: StepReport) -> None:
        return None

    def step_waiting(self, *, step: Step, seq: int, execution_id: str, why: str) -> None:
        return None

    def step_output(self, *, step: Step, seq: int, stream: str, line: str) -> None:
        """One line of a running step's ``stdout``/``stderr`` (redacted), as it is produced."""
        return None

    def step_retrying(
        self, *, step: Step, seq: int, attempt: int, of: int, reason: str, retry_in: float
    ) -> None:
        """An attempt failed (``reason``: the assertion and the actual value, or the error);
        attempt ``attempt + 1`` of ``of`` starts in ``retry_in`` seconds."""
        return None

    def execution_finished(self, *, execution_id: str, state: State, reason: str | None) -> None:
        return None


class Interaction(Protocol):
    """Questions only a person can answer. Return None to leave the execution parked."""

    wait_for_approval: bool

    def confirm_manual(self, *, step: Step, execution_id: str) -> Attestation | None: ...

    def recovery_decision(self, *, step: Step, execution_id: str) -> str | None: ...


class Dispatcher(Protocol):
    """How the engine hands a run to a queue of workers (ADR 0017; ``opsbook.cluster.dispatch``
    implements it on Celery). Without one the engine runs everything in-process, as always.

    ``enqueue`` joins the caller's open transaction: it bumps the execution's ``dispatch`` number
    and records the queue, and returns the new number. ``send`` is called after that transaction
    committed; it publishes ``(execution_id, dispatch)`` to the queue and never raises (a message
    that could not be sent is re-sent by the sweeper: the database is the outbox)."""

    def enqueue(self, *, db: Database, execution_id: str, queue: str, actor: str) -> int: ...

    def send(
        self,
        *,
        execution_id: str,
        dispatch: int,
        queue: str,
        actor: str,
        decision: str | None = None,
    ) -> bool: ...
