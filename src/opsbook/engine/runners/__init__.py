"""Step runners: one per executable block type, behind :class:`~.base.Runner`.

``get_runner(kind)`` imports the runner's module on first use (so ``sh`` never pays for
SQLAlchemy or httpx) and returns one shared instance per kind.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, cast

from opsbook.errors import ValidationError
from opsbook.runbooks.model import StepKind

if TYPE_CHECKING:
    from opsbook.engine.runners.base import Runner

_CLASSES: dict[StepKind, tuple[str, str]] = {
    StepKind.SH: ("opsbook.engine.runners.sh", "ShRunner"),
    StepKind.HTTP: ("opsbook.engine.runners.http", "HttpRunner"),
    StepKind.SQL: ("opsbook.engine.runners.sql", "SqlRunner"),
    StepKind.PROMQL: ("opsbook.engine.runners.promql", "PromqlRunner"),
    StepKind.ACTION: ("opsbook.engine.runners.action", "ActionRunner"),
}
_instances: dict[StepKind, Runner] = {}


def get_runner(kind: StepKind) -> Runner:
    """The runner for a step kind (sh, http, sql, promql, action)."""
    runner = _instances.get(kind)
    if runner is not None:
        return runner
    if kind not in _CLASSES:
        raise ValidationError(
            f"{kind} steps are not run by a runner",
            hint="approval, decide and manual steps are handled by the engine itself",
        )
    module, name = _CLASSES[kind]
    runner = cast("Runner", getattr(import_module(module), name)())
    _instances[kind] = runner
    return runner


__all__ = ["get_runner"]
