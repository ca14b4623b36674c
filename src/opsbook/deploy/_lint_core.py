"""What the migration lint's rules share (:mod:`opsbook.deploy.migrations`): the finding, the
context a file is linted in, and the helpers that read a statement's tokens."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from opsbook.deploy._sqltext import Statement, Token

Dialect = Literal["postgresql", "sqlite"]
Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: Severity
    path: str
    line: int
    column: int
    statement: str
    message: str
    fix: str
    suppressed: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def render(self) -> str:
        """``FILE:LINE:COL: RULE: message`` and the fix on the next line."""
        head = f"{self.path}:{self.line}:{self.column}: {self.rule}: {self.message}"
        return f"{head}\n  fix: {self.fix}"


@dataclass
class Ctx:
    path: str
    dialect: Dialect
    reads: Mapping[str, set[str]] | None
    created_tables: set[str]
    created_indexes: set[str]
    not_valid: dict[str, Token]  # constraint name -> where it was added NOT VALID
    transactional: bool
    findings: list[Finding]
    stmt: Statement | None = None

    @property
    def pg(self) -> bool:
        return self.dialect == "postgresql"

    def add(self, rule: str, at: Token, message: str, fix: str, *, error: bool = True) -> None:
        assert self.stmt is not None
        self.findings.append(
            Finding(
                rule=rule,
                severity="error" if error else "warning",
                path=self.path,
                line=at.line,
                column=at.col,
                statement=brief(self.stmt.text),
                message=message,
                fix=fix,
            )
        )

    def read_by_running(self, table: str, column: str | None = None) -> bool:
        if self.reads is None or table not in self.reads:
            return False
        return column is None or column in self.reads[table]


def brief(text: str, limit: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def word(stmt: Statement | list[Token], word: str, *, start: int = 0) -> Token | None:
    tokens = stmt.tokens if isinstance(stmt, Statement) else stmt
    return next((t for t in tokens[start:] if t.upper == word and t.depth == 0), None)


def has(tokens: Iterable[Token], *words: str) -> Token | None:
    """The first token of the word sequence ``words`` at parenthesis depth 0."""
    toks = [t for t in tokens if t.depth == 0]
    for i in range(len(toks) - len(words) + 1):
        if all(toks[i + k].upper == w for k, w in enumerate(words)):
            return toks[i]
    return None


def name_at(tokens: list[Token], i: int) -> tuple[str, int]:
    """A possibly qualified name starting at ``tokens[i]``: (its last part, the index after)."""
    name = tokens[i].name if i < len(tokens) else ""
    i += 1
    while i + 1 < len(tokens) and tokens[i].text == "." and tokens[i + 1].kind in ("word", "ident"):
        name = tokens[i + 1].name
        i += 2
    return name, i


def skip(tokens: list[Token], i: int, *words: str) -> int:
    """Past the optional word sequence ``words`` at ``tokens[i]``."""
    if all(i + k < len(tokens) and tokens[i + k].upper == w for k, w in enumerate(words)):
        return i + len(words)
    return i
