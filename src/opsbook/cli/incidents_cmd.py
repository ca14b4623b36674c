"""`opsbook incidents|notify` (incident response). Filled in by the incidents issue."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the incident command groups to ``app``."""
