"""What every start of an execution passes before its row exists (:meth:`Engine.start`,
:meth:`Engine.create`): the procedure's environments and permissions, the start guards and
secret parameters; and the new row itself (``pending``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from opsbook.audit._log import record as audit_record
from opsbook.audit._log import utcnow
from opsbook.db import Database
from opsbook.engine import _journal as journal
from opsbook.engine import approvals
from opsbook.engine._base import new_execution_id
from opsbook.engine.guards import StartGuard, StartRequest
from opsbook.engine.secrets import SecretResolver, refuse_secret_params
from opsbook.engine.states import State
from opsbook.errors import PermissionDenied, UsageError
from opsbook.runbooks.model import Procedure, Runbook
from opsbook.workspace import Environment, Workspace


class Starter(Protocol):
    """What a start needs of the engine (:class:`opsbook.engine._executor.Engine` is one)."""

    @property
    def db(self) -> Database: ...
    @property
    def workspace(self) -> Workspace: ...
    @property
    def resolver(self) -> SecretResolver: ...
    @property
    def start_guards(self) -> Sequence[StartGuard]: ...
    @property
    def roles_of(self) -> Callable[[str], tuple[str, ...]]: ...


def new_row(
    engine: Starter,
    *,
    runbook: Runbook,
    procedure: Procedure,
    environment: Environment,
    params: Mapping[str, Any],
    started_by: str,
    dry_run: bool,
    parent_id: str | None,
    state_name: str,
    owner: str | None,
    queue: str | None = None,
) -> journal.ExecutionRow:
    """A new execution's row (``pending``), after the checks every start passes: the
    procedure's environments and permissions, the start guards, secret parameters."""
    check_may_start(
        engine, procedure=procedure, runbook=runbook, user=started_by, environment=environment
    )
    if engine.start_guards:
        request = StartRequest(
            db=engine.db,
            workspace=engine.workspace,
            runbook=runbook,
            procedure=procedure,
            environment=environment,
            user=started_by,
            params=params,
            dry_run=dry_run,
            parent_id=parent_id,
        )
        for guard in engine.start_guards:
            guard(request)
    defaults = {
        p.name: p.default
        for p in procedure.params
        if p.type != "secret" and p.default is not None and p.name not in params
    }
    params = {**defaults, **params}
    refuse_secret_params(params, engine.resolver)  # stored and audited as given
    now = utcnow()
    digest = approvals.compute_digest(
        runbook_hash=runbook.content_hash,
        procedure_id=procedure.id,
        params=params,
        environment=environment.name,
    )
    return journal.ExecutionRow(
        id=new_execution_id(),
        parent_id=parent_id,
        runbook_id=runbook.id,
        runbook_path=str(runbook.path),
        runbook_hash=runbook.content_hash,
        procedure_id=procedure.id,
        environment=environment.name,
        params=dict(params),
        digest=digest,
        state=State.PENDING,
        state_name=state_name,
        reason=None,
        cursor=0,
        dry_run=dry_run,
        started_by=started_by,
        owner=owner,
        created_at=now,
        updated_at=now,
        finished_at=None,
        queue=queue,
    )


def check_may_start(
    engine: Starter, *, procedure: Procedure, runbook: Runbook, user: str, environment: Environment
) -> None:
    if procedure.environments and environment.name not in procedure.environments:
        raise UsageError(
            f"{runbook.id}#{procedure.id} is not meant for environment {environment.name!r}",
            hint=f"its environments are: {', '.join(procedure.environments)}",
        )
    if procedure.permissions:
        roles = set(engine.roles_of(user))
        if "admin" not in roles and not roles & set(procedure.permissions):
            audit_record(
                db=engine.db,
                actor=user,
                action="execution.start.denied",
                subject=f"procedure:{runbook.id}#{procedure.id}",
                payload={"roles": sorted(roles), "needs": list(procedure.permissions)},
            )
            raise PermissionDenied(
                f"{user} (roles: {', '.join(sorted(roles)) or 'none'}) may not start "
                f"{runbook.id}#{procedure.id}",
                hint=f"it needs one of: {', '.join(procedure.permissions)} "
                "([users] in opsbook.toml)",
            )
