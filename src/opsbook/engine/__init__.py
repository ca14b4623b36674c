"""The execution engine: journal, states, approvals, step runners.

Public names are imported lazily so that ``import opsbook.engine.states`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opsbook.engine._base import Outcome
    from opsbook.engine._executor import Engine
    from opsbook.engine._hooks import Attestation, Dispatcher, Interaction, Reporter, StepReport
    from opsbook.engine._journal import OwnershipLost
    from opsbook.engine._running import step_queue

__all__ = [
    "Attestation",
    "Dispatcher",
    "Engine",
    "Interaction",
    "Outcome",
    "OwnershipLost",
    "Reporter",
    "StepReport",
    "step_queue",
]


def __getattr__(name: str) -> Any:
    if name == "Engine":
        from opsbook.engine import _executor  # noqa: PLC0415

        return _executor.Engine
    if name == "Outcome":
        from opsbook.engine import _base  # noqa: PLC0415

        return _base.Outcome
    if name in ("Attestation", "Dispatcher", "Interaction", "Reporter", "StepReport"):
        from opsbook.engine import _hooks  # noqa: PLC0415

        return getattr(_hooks, name)
    if name == "OwnershipLost":
        from opsbook.engine import _journal  # noqa: PLC0415

        return _journal.OwnershipLost
    if name == "step_queue":
        from opsbook.engine import _running  # noqa: PLC0415

        return _running.step_queue
    raise AttributeError(name)
