"""What the engine's step modules (`_running`, `_branching`, `_waiting`, `_recovery`,
`_failure`) need from the engine that drives them, as a protocol: they sit below
:class:`~opsbook.engine._executor.Engine` and call back into it through this, so none of them
imports the executor (issue 18 §7)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from opsbook.db import Database
from opsbook.engine._base import Outcome
from opsbook.engine._context import ExecutionContext
from opsbook.engine._hooks import Dispatcher, Interaction, Reporter
from opsbook.engine.states import State
from opsbook.logs import BoundLogger
from opsbook.runbooks.model import Procedure, Runbook, Step
from opsbook.workspace import Environment, Workspace


class EngineLike(Protocol):
    """The part of the engine the step modules use: its database, workspace, reporter and
    interaction, the owner token it journals, its logger, and the calls that start, resume,
    attest, drive and finish executions. :class:`~opsbook.engine._executor.Engine` implements
    it. ``queue``, ``dispatcher``, ``draining``: the queue of the message being driven (None:
    in-process), how to hand a run to a queue, and whether to hand it back at the next step."""

    db: Database
    workspace: Workspace
    reporter: Reporter
    interaction: Interaction | None
    owner: str
    log: BoundLogger
    queue: str | None
    dispatcher: Dispatcher | None
    draining: bool
    _resolve_ref: Any  # Callable[[str], tuple[Runbook, Procedure]]

    async def start(
        self,
        *,
        runbook: Runbook,
        procedure: Procedure,
        environment: Environment,
        params: Mapping[str, Any],
        started_by: str,
        dry_run: bool = False,
        parent_id: str | None = None,
        depth: int = 0,
    ) -> Outcome: ...

    async def resume(
        self,
        *,
        execution_id: str,
        actor: str,
        decision: str | None = None,
        depth: int = 0,
        continue_parent: bool = True,
    ) -> Outcome: ...

    def attest(
        self,
        *,
        execution_id: str,
        actor: str,
        items: tuple[int, ...] | None = None,
        note: str | None = None,
        _seq: int | None = None,
        _step: Step | None = None,
    ) -> None: ...

    async def _drive(
        self,
        ctx: ExecutionContext,
        runbook: Runbook,
        procedure: Procedure,
        *,
        actor: str,
        depth: int,
    ) -> Outcome: ...

    def _finish(self, eid: str, state: State, actor: str, reason: str | None) -> Outcome: ...

    def _set_cursor(self, eid: str, cursor: int) -> None: ...
