"""Dry runs: the values only a real run has.

In a dry run nothing runs, so an earlier step's result does not exist. A template that reads
one gets a :class:`NotRun` placeholder instead, which reads as the path it stands for:
``{{ steps.check.result.json.status }}`` renders ``<result of step check.json.status>``.
Attribute and item access on a placeholder give a further placeholder; iterating one gives a
single placeholder item (so a loop body is rendered once); calling one gives itself.

CEL expressions cannot take placeholders: an expression that reads ``steps`` is not evaluated
in a dry run (:func:`needs_results`): an ``expect`` block is listed as "would check", a ``when``
as "would check when" (the step is rendered), a ``decide`` is recorded as undecided.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from opsbook.expressions import variables_of

# Names Jinja (and Python's copy/pickle machinery) probe with getattr/hasattr: a placeholder
# must answer "no such attribute" to them, or the sandbox would treat it as an unsafe callable.
_NOT_MEMBERS = frozenset({"unsafe_callable", "alters_data", "jinja_pass_arg"})


class NotRun:
    """A value only a real run has (see the module docstring)."""

    __slots__ = ("_path", "_what")

    def __init__(self, what: str, path: str) -> None:
        self._what = what
        self._path = path

    def _child(self, member: str) -> NotRun:
        return NotRun(self._what, f"{self._path}.{member}")

    def __getattr__(self, name: str) -> NotRun:
        if name.startswith("_") or name in _NOT_MEMBERS:
            raise AttributeError(name)
        return self._child(name)

    def __getitem__(self, key: Any) -> NotRun:
        return self._child(str(key))

    def __iter__(self) -> Iterator[NotRun]:
        yield self._child("*")

    def __len__(self) -> int:
        return 1

    def __bool__(self) -> bool:
        return True

    def __call__(self, *args: Any, **kwargs: Any) -> NotRun:
        return self

    def __str__(self) -> str:
        return f"<{self._what} {self._path}>"

    __repr__ = __str__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NotRun) and str(other) == str(self)

    def __hash__(self) -> int:
        return hash(str(self))


def step_entry(step_id: str) -> dict[str, Any]:
    """What ``steps.ID`` holds after a step in a dry run."""
    return {
        "result": NotRun("result of step", step_id),
        "state": NotRun("result of step", f"{step_id}.state"),
        "ok": NotRun("result of step", f"{step_id}.ok"),
    }


def needs_results(expr: str) -> bool:
    """Whether a CEL expression reads earlier steps' results (so a dry run cannot evaluate
    it). An expression that does not compile counts as not reading them: evaluating it gives
    its own error."""
    from opsbook.errors import ExpressionError  # noqa: PLC0415

    try:
        return "steps" in variables_of(expr)
    except ExpressionError:
        return False
