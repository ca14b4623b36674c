"""Workspaces with monitoring configuration, real SQLite state databases, and small real
servers on 127.0.0.1 for probes to check."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from opsbook.db import Database, open_database
from opsbook.workspace import Workspace

TOML = """[workspace]
name = "monitoring-tests"
default_environment = "sandbox"
"""


def make_ws(root: Path, env_yaml: str, name: str = "sandbox") -> Workspace:
    (root / "environments").mkdir(parents=True, exist_ok=True)
    (root / "runbooks").mkdir(exist_ok=True)
    (root / "opsbook.toml").write_text(TOML, encoding="utf-8")
    (root / "environments" / f"{name}.yaml").write_text(env_yaml, encoding="utf-8")
    return Workspace.load(root)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    d = open_database(f"sqlite:///{tmp_path / 'state' / 'opsbook.db'}")
    yield d
    d.close()


@dataclass
class Site:
    """A tiny real HTTP server whose answer a test can change."""

    status: int = 200
    body: Any = field(default_factory=lambda: {"status": "UP"})
    content_type: str = "application/json"
    url: str = ""
    hits: int = 0


@pytest.fixture
def site() -> Iterator[Site]:
    state = Site()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.hits += 1
            raw = state.body if isinstance(state.body, str) else json.dumps(state.body)
            data = raw.encode()
            self.send_response(state.status)
            self.send_header("Content-Type", state.content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


WriteEnv = Callable[[str], Workspace]


@pytest.fixture
def fresh_pg(pg_url: str) -> Iterator[Database]:
    """A migrated PostgreSQL database of its own on the session's ephemeral cluster."""
    import uuid

    import psycopg

    name = f"mon_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    d = open_database(pg_url.rsplit("/", 1)[0] + f"/{name}")
    yield d
    d.close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
