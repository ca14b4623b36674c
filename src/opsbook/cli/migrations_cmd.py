"""`opsbook migrations` (issue 11)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    sub = typer.Typer(help="(being built)", no_args_is_help=True)
    app.add_typer(sub, name="migrations")
