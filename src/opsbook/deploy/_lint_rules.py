"""The migration lint's rule table and its rules for whole statements: transaction control,
CREATE TABLE, CREATE/DROP INDEX, DROP TABLE; ALTER TABLE is :mod:`opsbook.deploy._lint_alter`."""

from __future__ import annotations

from opsbook.deploy._lint_alter import check_alter_table
from opsbook.deploy._lint_core import Ctx, name_at, skip, word
from opsbook.deploy._sqltext import Statement

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

_TX_WORDS = ("BEGIN", "COMMIT", "ROLLBACK", "START", "END", "ABORT", "SAVEPOINT", "RELEASE")


def check_statement(ctx: Ctx, stmt: Statement) -> None:
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
        i = skip(stmt.tokens, words.index("TABLE") + 1, "IF", "NOT", "EXISTS")
        ctx.created_tables.add(name_at(stmt.tokens, i)[0])
    elif words[0] == "CREATE" and len(head) > 1 and head[1] == "INDEX":
        _create_index(ctx, stmt)
    elif words[:2] == ["DROP", "INDEX"]:
        _drop_index(ctx, stmt)
    elif words[:2] == ["DROP", "TABLE"]:
        _drop_table(ctx, stmt)
    elif words[:2] == ["ALTER", "TABLE"]:
        check_alter_table(ctx, stmt)


def _create_index(ctx: Ctx, stmt: Statement) -> None:
    toks = stmt.tokens
    idx = word(stmt, "INDEX")
    assert idx is not None
    i = toks.index(idx) + 1
    conc = i < len(toks) and toks[i].upper == "CONCURRENTLY"
    if conc:
        i += 1
    robust = skip(toks, i, "IF", "NOT", "EXISTS") != i
    i = skip(toks, i, "IF", "NOT", "EXISTS")
    on = word(stmt, "ON")
    if on is None:
        return
    if toks[i] is not on:
        ctx.created_indexes.add(name_at(toks, i)[0])
    j = skip(toks, toks.index(on) + 1, "ONLY")
    table = name_at(toks, j)[0]
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


def _drop_index(ctx: Ctx, stmt: Statement) -> None:
    toks = stmt.tokens
    conc = len(toks) > 2 and toks[2].upper == "CONCURRENTLY"
    i = 3 if conc else 2
    robust = skip(toks, i, "IF", "EXISTS") != i
    name = name_at(toks, skip(toks, i, "IF", "EXISTS"))[0]
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


def _drop_table(ctx: Ctx, stmt: Statement) -> None:
    toks = stmt.tokens
    i = skip(toks, 2, "IF", "EXISTS")
    while i < len(toks):
        at = toks[i]
        table, i = name_at(toks, i)
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
