"""Where an environment's backups live: the primary location and the DR region's copy."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opsbook.workspace import Workspace


def locations(workspace: Workspace, environment: str) -> tuple[Path, Path]:
    """(primary, DR) directories of the environment's backups (``[backups] dr_location``)."""
    raw = (workspace.config.get("backups") or {}).get("dr_location")
    primary = workspace.state_dir / "backups" / environment
    dr = (
        (Path(raw) if Path(str(raw)).is_absolute() else workspace.root / str(raw)) / environment
        if raw
        else workspace.state_dir / "backups-dr" / environment
    )
    return primary, dr


def pg_repo(workspace: Workspace, environment: str) -> Path:
    """The pgBackRest repository of an environment whose ledger is on PostgreSQL."""
    return locations(workspace, environment)[0] / "pgbackrest"


def pg_repo_dr(workspace: Workspace, environment: str) -> Path:
    """Its copy in the DR region's storage (a mirror of the repository)."""
    return locations(workspace, environment)[1] / "pgbackrest"
