"""Execution and step states: a small enum, a terminal set, one explicit transition table.

Detail goes in the state's *name* (``AwaitingApproval``, ``AwaitingInput``, ``TimedOut``) or
reason, never in new enum members (Prefect's StateType). A transition not in the table is
rejected with :class:`opsbook.errors.ConflictError`, never silently ignored.

Scale-out (ADR 0017): ``RUNNING → PENDING`` is a hand-off to a queue of workers (name
``Queued``, verb ``queued``, payload ``{queue, dispatch}``): at a step that belongs to another
queue, or when the driving worker drains. A worker takes a ``PENDING`` run with the existing
``PENDING → RUNNING`` (verb ``claimed``, payload ``{queue, worker}``).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from opsbook.errors import ConflictError


class State(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    WAITING = "waiting"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    ABORTED = "aborted"
    CRASHED = "crashed"


TERMINAL_STATES = frozenset({State.SUCCEEDED, State.FAILED, State.SKIPPED, State.ABORTED})

EXECUTION_TRANSITIONS: Mapping[State, frozenset[State]] = {
    State.PENDING: frozenset({State.RUNNING, State.ABORTED}),
    State.RUNNING: frozenset(
        {State.PENDING, State.WAITING, State.SUCCEEDED, State.FAILED, State.ABORTED, State.CRASHED}
    ),
    State.WAITING: frozenset({State.RUNNING, State.FAILED, State.ABORTED}),
    State.CRASHED: frozenset({State.RUNNING, State.WAITING, State.ABORTED}),
}

STEP_TRANSITIONS: Mapping[State, frozenset[State]] = {
    State.PENDING: frozenset({State.RUNNING, State.WAITING, State.SKIPPED, State.ABORTED}),
    State.RUNNING: frozenset(
        {State.SUCCEEDED, State.FAILED, State.WAITING, State.ABORTED, State.CRASHED}
    ),
    State.WAITING: frozenset(
        {State.RUNNING, State.SUCCEEDED, State.FAILED, State.SKIPPED, State.ABORTED}
    ),
    State.CRASHED: frozenset({State.SKIPPED, State.ABORTED, State.FAILED}),
}

#: Event verb for entering each state (``execution.step.<verb>``).
VERBS: Mapping[State, str] = {
    State.PENDING: "created",
    State.RUNNING: "started",
    State.WAITING: "waiting",
    State.SUCCEEDED: "succeeded",
    State.FAILED: "failed",
    State.SKIPPED: "skipped",
    State.ABORTED: "aborted",
    State.CRASHED: "crashed",
}


def check_transition(
    table: Mapping[State, frozenset[State]], current: State, proposed: State, *, what: str
) -> None:
    if proposed not in table.get(current, frozenset()):
        allowed = ", ".join(sorted(table.get(current, frozenset()))) or "none (it is final)"
        raise ConflictError(
            f"{what} cannot go from {current} to {proposed}",
            hint=f"from {current} it may go to: {allowed}",
        )
