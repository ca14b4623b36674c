"""Running a runbook procedure for an incident from the CLI (the API uses
opsbook.executions.operations and links the execution the same way)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from opsbook.engine._hooks import Reporter
from opsbook.incidents import lifecycle
from opsbook.incidents.service import get

if TYPE_CHECKING:
    from opsbook.config import Settings
    from opsbook.db import Database
    from opsbook.runbooks.model import Procedure
    from opsbook.workspace import Workspace


class _Linker(Reporter):
    """Links the execution to the incident the moment it exists, so its steps are on the
    timeline while it runs (and if it parks)."""

    def __init__(self, *, db: Database, ref: str, actor: str, procedure_ref: str) -> None:
        self.db, self.ref, self.actor, self.procedure_ref = db, ref, actor, procedure_ref
        self.execution_id: str | None = None

    def execution_started(self, *, execution_id: str, procedure: Procedure, resumed: bool) -> None:
        if not resumed and self.execution_id is None:
            self.execution_id = execution_id
            lifecycle.link_execution(
                db=self.db,
                ref=self.ref,
                actor=self.actor,
                execution_id=execution_id,
                procedure=self.procedure_ref,
            )


def run_for_incident(
    *,
    ws: Workspace,
    settings: Settings,
    db: Database,
    ref: str,
    procedure: str,
    env: str | None,
    params: list[str],
    actor: str,
) -> dict[str, Any]:
    from opsbook.errors import ConflictError  # noqa: PLC0415
    from opsbook.executions.local import catalogue, exit_code_for, make_engine  # noqa: PLC0415
    from opsbook.runbooks.params import parse_param_args, validate_params  # noqa: PLC0415
    from opsbook.workspace import load_environment  # noqa: PLC0415

    inc = get(db=db, ref=ref)
    if inc.status == "closed":
        raise ConflictError(f"{inc.ref} is closed", hint="declare a new incident")
    runbook, proc = catalogue(ws).resolve(procedure)
    environment = load_environment(ws, env or ws.default_environment)
    values = validate_params(proc, parse_param_args(params), path=str(runbook.path))
    linker = _Linker(db=db, ref=inc.ref, actor=actor, procedure_ref=f"{runbook.id}#{proc.id}")
    engine = make_engine(ws, settings, db, reporter=linker)
    outcome = asyncio.run(
        engine.start(
            runbook=runbook,
            procedure=proc,
            environment=environment,
            params=values,
            started_by=actor,
        )
    )
    return {
        "incident": inc.ref,
        "execution": outcome.execution_id,
        "state_name": outcome.state_name,
        "exit_code": exit_code_for(outcome),
    }
