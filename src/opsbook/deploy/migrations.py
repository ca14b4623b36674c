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
from dataclasses import asdict, dataclass
from typing import Any, Literal

from opsbook.deploy._sqltext import SqlTextError, Statement, Token, split

Dialect = Literal["postgresql", "sqlite"]
Severity = Literal["error", "warning"]

#: Every rule and what it is about (the docs explain each, with its fix).
RULES: dict[str, str] = {
    "require-concurrent-index-creation": "an index built without CONCURRENTLY blocks writes",
    "require-concurrent-index-deletion": "an index dropped without CONCURRENTLY blocks queries",
    "changing-column-type": "a column type change rewrites the table under an exclusive lock",
    "adding-not-nullable-field": "a NOT NULL column without a default, or SET NOT NULL (a scan)",
    "adding-field-with-default": "a volatile or generated default rewrites the table",
    "ban-drop-column": "a dropped column loses its data",
    "drop-column-still-read": "a dropped column a running version still reads",
    "renaming-column": "a renamed column breaks the running version",
    "renaming-table": "a renamed table breaks the running version",
    "adding-foreign-key-constraint": "a foreign key validated under lock",
    "constraint-missing-not-valid": "a CHECK constraint validated under lock",
    "disallowed-unique-constraint": "a UNIQUE constraint builds its index under lock",
    "ban-drop-table": "a dropped table loses its data and breaks its readers",
    "transaction-nesting": "BEGIN/COMMIT in a file that is applied in one transaction",
    "mixed-concurrent-migration": "CONCURRENTLY beside statements that need a transaction",
    "prefer-robust-stmts": "a statement applied outside a transaction that cannot be re-run",
    "dialect-unsupported": "syntax the ledger's database does not have",
    "unknown-ignore": "a lint: ignore comment naming no known rule",
    "syntax-error": "text that cannot be split into statements",
}

_IGNORE = re.compile(r"lint:\s*ignore\s+([A-Za-z0-9_-]+(?:\s*,\s*[A-Za-z0-9_-]+)*)")
_VOLATILE = {
    "random",
    "gen_random_uuid",
    "uuid_generate_v1",
    "uuid_generate_v1mc",
    "uuid_generate_v4",
    "clock_timestamp",
    "timeofday",
    "nextval",
    "txid_current",
}
_TX_WORDS = ("BEGIN", "COMMIT", "ROLLBACK", "START", "END", "ABORT", "SAVEPOINT", "RELEASE")
_CONSTRAINT_WORDS = ("CONSTRAINT", "FOREIGN", "UNIQUE", "CHECK", "PRIMARY", "EXCLUDE")


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
class _Ctx:
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
                statement=_brief(self.stmt.text),
                message=message,
                fix=fix,
            )
        )

    def read_by_running(self, table: str, column: str | None = None) -> bool:
        if self.reads is None or table not in self.reads:
            return False
        return column is None or column in self.reads[table]


def _brief(text: str, limit: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


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
    ctx = _Ctx(
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
            _word(concurrent[0], "CONCURRENTLY") or concurrent[0].tokens[0],
            "CONCURRENTLY cannot run inside a transaction, and the other statements of this file"
            " are applied in one",
            "move the CONCURRENTLY statements into a migration file of their own (applied"
            " statement by statement, outside a transaction)",
        )
    for stmt in statements:
        ctx.stmt = stmt
        before = len(ctx.findings)
        _statement(ctx, stmt)
        _apply_ignores(ctx, stmt, before)
    return ctx.findings


def _apply_ignores(ctx: _Ctx, stmt: Statement, before: int) -> None:
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


def _word(stmt: Statement | list[Token], word: str, *, start: int = 0) -> Token | None:
    tokens = stmt.tokens if isinstance(stmt, Statement) else stmt
    return next((t for t in tokens[start:] if t.upper == word and t.depth == 0), None)


def _has(tokens: Iterable[Token], *words: str) -> Token | None:
    """The first token of the word sequence ``words`` at parenthesis depth 0."""
    toks = [t for t in tokens if t.depth == 0]
    for i in range(len(toks) - len(words) + 1):
        if all(toks[i + k].upper == w for k, w in enumerate(words)):
            return toks[i]
    return None


def _name_at(tokens: list[Token], i: int) -> tuple[str, int]:
    """A possibly qualified name starting at ``tokens[i]``: (its last part, the index after)."""
    name = tokens[i].name if i < len(tokens) else ""
    i += 1
    while i + 1 < len(tokens) and tokens[i].text == "." and tokens[i + 1].kind in ("word", "ident"):
        name = tokens[i + 1].name
        i += 2
    return name, i


def _skip(tokens: list[Token], i: int, *words: str) -> int:
    """Past the optional word sequence ``words`` at ``tokens[i]``."""
    if all(i + k < len(tokens) and tokens[i + k].upper == w for k, w in enumerate(words)):
        return i + len(words)
    return i


# -- statements --------------------------------------------------------------------------------


def _statement(ctx: _Ctx, stmt: Statement) -> None:
    words = stmt.words()
    first = stmt.tokens[0]
    if words[0] in _TX_WORDS:
        ctx.add(
            "transaction-nesting",
            first,
            f"{first.text.upper()} in a migration: apply runs the whole file in one transaction"
            " (with lock_timeout and statement_timeout set) and records it with it",
            "remove the transaction control statements; one file is one transaction",
        )
        return
    head = [w for w in words[:4] if w not in ("UNIQUE", "TEMP", "TEMPORARY", "UNLOGGED")]
    if words[0] == "CREATE" and len(head) > 1 and head[1] == "TABLE":
        i = _skip(stmt.tokens, words.index("TABLE") + 1, "IF", "NOT", "EXISTS")
        ctx.created_tables.add(_name_at(stmt.tokens, i)[0])
    elif words[0] == "CREATE" and len(head) > 1 and head[1] == "INDEX":
        _create_index(ctx, stmt)
    elif words[:2] == ["DROP", "INDEX"]:
        _drop_index(ctx, stmt)
    elif words[:2] == ["DROP", "TABLE"]:
        _drop_table(ctx, stmt)
    elif words[:2] == ["ALTER", "TABLE"]:
        _alter_table(ctx, stmt)


def _create_index(ctx: _Ctx, stmt: Statement) -> None:
    toks = stmt.tokens
    idx = _word(stmt, "INDEX")
    assert idx is not None
    i = toks.index(idx) + 1
    conc = i < len(toks) and toks[i].upper == "CONCURRENTLY"
    if conc:
        i += 1
    robust = _skip(toks, i, "IF", "NOT", "EXISTS") != i
    i = _skip(toks, i, "IF", "NOT", "EXISTS")
    on = _word(stmt, "ON")
    if on is None:
        return
    if toks[i] is not on:
        ctx.created_indexes.add(_name_at(toks, i)[0])
    j = _skip(toks, toks.index(on) + 1, "ONLY")
    table = _name_at(toks, j)[0]
    if conc and not ctx.pg:
        ctx.add(
            "dialect-unsupported",
            toks[toks.index(idx) + 1],
            "SQLite has no CREATE INDEX CONCURRENTLY",
            "drop CONCURRENTLY: on SQLite the build locks the ledger for its duration",
        )
        return
    if conc and not robust:
        ctx.add(
            "prefer-robust-stmts",
            idx,
            "a CONCURRENTLY build runs outside a transaction: if it fails half-way, running"
            " the file again stops at this statement",
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS … ON {table}",
            error=False,
        )
    if conc or table in ctx.created_tables:
        return
    if ctx.pg:
        ctx.add(
            "require-concurrent-index-creation",
            idx,
            f"building an index on {table} without CONCURRENTLY holds a SHARE lock that blocks"
            " every write to the table until the build ends",
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS … ON {table}, in a migration file of its"
            " own (it cannot run inside a transaction)",
        )
    else:
        ctx.add(
            "require-concurrent-index-creation",
            idx,
            f"building an index on {table} holds SQLite's write lock on the whole ledger until"
            " it ends (SQLite has no CONCURRENTLY)",
            "fine on a small table; on a large one, apply in a quiet moment (the lock wait is"
            " bounded by lock_timeout, the build by statement_timeout)",
            error=False,
        )


def _drop_index(ctx: _Ctx, stmt: Statement) -> None:
    toks = stmt.tokens
    conc = len(toks) > 2 and toks[2].upper == "CONCURRENTLY"
    i = 3 if conc else 2
    robust = _skip(toks, i, "IF", "EXISTS") != i
    name = _name_at(toks, _skip(toks, i, "IF", "EXISTS"))[0]
    if conc and not ctx.pg:
        ctx.add(
            "dialect-unsupported",
            toks[2],
            "SQLite has no DROP INDEX CONCURRENTLY",
            "drop CONCURRENTLY",
        )
    elif conc and not robust:
        ctx.add(
            "prefer-robust-stmts",
            toks[1],
            "a CONCURRENTLY drop runs outside a transaction: running the file again after a"
            " failure stops at this statement",
            f"DROP INDEX CONCURRENTLY IF EXISTS {name}",
            error=False,
        )
    elif not conc and ctx.pg and name not in ctx.created_indexes:
        ctx.add(
            "require-concurrent-index-deletion",
            toks[1],
            f"dropping index {name} without CONCURRENTLY takes an ACCESS EXCLUSIVE lock on its"
            " table: every query waits behind it",
            f"DROP INDEX CONCURRENTLY IF EXISTS {name}, in a migration file of its own",
        )


def _drop_table(ctx: _Ctx, stmt: Statement) -> None:
    toks = stmt.tokens
    i = _skip(toks, 2, "IF", "EXISTS")
    while i < len(toks):
        at = toks[i]
        table, i = _name_at(toks, i)
        if table not in ctx.created_tables:
            still = " — and a running version still reads it" if ctx.read_by_running(table) else ""
            ctx.add(
                "ban-drop-table",
                at,
                f"DROP TABLE {table} deletes the table and its data{still}",
                "expand/contract: stop every version from using it, keep it for a release,"
                " then drop it in its own reviewed migration (`-- lint: ignore ban-drop-table`"
                " above the statement once that is done)",
            )
        if i < len(toks) and toks[i].text == ",":
            i += 1
        else:
            break


# -- ALTER TABLE -------------------------------------------------------------------------------


def _actions(tokens: list[Token]) -> list[list[Token]]:
    out: list[list[Token]] = [[]]
    for t in tokens:
        if t.text == "," and t.kind == "op" and t.depth == 0:
            out.append([])
        else:
            out[-1].append(t)
    return [a for a in out if a]


def _alter_table(ctx: _Ctx, stmt: Statement) -> None:
    toks = stmt.tokens
    i = _skip(toks, 2, "IF", "EXISTS")
    i = _skip(toks, i, "ONLY")
    if i >= len(toks):
        return
    table_tok = toks[i]
    table, i = _name_at(toks, i)
    if i < len(toks) and toks[i].text == "*":
        i += 1
    new_table = table in ctx.created_tables
    for action in _actions(toks[i:]):
        verb = action[0].upper
        if verb == "ADD":
            _add(ctx, table, action, new_table)
        elif verb == "DROP":
            _drop(ctx, table, action, new_table)
        elif verb == "ALTER":
            _alter_column(ctx, table, action, new_table)
        elif verb == "RENAME":
            _rename(ctx, table, table_tok, action, new_table)
        elif verb == "VALIDATE":
            name = action[2].name if len(action) > 2 else ""
            added = ctx.not_valid.get(name)
            if added is not None:
                ctx.add(
                    "constraint-missing-not-valid",
                    action[0],
                    f"constraint {name} is added NOT VALID and validated in the same file: the"
                    " validation then runs while the transaction still holds the ACCESS"
                    f" EXCLUSIVE lock of the ADD (line {added.line}), blocking every query",
                    "validate it in a later migration file of its own",
                )


def _add(ctx: _Ctx, table: str, action: list[Token], new_table: bool) -> None:
    i = 1
    if len(action) > 1 and action[1].upper == "COLUMN":
        i = 2
    elif len(action) > 1 and action[1].upper in _CONSTRAINT_WORDS:
        _add_constraint(ctx, table, action, new_table)
        return
    i = _skip(action, i, "IF", "NOT", "EXISTS")
    if i >= len(action) or new_table:
        return
    col_tok = action[i]
    column = col_tok.name
    rest = action[i + 1 :]
    default = _word(rest, "DEFAULT")
    generated = _word(rest, "GENERATED")
    not_null = next(
        (
            t
            for k, t in enumerate(rest[:-1])
            if t.upper == "NOT"
            and t.depth == 0
            and rest[k + 1].upper == "NULL"
            and (k == 0 or rest[k - 1].upper != "IS")
        ),
        None,
    )
    if not_null is not None and default is None and generated is None:
        why = (
            "on a table with rows it fails, after waiting for the ACCESS EXCLUSIVE lock"
            if ctx.pg
            else "SQLite refuses it (Cannot add a NOT NULL column with default value NULL)"
        )
        ctx.add(
            "adding-not-nullable-field",
            not_null,
            f"{table}.{column} is added NOT NULL without a DEFAULT: {why}; and the running"
            " version does not write the column",
            f"add it nullable (ALTER TABLE {table} ADD COLUMN {column} …), deploy the version"
            " that writes it, backfill, then make it NOT NULL (expand/contract)",
        )
    if ctx.pg and (default is not None or generated is not None):
        at = generated or default
        assert at is not None
        after = rest[rest.index(at) + 1 :]
        volatile = next(
            (
                t
                for k, t in enumerate(after[:-1])
                if t.kind == "word" and t.name in _VOLATILE and after[k + 1].text == "("
            ),
            None,
        )
        if generated is not None or volatile is not None:
            what = f"the volatile default {volatile.text}()" if volatile else "a generated column"
            ctx.add(
                "adding-field-with-default",
                volatile or at,
                f"{table}.{column} with {what} rewrites the whole table under an ACCESS"
                " EXCLUSIVE lock (a constant default does not)",
                "add the column without that default (or with a constant one), then fill it in"
                " batches and set the default afterwards",
            )
    ref = _word(rest, "REFERENCES")
    if ref is not None and ctx.pg:
        ctx.add(
            "adding-foreign-key-constraint",
            ref,
            f"{table}.{column} REFERENCES … takes a SHARE ROW EXCLUSIVE lock on both tables"
            " while the key is checked",
            f"add the column without REFERENCES, then ALTER TABLE {table} ADD CONSTRAINT …"
            " FOREIGN KEY … NOT VALID, and VALIDATE CONSTRAINT in a later migration",
            error=False,
        )
    unique = _word(rest, "UNIQUE") or _has(rest, "PRIMARY", "KEY")
    if unique is not None and ctx.pg:
        ctx.add(
            "disallowed-unique-constraint",
            unique,
            f"{table}.{column} {unique.text.upper()} builds its index under an ACCESS EXCLUSIVE"
            " lock",
            f"add the column, CREATE UNIQUE INDEX CONCURRENTLY on {table} ({column}) in its own"
            " migration, then ADD CONSTRAINT … UNIQUE USING INDEX",
        )


def _add_constraint(ctx: _Ctx, table: str, action: list[Token], new_table: bool) -> None:
    i = 1
    name = ""
    if action[1].upper == "CONSTRAINT" and len(action) > 2:
        name = action[2].name
        i = 3
    kind_tok = action[i] if i < len(action) else action[-1]
    kind = kind_tok.upper
    if not ctx.pg:
        ctx.add(
            "dialect-unsupported",
            action[0],
            "SQLite cannot add a constraint to an existing table",
            "leave the constraint out; enforce it in the services, or rebuild the table"
            " (expand/contract) in a planned change",
        )
        return
    if new_table:
        return
    not_valid = _has(action, "NOT", "VALID")
    if kind == "FOREIGN" and not_valid is None:
        ctx.add(
            "adding-foreign-key-constraint",
            kind_tok,
            f"a foreign key on {table} is checked against every row while both tables are"
            " locked (SHARE ROW EXCLUSIVE): writes stop for the whole check",
            f"ALTER TABLE {table} ADD CONSTRAINT {name or '…'} FOREIGN KEY … NOT VALID; then"
            f" ALTER TABLE {table} VALIDATE CONSTRAINT {name or '…'} in a later migration",
        )
    elif kind == "CHECK" and not_valid is None:
        ctx.add(
            "constraint-missing-not-valid",
            kind_tok,
            f"a CHECK constraint on {table} scans every row under an ACCESS EXCLUSIVE lock",
            f"ADD CONSTRAINT {name or '…'} CHECK (…) NOT VALID, then VALIDATE CONSTRAINT in a"
            " later migration",
        )
    elif kind in ("UNIQUE", "PRIMARY") and _has(action, "USING", "INDEX") is None:
        ctx.add(
            "disallowed-unique-constraint",
            kind_tok,
            f"{kind} on {table} builds its index under an ACCESS EXCLUSIVE lock",
            f"CREATE UNIQUE INDEX CONCURRENTLY {name or 'name'}_idx ON {table} (…) in its own"
            f" migration, then ADD CONSTRAINT {name or '…'} {kind}"
            f"{' KEY' if kind == 'PRIMARY' else ''} USING INDEX {name or 'name'}_idx",
        )
    if not_valid is not None and name:
        ctx.not_valid[name] = action[0]


def _drop(ctx: _Ctx, table: str, action: list[Token], new_table: bool) -> None:
    if len(action) < 2 or action[1].upper in ("CONSTRAINT", "DEFAULT"):
        return
    i = 2 if action[1].upper == "COLUMN" else 1
    i = _skip(action, i, "IF", "EXISTS")
    if i >= len(action) or new_table:
        return
    col_tok = action[i]
    column = col_tok.name
    if ctx.read_by_running(table, column):
        ctx.add(
            "drop-column-still-read",
            col_tok,
            f"{table}.{column} is still read by the running version: it fails the moment this"
            " commits",
            "contract later: first deploy a version that no longer reads it everywhere (the"
            " old one retired, no rollback to it planned), then drop the column",
        )
    elif ctx.reads is None:
        ctx.add(
            "ban-drop-column",
            col_tok,
            f"dropping {table}.{column} deletes its data, and whether a running version still"
            " reads it is not known here",
            "lint with --env (the running versions' reads are then checked); once no version"
            " reads it, put `-- lint: ignore ban-drop-column` above the statement",
        )
    else:
        ctx.add(
            "ban-drop-column",
            col_tok,
            f"dropping {table}.{column} deletes its data (no running version reads it: this is"
            " the contract step)",
            "keep the backup apply takes; no version you may roll back to should read it",
            error=False,
        )


def _alter_column(ctx: _Ctx, table: str, action: list[Token], new_table: bool) -> None:
    i = 2 if len(action) > 1 and action[1].upper == "COLUMN" else 1
    if i >= len(action):
        return
    column = action[i].name
    rest = action[i + 1 :]
    type_tok = (
        rest[0]
        if rest and rest[0].upper == "TYPE"
        else (_has(rest, "SET", "DATA", "TYPE") if rest else None)
    )
    set_not_null = _has(rest, "SET", "NOT", "NULL")
    if type_tok is not None:
        if not ctx.pg:
            ctx.add(
                "changing-column-type",
                type_tok,
                f"SQLite cannot change the type of {table}.{column}",
                f"add a new column with the new type, backfill it, move the readers to it,"
                f" then drop {column} in a later release (expand/contract)",
            )
        elif not new_table:
            ctx.add(
                "changing-column-type",
                type_tok,
                f"changing the type of {table}.{column} rewrites the table (and its indexes)"
                " under an ACCESS EXCLUSIVE lock, and the running version may not read the new"
                " type",
                f"add a new column with the new type, write both, backfill, move the readers,"
                f" then drop {column} in a later release (expand/contract)",
            )
        return
    if set_not_null is not None:
        if not ctx.pg:
            ctx.add(
                "adding-not-nullable-field",
                set_not_null,
                f"SQLite cannot make {table}.{column} NOT NULL in place",
                "enforce it in the services, or rebuild the table in a planned change",
            )
        elif not new_table:
            ctx.add(
                "adding-not-nullable-field",
                set_not_null,
                f"SET NOT NULL on {table}.{column} scans every row under an ACCESS EXCLUSIVE lock",
                f"ADD CONSTRAINT {column}_not_null CHECK ({column} IS NOT NULL) NOT VALID;"
                " VALIDATE it in a later migration; then SET NOT NULL uses it and skips the"
                " scan (PostgreSQL 12+)",
            )
        return
    if not ctx.pg:
        ctx.add(
            "dialect-unsupported",
            action[0],
            "SQLite's ALTER TABLE cannot alter a column",
            "add a new column instead (expand/contract)",
        )


def _rename(ctx: _Ctx, table: str, table_tok: Token, action: list[Token], new_table: bool) -> None:
    if new_table or len(action) < 2 or action[1].upper == "CONSTRAINT":
        return
    if action[1].upper == "TO":
        new = action[2].name if len(action) > 2 else "?"
        ctx.add(
            "renaming-table",
            table_tok,
            f"renaming {table} to {new} breaks every running version that uses {table}",
            f"create {new}, write both, backfill, move the readers, then drop {table} in a"
            " later release (or a view named after the old table meanwhile)",
        )
        return
    i = 2 if action[1].upper == "COLUMN" else 1
    if i >= len(action):
        return
    old = action[i].name
    new = action[i + 2].name if i + 2 < len(action) else "?"
    read = " (the running version reads it)" if ctx.read_by_running(table, old) else ""
    ctx.add(
        "renaming-column",
        action[i],
        f"renaming {table}.{old} to {new} breaks the running version's queries{read}",
        f"add {new}, write both, backfill, move the readers to {new}, then drop {old} in a"
        " later release (expand/contract)",
    )


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
        i = _skip(toks, _skip(toks, 2, "IF", "EXISTS"), "ONLY")
    elif words[0] == "CREATE" and "TABLE" in words[:4]:
        i = _skip(toks, words.index("TABLE") + 1, "IF", "NOT", "EXISTS")
    elif words[0] == "CREATE" and "INDEX" in words[:4]:
        on = _word(stmt, "ON")
        i = None if on is None else _skip(toks, toks.index(on) + 1, "ONLY")
    elif words[0] in ("UPDATE", "TRUNCATE"):
        i = _skip(toks, _skip(toks, 1, "TABLE"), "ONLY")
    elif words[:2] in (["INSERT", "INTO"], ["DELETE", "FROM"]):
        i = _skip(toks, 2, "ONLY")
    if i is None or i >= len(toks) or toks[i].kind not in ("word", "ident"):
        return None
    return _name_at(toks, i)[0]


def index_name(stmt: Statement) -> str | None:
    """The name a CREATE INDEX statement gives its index (None when PostgreSQL names it)."""
    idx = _word(stmt, "INDEX")
    on = _word(stmt, "ON")
    if idx is None or on is None:
        return None
    toks = stmt.tokens
    i = _skip(toks, toks.index(idx) + 1, "CONCURRENTLY")
    i = _skip(toks, i, "IF", "NOT", "EXISTS")
    return None if toks[i] is on else _name_at(toks, i)[0]
