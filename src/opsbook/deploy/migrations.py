"""The migration lint: statements of a ledger migration that take long locks or break the
version of the services that is running, in the manner of squawk (its rule names), each a
:class:`Finding` at ``file:line:col`` with the fix (docs/deployment-migrations.md).

``dialect`` is the ledger's: on PostgreSQL the lock a statement takes is what matters (an
``ACCESS EXCLUSIVE`` lock held while a table is scanned or rewritten stops every query of the
services); SQLite locks the whole file for any write and cannot change a column, so some rules
read differently there. ``reads`` maps a table to the columns the running versions read
(:func:`opsbook.sandbox.releases.reads_of`): dropping one of those breaks them.

``-- lint: ignore RULE[, RULE]`` in the comment lines just above a statement suppresses those
rules for that statement (the finding is kept, marked ``suppressed``, for the audit).

Statements that operate on a table created earlier in the same file are not judged for locks:
nobody else uses the new table yet."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict

from opsbook.deploy._lint_core import Ctx, Dialect, Finding, Severity, name_at, skip, word
from opsbook.deploy._lint_rules import RULES, check_statement
from opsbook.deploy._sqltext import SqlTextError, Statement, split

__all__ = [
    "RULES",
    "Dialect",
    "Finding",
    "Severity",
    "counts",
    "index_name",
    "lint",
    "target_table",
]

_IGNORE = re.compile(r"lint:\s*ignore\s+([A-Za-z0-9_-]+(?:\s*,\s*[A-Za-z0-9_-]+)*)")


def lint(
    sql: str,
    *,
    path: str,
    dialect: Dialect,
    reads: Mapping[str, set[str]] | None = None,
) -> list[Finding]:
    """The findings of one migration file, in file order; suppressed ones are included with
    ``suppressed=True`` (callers count only the others)."""
    if dialect not in ("postgresql", "sqlite"):
        raise ValueError(f"unknown dialect {dialect!r}")
    try:
        statements = split(sql)
    except SqlTextError as exc:
        return [
            Finding(
                rule="syntax-error",
                severity="error",
                path=path,
                line=exc.line,
                column=exc.col,
                statement="",
                message=str(exc),
                fix="close it; the whole file is refused until it splits into statements",
            )
        ]
    concurrent = [s for s in statements if s.concurrent]
    ctx = Ctx(
        path=path,
        dialect=dialect,
        reads=reads,
        created_tables=set(),
        created_indexes=set(),
        not_valid={},
        transactional=not (concurrent and dialect == "postgresql"),
        findings=[],
    )
    if concurrent and dialect == "postgresql" and len(concurrent) < len(statements):
        ctx.stmt = concurrent[0]
        ctx.add(
            "mixed-concurrent-migration",
            word(concurrent[0], "CONCURRENTLY") or concurrent[0].tokens[0],
            "CONCURRENTLY cannot run inside a transaction, and the other statements of this file"
            " are applied in one",
            "move the CONCURRENTLY statements into a migration file of their own (applied"
            " statement by statement, outside a transaction)",
        )
    for stmt in statements:
        ctx.stmt = stmt
        before = len(ctx.findings)
        check_statement(ctx, stmt)
        _apply_ignores(ctx, stmt, before)
    return ctx.findings


def _apply_ignores(ctx: Ctx, stmt: Statement, before: int) -> None:
    ignored: set[str] = set()
    for comment in stmt.leading_comments:
        m = _IGNORE.search(comment.text)
        if not m:
            continue
        for rule in (r.strip() for r in m.group(1).split(",")):
            if rule in RULES:
                ignored.add(rule)
            else:
                ctx.add(
                    "unknown-ignore",
                    comment,
                    f"`lint: ignore {rule}` names no rule: nothing is suppressed",
                    f"use one of: {', '.join(sorted(RULES))}",
                    error=False,
                )
    if not ignored:
        return
    for i in range(before, len(ctx.findings)):
        f = ctx.findings[i]
        if f.rule in ignored:
            ctx.findings[i] = Finding(**{**asdict(f), "suppressed": True})


def counts(findings: Iterable[Finding]) -> tuple[int, int]:
    """(errors, warnings) among the findings that are not suppressed."""
    active = [f for f in findings if not f.suppressed]
    return (
        sum(1 for f in active if f.severity == "error"),
        sum(1 for f in active if f.severity == "warning"),
    )


def target_table(stmt: Statement) -> str | None:
    """The table a statement works on (ALTER/DROP/CREATE TABLE, CREATE INDEX … ON, DML), for
    naming the table whose lock could not be had."""
    toks = stmt.tokens
    words = stmt.words()
    i: int | None = None
    if words[:2] in (["ALTER", "TABLE"], ["DROP", "TABLE"]):
        i = skip(toks, skip(toks, 2, "IF", "EXISTS"), "ONLY")
    elif words[0] == "CREATE" and "TABLE" in words[:4]:
        i = skip(toks, words.index("TABLE") + 1, "IF", "NOT", "EXISTS")
    elif words[0] == "CREATE" and "INDEX" in words[:4]:
        on = word(stmt, "ON")
        i = None if on is None else skip(toks, toks.index(on) + 1, "ONLY")
    elif words[0] in ("UPDATE", "TRUNCATE"):
        i = skip(toks, skip(toks, 1, "TABLE"), "ONLY")
    elif words[:2] in (["INSERT", "INTO"], ["DELETE", "FROM"]):
        i = skip(toks, 2, "ONLY")
    if i is None or i >= len(toks) or toks[i].kind not in ("word", "ident"):
        return None
    return name_at(toks, i)[0]


def index_name(stmt: Statement) -> str | None:
    """The name a CREATE INDEX statement gives its index (None when PostgreSQL names it)."""
    idx = word(stmt, "INDEX")
    on = word(stmt, "ON")
    if idx is None or on is None:
        return None
    toks = stmt.tokens
    i = skip(toks, toks.index(idx) + 1, "CONCURRENTLY")
    i = skip(toks, i, "IF", "NOT", "EXISTS")
    return None if toks[i] is on else name_at(toks, i)[0]
