"""Checks that may refuse to start a run, beyond the procedure's own rules (its environments
and permissions): the engine calls each guard before an execution exists. A guard raises
:class:`opsbook.errors.PermissionDenied` (after recording an audit record saying why) or
returns None."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opsbook.db import Database
    from opsbook.runbooks.model import Procedure, Runbook
    from opsbook.workspace import Environment, Workspace


@dataclass(frozen=True)
class StartRequest:
    """What a guard sees of a run about to start."""

    db: Database
    workspace: Workspace
    runbook: Runbook
    procedure: Procedure
    environment: Environment
    user: str
    params: Mapping[str, Any]
    dry_run: bool
    parent_id: str | None  # a child run (decide/run, on_failure=run) has its parent's checks


StartGuard = Callable[[StartRequest], None]


def is_production(environment: Environment) -> bool:
    """An environment is production-class when its file says ``class: production`` or, without
    a ``class`` key, when it is named ``production``."""
    declared = environment.data.get("class")
    if declared is not None:
        return str(declared) == "production"
    return environment.name == "production"
