"""The migration lint's rules for ALTER TABLE: each action (ADD, DROP, ALTER, RENAME,
VALIDATE) of the statement judged on its own."""

from __future__ import annotations

from opsbook.deploy._lint_core import Ctx, has, name_at, skip, word
from opsbook.deploy._sqltext import Statement, Token

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
_CONSTRAINT_WORDS = ("CONSTRAINT", "FOREIGN", "UNIQUE", "CHECK", "PRIMARY", "EXCLUDE")


def _actions(tokens: list[Token]) -> list[list[Token]]:
    out: list[list[Token]] = [[]]
    for t in tokens:
        if t.text == "," and t.kind == "op" and t.depth == 0:
            out.append([])
        else:
            out[-1].append(t)
    return [a for a in out if a]


def check_alter_table(ctx: Ctx, stmt: Statement) -> None:
    toks = stmt.tokens
    i = skip(toks, 2, "IF", "EXISTS")
    i = skip(toks, i, "ONLY")
    if i >= len(toks):
        return
    table_tok = toks[i]
    table, i = name_at(toks, i)
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


def _add(ctx: Ctx, table: str, action: list[Token], new_table: bool) -> None:
    i = 1
    if len(action) > 1 and action[1].upper == "COLUMN":
        i = 2
    elif len(action) > 1 and action[1].upper in _CONSTRAINT_WORDS:
        _add_constraint(ctx, table, action, new_table)
        return
    i = skip(action, i, "IF", "NOT", "EXISTS")
    if i >= len(action) or new_table:
        return
    col_tok = action[i]
    column = col_tok.name
    rest = action[i + 1 :]
    default = word(rest, "DEFAULT")
    generated = word(rest, "GENERATED")
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
    ref = word(rest, "REFERENCES")
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
    unique = word(rest, "UNIQUE") or has(rest, "PRIMARY", "KEY")
    if unique is not None and ctx.pg:
        ctx.add(
            "disallowed-unique-constraint",
            unique,
            f"{table}.{column} {unique.text.upper()} builds its index under an ACCESS EXCLUSIVE"
            " lock",
            f"add the column, CREATE UNIQUE INDEX CONCURRENTLY on {table} ({column}) in its own"
            " migration, then ADD CONSTRAINT … UNIQUE USING INDEX",
        )


def _add_constraint(ctx: Ctx, table: str, action: list[Token], new_table: bool) -> None:
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
    not_valid = has(action, "NOT", "VALID")
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
    elif kind in ("UNIQUE", "PRIMARY") and has(action, "USING", "INDEX") is None:
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


def _drop(ctx: Ctx, table: str, action: list[Token], new_table: bool) -> None:
    if len(action) < 2 or action[1].upper in ("CONSTRAINT", "DEFAULT"):
        return
    i = 2 if action[1].upper == "COLUMN" else 1
    i = skip(action, i, "IF", "EXISTS")
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


def _alter_column(ctx: Ctx, table: str, action: list[Token], new_table: bool) -> None:
    i = 2 if len(action) > 1 and action[1].upper == "COLUMN" else 1
    if i >= len(action):
        return
    column = action[i].name
    rest = action[i + 1 :]
    type_tok = (
        rest[0]
        if rest and rest[0].upper == "TYPE"
        else (has(rest, "SET", "DATA", "TYPE") if rest else None)
    )
    set_not_null = has(rest, "SET", "NOT", "NULL")
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


def _rename(ctx: Ctx, table: str, table_tok: Token, action: list[Token], new_table: bool) -> None:
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
