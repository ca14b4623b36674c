"""Wiring shared by CLI commands: settings, workspace, database, engine, output."""

from __future__ import annotations

import getpass
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opsbook.config import Settings

if TYPE_CHECKING:
    from opsbook.db import Database
    from opsbook.engine._executor import Engine
    from opsbook.engine._hooks import Interaction, Reporter
    from opsbook.engine.secrets import Redactor, SecretResolver
    from opsbook.runbooks.catalogue import Catalogue
    from opsbook.runbooks.model import Procedure, Runbook
    from opsbook.workspace import Workspace

#: Exit code of a run that stopped to wait for a person (manual step, approval, recovery).
EXIT_PARKED = 3


@dataclass
class AppState:
    workspace_arg: str | None = None

    @property
    def settings(self) -> Settings:
        return Settings.from_env()

    def workspace(self) -> Workspace:
        from opsbook.workspace import find_workspace  # noqa: PLC0415

        settings = self.settings
        explicit = self.workspace_arg or (str(settings.workspace) if settings.workspace else None)
        return find_workspace(explicit)

    def user(self, as_user: str | None) -> str:
        if as_user:
            return as_user
        return self.settings.user or getpass.getuser()


def open_db(ws: Workspace, settings: Settings) -> Database:
    from opsbook.db import open_database  # noqa: PLC0415

    ws.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    return open_database(settings.database_url_for(ws.state_dir))


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


def resolve(ws: Workspace, ref: str) -> tuple[Runbook, Procedure]:
    """``RUNBOOK#PROCEDURE`` in the workspace, parsing only the runbook it names."""
    from opsbook.runbooks.catalogue import resolve_in  # noqa: PLC0415

    return resolve_in(ws.runbooks_dir, ref, cache_dir=runbook_cache(ws))


def runbook_cache(ws: Workspace) -> Path:
    """Where parsed runbooks are cached (see :mod:`opsbook.runbooks.cache`)."""
    return ws.state_dir / "cache" / "runbooks"


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
) -> Engine:
    from opsbook import logs  # noqa: PLC0415
    from opsbook.engine._executor import Engine  # noqa: PLC0415
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
    )


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str, ensure_ascii=False) + "\n")


def is_interactive() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


def resolve_path(p: str) -> Path:
    return Path(p).expanduser().resolve()


def table_console() -> Any:
    """A rich Console for tables: the terminal's width, or a wide one when piped so that
    identifiers are never cut (scripts should use --json)."""
    import sys  # noqa: PLC0415

    from rich.console import Console  # noqa: PLC0415

    return Console() if sys.stdout.isatty() else Console(width=200)
