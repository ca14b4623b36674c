"""The shared read models and services, called directly (no HTTP, no console): they check the
caller's permission first, validate their input with the field at fault, and load no adapter."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from opsbook.config import Settings
from opsbook.db import open_database
from opsbook.errors import PermissionDenied, ValidationError
from opsbook.executions import queries
from opsbook.executions.context import AppContext, build_context
from opsbook.executions.settings import ServerSettings
from opsbook.users.access import Principal
from tests.api.harness import make_workspace

READER = Principal("rita", ("viewer",), frozenset({"executions:read"}), "token")
NOBODY = Principal("nora", (), frozenset(), "token")


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[AppContext]:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    context = build_context(
        settings=Settings(database_url=url),
        server=ServerSettings(),
        workspace=make_workspace(tmp_path / "ws"),
        db=open_database(url),
    )
    try:
        yield context
    finally:
        context.db.close()


def test_a_caller_without_read_access_is_refused_and_audited(ctx: AppContext) -> None:
    with pytest.raises(PermissionDenied, match="nora may not executions read"):
        queries.list_executions(ctx=ctx, principal=NOBODY, limit=0)  # refused before the limit
    rows = ctx.db.query("SELECT actor, action FROM events WHERE action = 'access.denied'")
    assert [(r["actor"], r["action"]) for r in rows] == [("nora", "access.denied")]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"limit": 0}, "limit"), ({"limit": 201}, "limit"), ({"state": "nope"}, "state")],
)
def test_bad_input_names_the_field(ctx: AppContext, kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        queries.list_executions(ctx=ctx, principal=READER, **kwargs)  # type: ignore[arg-type]
    assert caught.value.field == field
    assert caught.value.hint


def test_an_empty_journal_is_one_empty_page(ctx: AppContext) -> None:
    page = queries.list_executions(ctx=ctx, principal=READER)
    assert page.items == [] and page.next_cursor is None


def test_dates_from_a_query_string() -> None:
    assert queries.parse_when("2026-12-03", "since") == "2026-12-03T00:00:00Z"
    assert queries.parse_when("2026-12-03T08:00:00Z", "until") == "2026-12-03T08:00:00Z"
    assert queries.parse_when(" ", "since") is None
    with pytest.raises(ValidationError) as caught:
        queries.parse_when("yesterday", "since")
    assert caught.value.field == "since"


def test_the_package_loads_no_adapter_and_no_web_framework() -> None:
    code = (
        "import sys\n"
        "import opsbook.executions.context, opsbook.executions.operations,"
        " opsbook.executions.queries\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[:2] in"
        " (['opsbook', 'api'], ['opsbook', 'web'], ['opsbook', 'cli'], ['opsbook', 'server'])"
        " or m.split('.')[0] in ('fastapi', 'starlette', 'jinja2', 'typer'))\n"
        "print(','.join(bad))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == ""
