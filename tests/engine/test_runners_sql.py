"""The sql runner over real SQLite files (and PostgreSQL when its binaries are installed)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from opsbook.engine import templating
from opsbook.engine.runners import get_runner
from opsbook.engine.runners.base import RunContext, RunnerInput
from opsbook.engine.runners.sql import SqlRunner
from opsbook.errors import NotFoundError, ValidationError
from opsbook.runbooks.model import Block, Step, StepKind, StepOptions


@pytest.fixture
def runner() -> Iterator[SqlRunner]:
    sql = SqlRunner()
    yield sql
    sql.dispose()


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir()
    with sqlite3.connect(tmp_path / "data" / "app.db") as conn:
        conn.executescript(
            """
            CREATE TABLE accounts (id INTEGER PRIMARY KEY, owner TEXT, balance REAL, key BLOB);
            INSERT INTO accounts VALUES (1, 'alice', 10.5, x'00ff'), (2, 'bob', 0, NULL);
            """
        )
    conn.close()
    return tmp_path


def make_input(
    query: str,
    workspace: Path,
    *,
    db: str | None = None,
    write: bool = False,
    databases: dict[str, Any] | None = None,
    **kw: Any,
) -> RunnerInput:
    step = Step(
        id="q",
        title="Q",
        kind=StepKind.SQL,
        line=1,
        block=Block("sql", query, {}, 1),
        options=StepOptions(db=db, write=write),
    )
    if databases is None:
        databases = {"default": {"url": "sqlite:///data/app.db"}}
    ctx = RunContext(
        execution_id="e1",
        environment_name="sandbox",
        environment={"databases": databases},
        workspace=workspace,
        started_by="alice",
        dry_run=kw.pop("dry_run", False),
    )
    return RunnerInput(step=step, body=query, context=ctx, **kw)


def owners(workspace: Path) -> list[str]:
    with sqlite3.connect(workspace / "data" / "app.db") as conn:
        found = [row[0] for row in conn.execute("SELECT owner FROM accounts ORDER BY id")]
    conn.close()
    return found


async def test_rows_are_json_safe_dicts(runner: SqlRunner, workspace: Path) -> None:
    result = await runner.run(make_input("SELECT * FROM accounts ORDER BY id", workspace))
    assert result.ok and result.error is None
    assert result.fields["rows"] == [
        {"id": 1, "owner": "alice", "balance": 10.5, "key": "00ff"},
        {"id": 2, "owner": "bob", "balance": 0.0, "key": None},
    ]
    assert result.fields["row_count"] == 2
    assert result.fields["duration"] == result.duration > 0
    assert get_runner(StepKind.SQL).kind == "sql"


async def test_read_only_refuses_writes(runner: SqlRunner, workspace: Path) -> None:
    result = await runner.run(make_input("INSERT INTO accounts (owner) VALUES ('eve')", workspace))
    assert not result.ok
    assert "read-only unless {write=true}" in (result.error or "")
    # There is no result to check: the step fails whatever its expect block says.
    assert result.ran is False
    assert owners(workspace) == ["alice", "bob"]


async def test_write_true_allows_writes(runner: SqlRunner, workspace: Path) -> None:
    query = "UPDATE accounts SET owner = 'carol' WHERE id = 2"
    result = await runner.run(make_input(query, workspace, write=True))
    assert result.ok and result.fields == {
        "rows": [],
        "row_count": 1,
        "duration": result.fields["duration"],
    }
    assert owners(workspace) == ["alice", "carol"]


async def test_write_mode_does_not_create_a_missing_database(
    runner: SqlRunner, tmp_path: Path
) -> None:
    databases = {"default": {"url": "sqlite:///data/typo.db"}}
    inp = make_input("CREATE TABLE t (x)", tmp_path, write=True, databases=databases)
    result = await runner.run(inp)
    assert not result.ok and "unable to open" in (result.error or "")
    assert not (tmp_path / "data" / "typo.db").exists()


async def test_a_sql_error_fails_the_step(runner: SqlRunner, workspace: Path) -> None:
    result = await runner.run(make_input("SELEC 1", workspace))
    assert not result.ok and result.error and result.error.startswith("database 'default': ")
    assert "syntax error" in result.error


async def test_picking_a_database(runner: SqlRunner, workspace: Path) -> None:
    path = workspace / "data" / "app.db"
    only = {"ledger": f"sqlite:///{path}"}  # a plain URL string and an absolute path
    result = await runner.run(make_input("SELECT 1 AS one", workspace, databases=only))
    assert result.fields["rows"] == [{"one": 1}]
    two = {"ledger": {"url": f"sqlite:///{path}"}, "audit": {"url": f"sqlite:///{path}"}}
    named = await runner.run(make_input("SELECT 2 AS two", workspace, db="audit", databases=two))
    assert named.fields["rows"] == [{"two": 2}]
    with pytest.raises(ValidationError, match="several databases") as several:
        await runner.run(make_input("SELECT 1", workspace, databases=two))
    assert several.value.hint and "audit, ledger" in several.value.hint


async def test_an_unknown_database_lists_the_known_ones(runner: SqlRunner, workspace: Path) -> None:
    with pytest.raises(NotFoundError, match="unknown database 'nope'") as info:
        await runner.run(make_input("SELECT 1", workspace, db="nope"))
    assert info.value.hint and "default" in info.value.hint
    with pytest.raises(NotFoundError, match="has no databases"):
        await runner.run(make_input("SELECT 1", workspace, databases={}))
    with pytest.raises(ValidationError, match="has no url"):
        await runner.run(make_input("SELECT 1", workspace, databases={"default": {}}))


async def test_a_bad_url_is_a_validation_error(runner: SqlRunner, workspace: Path) -> None:
    with pytest.raises(ValidationError, match="cannot use database URL"):
        await runner.run(make_input("SELECT 1", workspace, databases={"default": "nosuch://x/y"}))


async def test_a_timeout_interrupts_the_query(runner: SqlRunner, workspace: Path) -> None:
    endless = (
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n"
    )
    started = time.monotonic()
    result = await runner.run(make_input(endless, workspace, timeout=0.3))
    assert time.monotonic() - started < 10
    assert result.timed_out and result.error == "timed out after 0.3s"


async def test_the_cancel_event_interrupts_the_query(runner: SqlRunner, workspace: Path) -> None:
    endless = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT max(i) FROM n"
    cancel = asyncio.Event()
    asyncio.get_running_loop().call_later(0.2, cancel.set)
    result = await runner.run(make_input(endless, workspace, cancel=cancel))
    assert result.error == "cancelled" and not result.timed_out


async def test_templated_values_cannot_change_the_query(runner: SqlRunner, workspace: Path) -> None:
    template = "SELECT owner FROM accounts WHERE owner = {{ params.owner }}"
    for owner, expected in (("alice", [{"owner": "alice"}]), ("x' OR '1'='1", [])):
        context = {"params": {"owner": owner}}
        query = templating.render(template, context=context, kind=StepKind.SQL, secrets=None)
        result = await runner.run(make_input(query, workspace))
        assert result.fields["rows"] == expected


async def test_a_dry_run_queries_nothing(runner: SqlRunner, workspace: Path) -> None:
    result = await runner.run(make_input("DELETE FROM accounts", workspace, dry_run=True))
    assert result.ok and result.fields["dry_run"] is True
    assert owners(workspace) == ["alice", "bob"]


@pytest.mark.postgres
async def test_postgresql_read_only_values_and_writes(runner: SqlRunner, pg_url: str) -> None:
    databases = {"ledger": {"url": pg_url.replace("postgresql://", "postgresql+psycopg://")}}
    here = Path(".")
    created = await runner.run(
        make_input("CREATE TABLE IF NOT EXISTS runner_probe (id int)", here, databases=databases)
    )
    assert not created.ok and "read-only unless {write=true}" in (created.error or "")
    query = (
        "SELECT 1.5::numeric AS d, timestamp '2026-01-02 03:04:05' AS t, "
        "interval '90 seconds' AS lag, '\\x00ff'::bytea AS b, 'a%' AS pct"
    )
    result = await runner.run(make_input(query, here, databases=databases))
    assert result.ok, result.error
    assert result.fields["rows"] == [
        {"d": 1.5, "t": "2026-01-02T03:04:05", "lag": 90.0, "b": "00ff", "pct": "a%"}
    ]
    wrote = await runner.run(
        make_input(
            "CREATE TABLE IF NOT EXISTS runner_probe (id int)",
            here,
            write=True,
            databases=databases,
        )
    )
    assert wrote.ok, wrote.error
    slow = await runner.run(
        make_input("SELECT pg_sleep(5)", here, databases=databases, timeout=0.3)
    )
    assert slow.timed_out


# -- template values are bind parameters ---------------------------------------------------

PAYLOADS = [
    "'; DROP TABLE accounts; --",
    "x' OR '1'='1",
    'say "hi"',
    "back\\slash\\",
    "\\'; DROP TABLE accounts; --",
    "50% off_",
    "a\x00b",
    "line\nbreak -- and /* comment */",
    "$$ $tag$ ? %s :p0",
]


def bound(template: str, **params: Any) -> str:
    context = {"params": params}
    return templating.render(template, context=context, kind=StepKind.SQL, secrets=None)


async def test_payloads_are_stored_and_compared_as_data_in_sqlite(
    runner: SqlRunner, workspace: Path
) -> None:
    for k, payload in enumerate(PAYLOADS, start=10):
        insert = bound(
            "INSERT INTO accounts (id, owner) VALUES ({{ params.id }}, {{ params.owner }})",
            id=k,
            owner=payload,
        )
        wrote = await runner.run(make_input(insert, workspace, write=True))
        assert wrote.ok and wrote.fields["row_count"] == 1, (payload, wrote.error)
        for template in (
            "SELECT id FROM accounts WHERE owner = {{ params.owner }}",
            "SELECT id FROM accounts WHERE owner = '{{ params.owner }}'",
        ):
            found = await runner.run(make_input(bound(template, owner=payload), workspace))
            assert found.fields["rows"] == [{"id": k}], (payload, template, found.error)
    with sqlite3.connect(workspace / "data" / "app.db") as conn:
        stored = [
            r[0] for r in conn.execute("SELECT owner FROM accounts WHERE id >= 10 ORDER BY id")
        ]
    conn.close()
    assert stored == PAYLOADS


async def test_a_value_inside_a_string_joins_the_string(runner: SqlRunner, workspace: Path) -> None:
    query = bound(
        "SELECT owner, '%' || 'x' AS pct FROM accounts "
        "WHERE owner LIKE '{{ params.start }}%' AND 'it''s' = 'it''s'",
        start="ali",
    )
    result = await runner.run(make_input(query, workspace))
    assert result.fields["rows"] == [{"owner": "alice", "pct": "%x"}], result.error
    typed = bound(
        "SELECT {{ params.n }} + 1 AS n, {{ params.f }} AS f, {{ params.t }} AS t, "
        "{{ params.z }} IS NULL AS z, {{ params.j }} AS j",
        n=41,
        f=0.5,
        t=True,
        z=None,
        j=["a", 1],
    )
    result = await runner.run(make_input(typed, workspace))
    assert result.fields["rows"] == [{"n": 42, "f": 0.5, "t": 1, "z": 1, "j": '["a", 1]'}]


async def test_the_record_shows_the_query_not_the_values(
    runner: SqlRunner, workspace: Path
) -> None:
    query = bound("SELECT id FROM accounts WHERE owner = {{ params.o }}", o="alice")
    assert str(query) == "SELECT id FROM accounts WHERE owner = ?"
    shown = await runner.run(make_input(query, workspace, dry_run=True))
    assert shown.fields["would_query"] == "SELECT id FROM accounts WHERE owner = ?"


@pytest.mark.postgres
async def test_postgresql_payloads_are_bind_parameters(runner: SqlRunner, pg_url: str) -> None:
    databases = {"ledger": {"url": pg_url.replace("postgresql://", "postgresql+psycopg://")}}
    here = Path(".")

    async def run(template: str, *, write: bool = False, **params: Any) -> Any:
        inp = make_input(bound(template, **params), here, databases=databases, write=write)
        return await runner.run(inp)

    made = await run(
        "DROP TABLE IF EXISTS bind_probe; CREATE TABLE bind_probe (id int, owner text)", write=True
    )
    assert made.ok, made.error
    text_payloads = [p for p in PAYLOADS if "\x00" not in p]
    for k, payload in enumerate(text_payloads):
        wrote = await run(
            "INSERT INTO bind_probe VALUES ({{ params.id }}, {{ params.owner }})",
            write=True,
            id=k,
            owner=payload,
        )
        assert wrote.ok, (payload, wrote.error)
        for template in (
            "SELECT id, owner FROM bind_probe WHERE owner = {{ params.owner }}",
            "SELECT id, owner FROM bind_probe WHERE owner = '{{ params.owner }}'",
            "SELECT id, owner FROM bind_probe WHERE strpos(owner, '' || {{ params.owner }}) = 1"
            " AND id = '{{ params.id }}'",
        ):
            found = await run(template, owner=payload, id=k)
            assert found.fields["rows"] == [{"id": k, "owner": payload}], (payload, found.error)
    # PostgreSQL text cannot hold NUL: the step fails with the database's reason, nothing runs.
    nul = await run("SELECT {{ params.v }} AS v", v="a\x00b")
    assert not nul.ok and "NUL" in (nul.error or "")
    counted = await run("SELECT count(*) AS n FROM bind_probe")
    assert counted.fields["rows"] == [{"n": len(text_payloads)}]
    pct = await run("SELECT 'a%' AS pct, {{ params.v }}::text AS v", v="100%")
    assert pct.fields["rows"] == [{"pct": "a%", "v": "100%"}], pct.error
