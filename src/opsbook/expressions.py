"""CEL expressions: the one safe expression language of opsbook (``expect``, ``when``,
``for_each``, ``decide``, probe conditions). Never ``eval`` Python.

The ``cel`` module (package ``common-expression-language``) is imported on first use so CLI
start-up does not pay for it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from opsbook.errors import ExpressionError, Location

_POS = re.compile(r"<input>:(\d+):(\d+)")


def _cel() -> Any:
    import cel  # noqa: PLC0415 - deferred: 200 ms of import that CLI start-up must not pay

    return cel


@lru_cache(maxsize=4096)
def _compile(expr: str) -> Any:
    return _cel().compile(expr)


def _syntax_message(exc: Exception) -> tuple[str, int]:
    text = str(exc)
    match = _POS.search(text)
    col = int(match.group(2)) + 1 if match else 1
    first = text.split("\n", maxsplit=1)[0]
    detail = first.split(": ERROR: ")[-1] if ": ERROR: " in first else first
    detail = _POS.sub("", detail).strip(" :")
    return detail, col


def compile_expression(expr: str, *, location: Location | None = None) -> Any:
    """Compile (and cache) a CEL expression; raise :class:`ExpressionError` pointing at it.

    ``location`` is where the expression starts; the column of a syntax error is added to it.
    """
    if not expr or not expr.strip():
        raise ExpressionError("empty expression", location=location, hint="write a CEL expression")
    try:
        return _compile(expr)
    except (ValueError, RuntimeError, TypeError) as exc:
        detail, col = _syntax_message(exc)
        loc = location
        if location is not None:
            loc = Location(location.path, location.line, (location.col or 1) + col - 1)
        raise ExpressionError(
            f"invalid CEL expression {expr!r}: {detail}",
            location=loc,
            hint="see the CEL examples in docs/runbook-format.md (e.g. exit_code == 0)",
        ) from exc


def variables_of(expr: str) -> list[str]:
    """The top-level variable names an expression reads (for reporting actual values)."""
    program = compile_expression(expr)
    names = program.variables
    return list(names() if callable(names) else names)


def evaluate(expr: str, variables: Mapping[str, Any]) -> Any:
    """Evaluate ``expr`` over ``variables``. Raises :class:`ExpressionError` when evaluation
    fails (a missing field, a type mismatch), with CEL's own explanation."""
    program = compile_expression(expr)
    try:
        return program.execute(dict(variables))
    except KeyError as exc:
        raise ExpressionError(
            f"{expr!r}: no field {exc.args[0]!r} in the result",
            hint="check the field name against the result fields of this block type",
        ) from exc
    except (ValueError, RuntimeError, TypeError) as exc:
        raise ExpressionError(f"{expr!r} could not be evaluated: {exc}") from exc
