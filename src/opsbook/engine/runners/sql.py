"""``sql`` blocks: one query against a database of the environment, read-only by default.

``{db=NAME}`` picks ``databases.NAME.url`` (a SQLAlchemy URL) from ``environments/ENV.yaml``;
without it the database called ``default``, or the only one. A relative SQLite path is taken
from the workspace root. The query runs in a worker thread.

Template values arrive as a :class:`~.text_quoting.BoundQuery` and are sent as the driver's bind
parameters (``?`` for sqlite3, ``%s`` for psycopg), never pasted into the SQL text.

Read-only unless ``{write=true}``: SQLite files are opened with ``mode=ro`` (``mode=rw`` when
writing: a mistyped path is an error, not a new empty database), PostgreSQL transactions begin
``READ ONLY``; a query that writes then fails the step with a clear message.
A timeout or cancellation interrupts the query (``sqlite3`` interrupt, PostgreSQL cancel and
``statement_timeout``).

Fields: ``rows`` (list of objects keyed by column; Decimal → float, datetimes → ISO text, bytes
→ hex, intervals → seconds; at most :data:`MAX_ROWS`), ``row_count`` (rows returned, or rows
changed by a write), ``duration``; ``truncated`` is true when rows were left out.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from opsbook.engine.runners._common import bounded, json_safe, seconds
from opsbook.engine.runners.base import RunContext, RunnerInput, RunnerResult
from opsbook.engine.runners.text_quoting import BoundQuery
from opsbook.errors import NotFoundError, ValidationError

MAX_ROWS = 10_000
_ENGINES = 8
_READ_ONLY = "the query writes, but sql blocks are read-only unless {write=true}"


def database_url(context: RunContext, name: str | None) -> tuple[str, str]:
    """(name, URL) of the database a step uses; relative SQLite paths made absolute."""
    env = context.environment_name
    databases = context.environment.get("databases") or {}
    where = f"environments/{env}.yaml"
    if not isinstance(databases, Mapping) or not databases:
        raise NotFoundError(
            f"environment {env!r} has no databases",
            hint=f"add `databases: {{NAME: {{url: SQLALCHEMY_URL}}}}` to {where}",
        )
    known = ", ".join(sorted(str(k) for k in databases))
    if name is None:
        if "default" in databases:
            name = "default"
        elif len(databases) == 1:
            name = str(next(iter(databases)))
        else:
            raise ValidationError(
                f"environment {env!r} has several databases and the block names none",
                hint=f"pick one with {{db=NAME}}: {known}",
            )
    if name not in databases:
        raise NotFoundError(
            f"unknown database {name!r} in environment {env!r}",
            hint=f"use one of: {known} (the databases of {where})",
        )
    entry = databases[name]
    url = entry.get("url") if isinstance(entry, Mapping) else entry
    if not isinstance(url, str) or not url:
        raise ValidationError(
            f"database {name!r} of environment {env!r} has no url",
            hint=f"set databases.{name}.url in {where} (e.g. sqlite:///data/app.db)",
        )
    return name, _absolute_sqlite(url, context.workspace)


def _absolute_sqlite(url: str, root: Path) -> str:
    from sqlalchemy.engine import make_url  # noqa: PLC0415 - deferred: import cost
    from sqlalchemy.exc import ArgumentError  # noqa: PLC0415

    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ValidationError(
            f"database URL is not a SQLAlchemy URL: {exc}",
            hint="write it as DRIVER://USER@HOST/DB, e.g. postgresql://ops@db/ledger",
        ) from exc
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return url
    if database.startswith("file:") or Path(database).is_absolute():
        return url
    return parsed.set(database=str(root / database)).render_as_string(hide_password=False)


class _Job:
    """What the event loop needs to interrupt a query running in the worker thread."""

    def __init__(self) -> None:
        self.stopped = threading.Event()
        self.dbapi: Any = None

    def interrupt(self) -> None:
        self.stopped.set()
        conn = self.dbapi
        for method in ("interrupt", "cancel"):  # sqlite3, psycopg
            func = getattr(conn, method, None)
            if callable(func):
                with contextlib.suppress(Exception):
                    func()
                return


def driver_query(query: str, paramstyle: str) -> tuple[str, Any]:
    """The SQL text and parameters for a DB-API driver of ``paramstyle`` (PEP 249)."""
    parts = list(query.parts) if isinstance(query, BoundQuery) else [str(query)]
    params = list(query.params) if isinstance(query, BoundQuery) else []
    if paramstyle in ("format", "pyformat"):
        parts = [p.replace("%", "%%") for p in parts]  # the driver reads % as a placeholder
    if paramstyle == "named":
        markers = [f":p{k}" for k in range(len(params))]
        named = {f"p{k}": v for k, v in enumerate(params)}
        return _join(parts, markers), named
    if paramstyle == "numeric":
        markers = [f":{k + 1}" for k in range(len(params))]
    else:
        markers = ["%s" if paramstyle in ("format", "pyformat") else "?"] * len(params)
    return _join(parts, markers), tuple(params)


def _join(parts: list[str], markers: list[str]) -> str:
    return "".join(p + m for p, m in zip(parts, [*markers, ""], strict=True))


def _execute(engine: Any, query: str, *, write: bool, timeout: float | None, job: _Job) -> Any:
    from sqlalchemy.exc import DBAPIError  # noqa: PLC0415

    try:
        conn = engine.connect()
    except DBAPIError as exc:
        return ("connect", _message(exc))
    with conn:
        job.dbapi = conn.connection.dbapi_connection
        if job.stopped.is_set():
            return ("stopped", "")
        try:
            if engine.dialect.name == "postgresql":
                if not write:  # BEGIN READ ONLY
                    conn = conn.execution_options(postgresql_readonly=True)
                if timeout:
                    conn.exec_driver_sql(f"SET LOCAL statement_timeout = {int(timeout * 1000)}")
            statement, params = driver_query(query, engine.dialect.paramstyle)
            result = conn.exec_driver_sql(statement, params)
            if result.returns_rows:
                keys = list(result.keys())
                fetched = result.fetchmany(MAX_ROWS + 1)
                rows = [
                    {str(k): json_safe(v) for k, v in zip(keys, row, strict=False)}
                    for row in fetched[:MAX_ROWS]
                ]
                payload = (rows, len(rows), len(fetched) > MAX_ROWS)
            else:
                payload = ([], max(result.rowcount, 0), False)
            if write:
                conn.commit()
            else:
                conn.rollback()
        except DBAPIError as exc:
            return ("error", _message(exc))
    return ("done", payload)


def _message(exc: Any) -> str:
    orig = getattr(exc, "orig", None)
    return " ".join(str(orig if orig is not None else exc).split())


class SqlRunner:
    kind: ClassVar[str] = "sql"
    supports_dry_run: ClassVar[bool] = False

    def __init__(self) -> None:
        self._engines: OrderedDict[tuple[str, bool], Any] = OrderedDict()

    def engine(self, url: str, *, write: bool) -> Any:
        """A cached SQLAlchemy engine for ``url`` (SQLite opened read-only unless ``write``)."""
        key = (url, write)
        cached = self._engines.get(key)
        if cached is not None:
            self._engines.move_to_end(key)
            return cached
        engine = _create_engine(url, write=write)
        self._engines[key] = engine
        while len(self._engines) > _ENGINES:
            _, old = self._engines.popitem(last=False)
            old.dispose()
        return engine

    def dispose(self) -> None:
        """Close every cached engine's connections."""
        while self._engines:
            _, engine = self._engines.popitem()
            engine.dispose()

    async def run(self, inp: RunnerInput) -> RunnerResult:
        started = time.perf_counter()
        name, url = database_url(inp.context, inp.step.options.db)
        write = inp.step.options.write
        query = _stripped(inp.body)
        if inp.context.dry_run:
            shown = {"would_query": str(query), "db": name, "dry_run": True}
            return RunnerResult(True, shown, 0.0)
        engine = self.engine(url, write=write)
        job = _Job()
        work = asyncio.ensure_future(
            asyncio.to_thread(_execute, engine, query, write=write, timeout=inp.timeout, job=job)
        )
        try:
            state, answer = await bounded(
                asyncio.shield(work), timeout=inp.timeout, cancel=inp.cancel
            )
        except BaseException:
            job.interrupt()
            raise
        if state != "done" or answer is None:
            job.interrupt()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(work, 10)
            if state == "timeout":
                return _failed(started, f"timed out after {seconds(inp.timeout or 0)}", True)
            return _failed(started, "cancelled")
        outcome, payload = answer
        if outcome == "connect":
            return _failed(started, f"cannot connect to database {name!r}: {payload}")
        if outcome == "error":
            if not write and ("readonly" in payload or "read-only" in payload):
                return _failed(started, f"{_READ_ONLY}: {payload}")
            return _failed(started, f"database {name!r}: {payload}")
        if outcome == "stopped":
            return _failed(started, "cancelled")
        rows, count, truncated = payload
        duration = time.perf_counter() - started
        fields: dict[str, Any] = {"rows": rows, "row_count": count, "duration": duration}
        if truncated:
            fields["truncated"] = True
        return RunnerResult(True, fields, duration)


def _stripped(body: str) -> str:
    """The body without surrounding white space (a bound query stays bound)."""
    if not isinstance(body, BoundQuery):
        return body.strip()
    parts = list(body.parts)
    parts[0] = parts[0].lstrip()
    parts[-1] = parts[-1].rstrip()
    return BoundQuery(parts, body.params)


def _create_engine(url: str, *, write: bool) -> Any:
    import sqlalchemy  # noqa: PLC0415 - deferred: import cost
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError  # noqa: PLC0415

    try:
        parsed = sqlalchemy.engine.make_url(url)
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
            return _sqlite_engine(str(parsed.database), write=write)
        return sqlalchemy.create_engine(parsed, pool_recycle=300, pool_size=2, max_overflow=4)
    except (ArgumentError, NoSuchModuleError) as exc:
        raise ValidationError(
            f"cannot use database URL {url.rsplit('@', maxsplit=1)[-1]!r}: {exc}",
            hint="check the URL's driver name (postgresql://, sqlite:///) and installed drivers",
        ) from exc


def _sqlite_engine(path: str, *, write: bool) -> Any:
    import sqlite3  # noqa: PLC0415

    import sqlalchemy  # noqa: PLC0415
    from sqlalchemy.pool import NullPool  # noqa: PLC0415

    uri = path if path.startswith("file:") else Path(path).as_uri()
    uri += ("&" if "?" in uri else "?") + ("mode=rw" if write else "mode=ro")

    def connect() -> sqlite3.Connection:
        return sqlite3.connect(uri, uri=True, check_same_thread=False)

    return sqlalchemy.create_engine("sqlite://", creator=connect, poolclass=NullPool)


def _failed(started: float, error: str, timed_out: bool = False) -> RunnerResult:
    duration = time.perf_counter() - started
    fields = {"rows": [], "row_count": 0, "duration": duration}
    return RunnerResult(False, fields, duration, error=error, timed_out=timed_out, ran=False)
