"""A migration file as :mod:`opsbook.deploy.migrate` reads it: ``NNNN_name.sql``, its text and
SHA-256."""

from __future__ import annotations

import contextlib
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from opsbook.errors import Location, UsageError

if TYPE_CHECKING:
    from opsbook.workspace import Workspace

FILE_NAME = re.compile(r"^(\d{4,})_([a-z0-9][a-z0-9_]*)\.sql$")


@dataclass(frozen=True)
class MigrationFile:
    path: Path
    shown: str  # as reported: relative to the workspace when inside it
    version: str
    name: str
    text: str
    sha256: str


def read_file(
    path: Path, *, workspace: Workspace | None = None, named: bool = True
) -> MigrationFile:
    """A migration file: its name must be ``NNNN_name.sql`` (the version orders them), unless
    ``named`` is False (a file only linted)."""
    shown = str(path)
    if workspace is not None:
        with contextlib.suppress(ValueError):
            shown = str(path.resolve().relative_to(workspace.root.resolve()))
    if not path.is_file():
        raise UsageError(
            f"no migration file {shown}",
            field="file",
            hint="a path relative to the workspace, e.g. migrations/0001_account_display_name.sql",
        )
    m = FILE_NAME.match(path.name)
    if m is None and named:
        raise UsageError(
            f"{path.name}: a migration file is named NNNN_name.sql (a version of 4+ digits, a"
            " lower-case name)",
            location=Location(shown),
            hint="e.g. migrations/0002_transfer_channel.sql",
        )
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{shown} is not UTF-8 text: {exc}", location=Location(shown)) from None
    return MigrationFile(
        path=path,
        shown=shown,
        version=m.group(1) if m else "",
        name=m.group(2) if m else path.stem,
        text=text,
        sha256=hashlib.sha256(data).hexdigest(),
    )
