"""Helpers for runbook tests: small runbooks as text, parsed from a path in tmp_path."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from opsbook.errors import RunbookFormatError
from opsbook.runbooks.model import Procedure, Runbook
from opsbook.runbooks.parser import parse_text

FRONT = "---\nid: t\ntitle: T\n---\n\n# T\n\n"
PATH = Path("runbooks/t.md")


def proc_doc(body: str, meta: str = "risk: low\n") -> str:
    """A runbook with one procedure whose block holds ``meta`` and whose steps are ``body``."""
    return FRONT + "## Proc\n\n```yaml procedure\n" + meta + "```\n\n" + textwrap.dedent(body)


def parse(text: str) -> Runbook:
    return parse_text(text, path=PATH)


def proc(body: str, meta: str = "risk: low\n") -> Procedure:
    return parse(proc_doc(body, meta)).procedures[0]


def error(text: str) -> RunbookFormatError:
    with pytest.raises(RunbookFormatError) as info:
        parse_text(text, path=PATH)
    err = info.value
    assert err.location is not None and err.location.path == str(PATH)
    assert err.hint
    return err


def line_of(text: str, needle: str, nth: int = 1) -> int:
    """1-based line of the ``nth`` line containing ``needle``."""
    hits = [i for i, line in enumerate(text.split("\n"), 1) if needle in line]
    return hits[nth - 1]


def col_of(text: str, needle: str) -> int:
    """1-based column of ``needle`` on its line."""
    line = text.split("\n")[line_of(text, needle) - 1]
    return line.index(needle) + 1
