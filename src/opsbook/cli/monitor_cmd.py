"""`opsbook monitor|alerts|report` (system monitoring). Filled in by the monitoring issue."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the monitoring command groups to ``app``."""
