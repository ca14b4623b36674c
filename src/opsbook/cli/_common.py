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
    from opsbook.workspace import Workspace

# The engine wiring lives below the adapters (opsbook.executions.local); these names are
# kept here for the commands that import them from the CLI package.
from opsbook.executions.local import (
    EXIT_PARKED,
    catalogue,
    make_engine,
    resolve,
    runbook_cache,
    secrets_for,
)

__all__ = [
    "EXIT_PARKED",
    "AppState",
    "catalogue",
    "is_interactive",
    "make_engine",
    "open_db",
    "print_json",
    "resolve",
    "runbook_cache",
    "secrets_for",
]


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
