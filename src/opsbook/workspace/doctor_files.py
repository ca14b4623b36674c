"""``opsbook doctor``'s file permission check: the state database (and its -wal/-shm), the
signing keys and the secrets directory must be readable by their owner only (issue 16 §4).

opsbook creates them that way (files 0600, directories 0700); files made by an older version,
copied in, or restored from a backup may be looser. A loose one fails the check (exit 1) with
the ``chmod`` that fixes it. The state directory itself only warns: the files in it carry their
own modes, and a 0755 ``.opsbook`` from an older version shows only their names.
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from opsbook.config import Settings
    from opsbook.workspace import Workspace

Status = Literal["ok", "warning", "failed"]
NAME = "file permissions"
LOOSE = 0o077  # any group or other permission bit


def _mode(path: Path) -> int | None:
    try:
        return stat.S_IMODE(path.lstat().st_mode)
    except OSError:
        return None


def _secret_files(workspace: Workspace, settings: Settings) -> tuple[list[Path], list[Path]]:
    """(files, directories) that hold keys and secrets."""
    state = workspace.state_dir
    secrets_dir = settings.secrets_dir_for(state)
    dirs = [secrets_dir] if secrets_dir.is_dir() else []
    files: set[Path] = set()
    if state.is_dir():
        files.update(p for p in state.rglob("*.key") if p.is_file())
        files.update(p for p in state.rglob(".key") if p.is_file())
    if dirs:
        files.update(p for p in secrets_dir.rglob("*") if p.is_file())
    return sorted(files), dirs


def file_mode_checks(
    *, workspace: Workspace, settings: Settings
) -> list[tuple[str, Status, str, str]]:
    """One check: ``(name, status, detail, hint)``."""
    files, dirs = _secret_files(workspace, settings)
    from opsbook.db import state_files  # noqa: PLC0415

    files = state_files(settings.database_url_for(workspace.state_dir)) + files
    loose_files = [(p, m) for p in files if (m := _mode(p)) is not None and m & LOOSE]
    loose_dirs = [(p, m) for p in dirs if (m := _mode(p)) is not None and m & LOOSE]
    if loose_files or loose_dirs:
        shown = [f"{p} is {m:04o}" for p, m in loose_files + loose_dirs]
        fixes = []
        if loose_files:
            fixes.append("chmod 600 " + " ".join(str(p) for p, _ in loose_files))
        if loose_dirs:
            fixes.append("chmod 700 " + " ".join(str(p) for p, _ in loose_dirs))
        return [
            (
                NAME,
                "failed",
                "readable by group or others: " + "; ".join(shown),
                " && ".join(fixes),
            )
        ]
    state_mode = _mode(workspace.state_dir)
    if state_mode is not None and state_mode & LOOSE:
        return [
            (
                NAME,
                "warning",
                f"{workspace.state_dir} is {state_mode:04o} (its files are private)",
                f"chmod 700 {workspace.state_dir}",
            )
        ]
    present = sum(1 for p in files if p.exists())
    return [(NAME, "ok", f"{present} state and key file(s) readable by their owner only", "")]
