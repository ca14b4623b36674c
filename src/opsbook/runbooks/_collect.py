"""Where parse errors go: raised at once (``opsbook run``, the catalogue) or collected (lint).

The parser checks a runbook block by block. Each block's check still raises
:class:`~opsbook.errors.RunbookFormatError` at its first problem; :meth:`Errors.guard` is placed
around a block (a front-matter key, a procedure block, one parameter, one fenced block, one
step) and either lets the error through (``keep_going=False``, the first error stops the parse)
or records it and answers a stand-in value so the parse goes on with the next block.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from opsbook.errors import RunbookFormatError

T = TypeVar("T")


class Errors:
    """The errors found so far; ``keep_going=False`` raises the first one instead."""

    __slots__ = ("found", "keep_going")

    def __init__(self, *, keep_going: bool) -> None:
        self.keep_going = keep_going
        self.found: list[RunbookFormatError] = []

    def add(self, exc: RunbookFormatError) -> None:
        """Record ``exc`` (or raise it when the parse stops at the first error)."""
        if not self.keep_going:
            raise exc
        self.found.append(exc)

    def guard(self, check: Callable[[], T], fallback: T) -> T:
        """``check()``; on a format error, record it and answer ``fallback``."""
        try:
            return check()
        except RunbookFormatError as exc:
            if not self.keep_going:
                raise
            self.found.append(exc)
            return fallback

    def sorted_unique(self) -> list[RunbookFormatError]:
        """The errors in file order, each (location and message) once."""
        seen: set[tuple[int, int, str]] = set()
        out: list[tuple[tuple[int, int, str], RunbookFormatError]] = []
        for exc in self.found:
            loc = exc.location
            key = ((loc.line or 1) if loc else 1, (loc.col or 1) if loc else 1, exc.message)
            if key not in seen:
                seen.add(key)
                out.append((key, exc))
        out.sort(key=lambda pair: pair[0][:2])
        return [exc for _, exc in out]
