"""The migration lint (opsbook.deploy.migrations): every rule with a failing and a passing case,
each finding at the exact line and column of the offending word; statements split correctly
around strings, comments, dollar quotes and trigger bodies; `-- lint: ignore RULE`."""

from __future__ import annotations

import pytest

from opsbook.deploy._sqltext import split
from opsbook.deploy.migrations import RULES, Dialect, Finding, counts, lint
from opsbook.sandbox.releases import INITIAL_VERSION, reads_of

PG: Dialect = "postgresql"
LITE: Dialect = "sqlite"


def found(
    sql: str, dialect: Dialect = PG, reads: dict[str, set[str]] | None = None
) -> list[tuple[str, str, int, int]]:
    """(rule, severity, line, column) of the findings that are not suppressed."""
    return [
        (f.rule, f.severity, f.line, f.column)
        for f in lint(sql, path="m.sql", dialect=dialect, reads=reads)
        if not f.suppressed
    ]


def rules(sql: str, dialect: Dialect = PG, reads: dict[str, set[str]] | None = None) -> list[str]:
    return [r for r, *_ in found(sql, dialect, reads)]


# -- splitting ---------------------------------------------------------------------------------


def test_statements_split_around_strings_comments_dollar_quotes_and_trigger_bodies() -> None:
    sql = (
        "-- a comment; with a semicolon\n"
        "INSERT INTO t VALUES ('a;b', E'it\\'s;', \"odd;name\");\n"
        "/* block; /* nested; */ still */ SELECT $$x;y$$, $tag$ $$ ; $tag$;\n"
        "CREATE TRIGGER tr AFTER INSERT ON t BEGIN\n"
        "  UPDATE t SET a = CASE WHEN 1 THEN 2 END; DELETE FROM u;\n"
        "END;\n"
        "SELECT 1;;\n"
    )
    stmts = split(sql)
    assert [(s.line, s.col, s.words()[0]) for s in stmts] == [
        (2, 1, "INSERT"),
        (3, 34, "SELECT"),
        (4, 1, "CREATE"),
        (7, 1, "SELECT"),
    ]
    assert stmts[2].text.endswith("END")
    assert stmts[1].leading_comments[0].text.startswith("/* block")


def test_an_unterminated_string_is_a_syntax_error_finding_at_its_start() -> None:
    assert found("SELECT 1;\nSELECT 'oops;\n") == [("syntax-error", "error", 2, 8)]
    assert found("SELECT $a$ never closed") == [("syntax-error", "error", 1, 8)]
    assert found("SELECT 1 /* open") == [("syntax-error", "error", 1, 10)]


# -- each rule: a failing and a passing case ---------------------------------------------------


def test_require_concurrent_index_creation() -> None:
    sql = "SELECT 1;\nCREATE UNIQUE INDEX accounts_owner ON accounts (owner);\n"
    assert found(sql) == [("require-concurrent-index-creation", "error", 2, 15)]
    good = "CREATE INDEX CONCURRENTLY IF NOT EXISTS accounts_owner ON accounts (owner);"
    assert found(good) == []
    # a table created in the same file has no readers yet
    assert found("CREATE TABLE t (a int);\nCREATE INDEX t_a ON t (a);") == []
    # SQLite has no CONCURRENTLY: a brief lock of the whole file, a warning
    assert found(sql, LITE) == [("require-concurrent-index-creation", "warning", 2, 15)]


def test_require_concurrent_index_deletion() -> None:
    assert found("\n  DROP INDEX accounts_owner;") == [
        ("require-concurrent-index-deletion", "error", 2, 8)
    ]
    assert found("DROP INDEX CONCURRENTLY IF EXISTS accounts_owner;") == []
    assert found("DROP INDEX accounts_owner;", LITE) == []


def test_changing_column_type() -> None:
    sql = "ALTER TABLE accounts\n  ALTER COLUMN owner TYPE varchar(200);"
    assert found(sql) == [("changing-column-type", "error", 2, 22)]
    assert found("ALTER TABLE accounts ALTER COLUMN owner SET DATA TYPE text;") == [
        ("changing-column-type", "error", 1, 41)
    ]
    assert found("ALTER TABLE accounts ALTER COLUMN owner SET DEFAULT 'x';") == []
    lite = found(sql, LITE)
    assert lite == [("changing-column-type", "error", 2, 22)]
    assert "SQLite cannot change the type" in lint(sql, path="m", dialect=LITE)[0].message


def test_adding_not_nullable_field() -> None:
    sql = "ALTER TABLE accounts ADD COLUMN tier int NOT NULL;"
    assert found(sql) == [("adding-not-nullable-field", "error", 1, 42)]
    assert found(sql, LITE) == [("adding-not-nullable-field", "error", 1, 42)]
    assert found("ALTER TABLE accounts ADD COLUMN tier int NOT NULL DEFAULT 0;") == []
    assert found("ALTER TABLE accounts ADD COLUMN tier int DEFAULT 0 NOT NULL;", LITE) == []
    assert found("ALTER TABLE accounts ADD COLUMN tier int;") == []
    # SET NOT NULL scans the table under an ACCESS EXCLUSIVE lock
    assert found("ALTER TABLE accounts ALTER COLUMN kind SET NOT NULL;") == [
        ("adding-not-nullable-field", "error", 1, 40)
    ]
    assert found("ALTER TABLE accounts ALTER COLUMN kind DROP NOT NULL;") == []


def test_adding_field_with_a_volatile_default() -> None:
    sql = "ALTER TABLE accounts ADD COLUMN token uuid DEFAULT gen_random_uuid();"
    assert found(sql) == [("adding-field-with-default", "error", 1, 52)]
    assert found("ALTER TABLE accounts ADD COLUMN since text DEFAULT now();") == []
    assert found("ALTER TABLE accounts ADD COLUMN n int DEFAULT 7;") == []


def test_ban_drop_column_and_drop_column_still_read() -> None:
    running = reads_of([INITIAL_VERSION])
    sql = "ALTER TABLE accounts\n DROP COLUMN currency;"
    assert found(sql, reads=running) == [("drop-column-still-read", "error", 2, 14)]
    assert found(sql, LITE, reads=running) == [("drop-column-still-read", "error", 2, 14)]
    # display_name is read by 1.6.0 only: with 1.4.2 running it is the contract step
    contract = "ALTER TABLE accounts DROP COLUMN display_name;"
    assert found(contract, reads=running) == [("ban-drop-column", "warning", 1, 34)]
    assert found(contract, reads=reads_of([INITIAL_VERSION, "1.6.0"])) == [
        ("drop-column-still-read", "error", 1, 34)
    ]
    # whether anything reads it unknown: an error until reviewed
    assert found(contract) == [("ban-drop-column", "error", 1, 34)]
    assert found("ALTER TABLE accounts DROP CONSTRAINT accounts_ck;", reads=running) == []


def test_renaming_column_and_table() -> None:
    assert found("ALTER TABLE accounts RENAME COLUMN owner TO holder;") == [
        ("renaming-column", "error", 1, 36)
    ]
    assert found("ALTER TABLE accounts RENAME owner TO holder;", LITE) == [
        ("renaming-column", "error", 1, 29)
    ]
    assert found("ALTER TABLE accounts RENAME TO customer_accounts;") == [
        ("renaming-table", "error", 1, 13)
    ]
    assert found("ALTER TABLE accounts RENAME CONSTRAINT a TO b;") == []


def test_adding_foreign_key_constraint() -> None:
    sql = (
        "ALTER TABLE payments ADD CONSTRAINT payments_account_fk\n"
        "  FOREIGN KEY (account_id) REFERENCES accounts (id);"
    )
    assert found(sql) == [("adding-foreign-key-constraint", "error", 2, 3)]
    assert found(sql.rstrip(";") + " NOT VALID;") == []
    # SQLite cannot add a constraint to a table at all
    assert found(sql, LITE) == [("dialect-unsupported", "error", 1, 22)]


def test_constraint_missing_not_valid_and_validated_in_the_same_file() -> None:
    sql = "ALTER TABLE payments ADD CONSTRAINT positive CHECK (amount_cents > 0);"
    assert found(sql) == [("constraint-missing-not-valid", "error", 1, 46)]
    added = "ALTER TABLE payments ADD CONSTRAINT positive CHECK (amount_cents > 0) NOT VALID;"
    assert found(added) == []
    assert found(added + "\nALTER TABLE payments VALIDATE CONSTRAINT positive;") == [
        ("constraint-missing-not-valid", "error", 2, 22)
    ]


def test_disallowed_unique_constraint() -> None:
    sql = "ALTER TABLE transfers ADD CONSTRAINT transfers_req UNIQUE (request_id);"
    assert found(sql) == [("disallowed-unique-constraint", "error", 1, 52)]
    ok = "ALTER TABLE transfers ADD CONSTRAINT transfers_req UNIQUE USING INDEX transfers_req_idx;"
    assert found(ok) == []
    assert found("ALTER TABLE accounts ADD COLUMN handle text UNIQUE;") == [
        ("disallowed-unique-constraint", "error", 1, 45)
    ]


def test_ban_drop_table() -> None:
    assert found("DROP TABLE IF EXISTS outbox, payments;") == [
        ("ban-drop-table", "error", 1, 22),
        ("ban-drop-table", "error", 1, 30),
    ]
    assert found("CREATE TABLE scratch (a int);\nDROP TABLE scratch;") == []


def test_transaction_nesting() -> None:
    sql = "BEGIN;\nALTER TABLE accounts ADD COLUMN n int;\nCOMMIT;"
    assert found(sql) == [
        ("transaction-nesting", "error", 1, 1),
        ("transaction-nesting", "error", 3, 1),
    ]
    assert found("ALTER TABLE accounts ADD COLUMN n int;") == []


def test_concurrently_only_in_a_file_of_its_own_and_robust_there() -> None:
    mixed = (
        "ALTER TABLE accounts ADD COLUMN n int;\n"
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS a_n ON accounts (n);"
    )
    assert found(mixed) == [("mixed-concurrent-migration", "error", 2, 14)]
    # outside a transaction a re-run must not stop at what was done: prefer-robust-stmts
    assert found("CREATE INDEX CONCURRENTLY a_n ON accounts (n);") == [
        ("prefer-robust-stmts", "warning", 1, 8)
    ]
    assert found("DROP INDEX CONCURRENTLY a_n;") == [("prefer-robust-stmts", "warning", 1, 6)]
    assert found("DROP INDEX CONCURRENTLY IF EXISTS a_n;") == []
    # inside the one transaction apply uses, a failed file leaves nothing: no warning
    assert found("CREATE TABLE t (a int);") == []
    # SQLite has no CONCURRENTLY at all
    assert found("CREATE INDEX CONCURRENTLY a_n ON accounts (n);", LITE) == [
        ("dialect-unsupported", "error", 1, 14)
    ]


# -- suppression, output -----------------------------------------------------------------------


def test_lint_ignore_above_a_statement_suppresses_that_rule_only_there() -> None:
    sql = (
        "-- reviewed with the DBA (CHG-12): nobody reads outbox since 1.3\n"
        "-- lint: ignore ban-drop-table\n"
        "DROP TABLE outbox;\n"
        "DROP TABLE payments;\n"
    )
    every = lint(sql, path="m.sql", dialect=PG)
    assert [(f.rule, f.line, f.suppressed) for f in every] == [
        ("ban-drop-table", 3, True),
        ("ban-drop-table", 4, False),
    ]
    assert counts(every) == (1, 0)
    # a comment at the end of the previous statement's line is not above this one
    assert rules("SELECT 1; -- lint: ignore ban-drop-table\nDROP TABLE outbox;") == [
        "ban-drop-table"
    ]
    # another rule's name suppresses nothing here
    assert rules("-- lint: ignore renaming-table\nDROP TABLE outbox;") == ["ban-drop-table"]


def test_an_ignore_naming_no_rule_is_a_warning() -> None:
    assert found("-- lint: ignore ban-drop-tables\nDROP TABLE outbox;") == [
        ("ban-drop-table", "error", 2, 12),
        ("unknown-ignore", "warning", 1, 1),
    ]


def test_a_finding_renders_file_line_col_rule_message_and_fix() -> None:
    f = lint("CREATE INDEX i ON accounts (owner);", path="migrations/0002_x.sql", dialect=PG)[0]
    assert isinstance(f, Finding)
    first, second = f.render().splitlines()
    assert first.startswith("migrations/0002_x.sql:1:8: require-concurrent-index-creation: ")
    assert second.startswith("  fix: CREATE INDEX CONCURRENTLY")
    d = f.to_dict()
    assert d["rule"] in RULES and d["statement"] == "CREATE INDEX i ON accounts (owner)"


@pytest.mark.parametrize("dialect", [PG, LITE])
def test_the_shipped_expand_migration_is_clean(dialect: Dialect) -> None:
    from importlib.resources import files

    text = (
        files("opsbook.workspace")
        .joinpath("templates/migrations/0001_account_display_name.sql")
        .read_text(encoding="utf-8")
    )
    assert found(text, dialect, reads=reads_of([INITIAL_VERSION])) == []
    assert [s.words()[:5] for s in split(text)] == [["ALTER", "TABLE", "ACCOUNTS", "ADD", "COLUMN"]]
