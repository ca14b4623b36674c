"""Running procedures in this process against a workspace (the CLI's way, also used by
domain services that start runs, such as an incident's procedure): the secret providers, the
runbook catalogue and cache, and an engine wired to them. No adapter imports here."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opsbook.config import Settings
    from opsbook.db import Database
    from opsbook.engine._executor import Engine
    from opsbook.engine._hooks import Dispatcher, Interaction, Reporter
    from opsbook.engine.secrets import Redactor, SecretResolver
    from opsbook.runbooks.catalogue import Catalogue
    from opsbook.runbooks.model import Procedure, Runbook
    from opsbook.workspace import Workspace

#: Exit code of a run that stopped to wait for a person (manual step, approval, recovery).
EXIT_PARKED = 3


def secrets_for(ws: Workspace, settings: Settings) -> tuple[SecretResolver, Redactor]:
    from opsbook.engine.secrets import (  # noqa: PLC0415
        EnvSecretProvider,
        FileSecretProvider,
        Redactor,
        SecretProvider,
        SecretResolver,
    )

    redactor = Redactor()
    providers: list[SecretProvider] = [
        EnvSecretProvider(),
        FileSecretProvider(settings.secrets_dir_for(ws.state_dir)),
    ]
    return SecretResolver(providers, redactor), redactor


def runbook_cache(ws: Workspace) -> Path:
    """Where parsed runbooks are cached (see :mod:`opsbook.runbooks.cache`)."""
    return ws.state_dir / "cache" / "runbooks"


def resolve(ws: Workspace, ref: str) -> tuple[Runbook, Procedure]:
    """``RUNBOOK#PROCEDURE`` in the workspace, parsing only the runbook it names."""
    from opsbook.runbooks.catalogue import resolve_in  # noqa: PLC0415

    return resolve_in(ws.runbooks_dir, ref, cache_dir=runbook_cache(ws))


def catalogue(ws: Workspace) -> Catalogue:
    from opsbook.runbooks.catalogue import load_catalogue  # noqa: PLC0415

    return load_catalogue(ws.runbooks_dir)


def make_engine(
    ws: Workspace,
    settings: Settings,
    db: Database,
    *,
    reporter: Reporter | None = None,
    interaction: Interaction | None = None,
    queue: str | None = None,
    dispatcher: Dispatcher | None = None,
) -> Engine:
    """The engine as the CLI wires it; ``queue``/``dispatcher``: a worker driving a slice of a
    run taken from ``queue`` (ADR 0017), None in-process."""
    from opsbook import logs  # noqa: PLC0415
    from opsbook.engine._executor import Engine  # noqa: PLC0415
    from opsbook.lifecycle.guards import start_guards  # noqa: PLC0415
    from opsbook.runbooks.cache import parse_cached  # noqa: PLC0415
    from opsbook.users.access import roles_resolver  # noqa: PLC0415

    resolver, redactor = secrets_for(ws, settings)
    logs.configure(path=ws.state_dir / "logs" / "opsbook.log", redact=redactor.redact)

    def resolve_ref(ref: str) -> Any:
        return resolve(ws, ref)

    return Engine(
        db=db,
        workspace=ws,
        resolver=resolver,
        redactor=redactor,
        reporter=reporter,
        interaction=interaction,
        load_runbook=lambda path: parse_cached(path, cache_dir=runbook_cache(ws)),
        resolve_ref=resolve_ref,
        roles_of=roles_resolver(db=db, fallback=ws.roles_of),
        start_guards=start_guards(),
        queue=queue,
        dispatcher=dispatcher,
    )


def exit_code_for(outcome: Any) -> int:
    """0 succeeded, 3 waiting for a person (or crashed/running: resume it), 1 otherwise."""
    from opsbook.engine.states import State  # noqa: PLC0415

    if outcome.state is State.SUCCEEDED:
        return 0
    if outcome.state in (State.WAITING, State.CRASHED, State.RUNNING):
        return EXIT_PARKED
    return 1
