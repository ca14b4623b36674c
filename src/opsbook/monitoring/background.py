"""What `opsbook serve` runs in the background for monitoring."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opsbook.api.context import AppContext


async def run_background(ctx: AppContext) -> None:
    """Run until cancelled. Nothing yet."""
