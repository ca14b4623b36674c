"""One real sandbox for the whole tests/sandbox session; each test leaves it healthy."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from opsbook.sandbox import lifecycle
from tests.sandbox.harness import Sandbox, running_sandbox, wait_for


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    with running_sandbox(tmp_path_factory.mktemp("sandbox") / "ws") as sb:
        yield sb


@pytest.fixture
def sb(sandbox: Sandbox) -> Iterator[Sandbox]:
    """The session sandbox, restored after the test: faults cleared, every service healthy."""
    yield sandbox
    control = sandbox.control()
    control.call("clear", {"actor": "pytest"})
    for svc in lifecycle.status(workspace=sandbox.ws)["services"]:
        if svc["state"] != "running" or svc["replicas"] != 1:
            if svc["replicas"] != 1:
                control.call("scale", {"service": svc["name"], "replicas": 1})
            else:
                control.call("restart", {"service": svc["name"]})
    wait_for(lambda: all(s["ready"] == 1 for s in sandbox.status()["services"]), timeout=15)


@pytest.fixture
def workspace_root(tmp_path: Path) -> Path:
    return tmp_path / "ws"


@pytest.fixture
def pg_ledger_url(pg_url: str) -> Iterator[str]:
    """A fresh PostgreSQL database of its own on the session's ephemeral cluster."""
    import uuid

    import psycopg

    name = f"ledger_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield pg_url.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
