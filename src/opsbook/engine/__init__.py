"""The execution engine: journal, states, approvals, step runners.

Public names are imported lazily so that ``import opsbook.engine.states`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opsbook.engine._base import Outcome
    from opsbook.engine._executor import Engine
    from opsbook.engine._hooks import Attestation, Interaction, Reporter, StepReport

__all__ = ["Attestation", "Engine", "Interaction", "Outcome", "Reporter", "StepReport"]


def __getattr__(name: str) -> Any:
    if name == "Engine":
        from opsbook.engine import _executor  # noqa: PLC0415

        return _executor.Engine
    if name == "Outcome":
        from opsbook.engine import _base  # noqa: PLC0415

        return _base.Outcome
    if name in ("Attestation", "Interaction", "Reporter", "StepReport"):
        from opsbook.engine import _hooks  # noqa: PLC0415

        return getattr(_hooks, name)
    raise AttributeError(name)
