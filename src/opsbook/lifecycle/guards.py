"""The lifecycle's start guards (see :mod:`opsbook.engine.guards`), in the order they run:
each module that gates production runs adds its guard here (published runbook digests,
certifications)."""

from __future__ import annotations

from collections.abc import Sequence

from opsbook.engine.guards import StartGuard


def start_guards() -> Sequence[StartGuard]:
    """Every guard the engine runs before a run starts."""
    guards: list[StartGuard] = []
    from opsbook.lifecycle.change_guard import require_published  # noqa: PLC0415

    guards.append(require_published)  # production runs: published digests only (H6)
    from opsbook.lifecycle.cert_guard import require_certification  # noqa: PLC0415

    guards.append(require_certification)  # production runs: certified people only
    return guards
