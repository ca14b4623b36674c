"""A sandbox whose ledger is on PostgreSQL clusters of its own (``sandbox.db: postgres``), with
pgBackRest: real initdb/pg_ctl/pg_basebackup and the real pgbackrest binary."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from opsbook.sandbox.config import free_port
from opsbook.sandbox.load import run_load
from tests.sandbox.harness import Sandbox, running_sandbox, sandbox_env


def traversable(path: Path) -> None:
    """Tests run as root in a 0700 temporary directory: let the postgres user pass through."""
    for parent in [path, *path.parents]:
        if parent.exists() and not parent.stat().st_mode & 0o001:
            parent.chmod(parent.stat().st_mode | 0o001)


def _tools() -> None:
    if not shutil.which("pgbackrest"):
        pytest.skip("pgbackrest is not installed (.ci/run installs it: apt-get install pgbackrest)")
    if not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")) and not shutil.which("initdb"):
        pytest.skip("the PostgreSQL server binaries are not installed")


@pytest.fixture(scope="module")
def pg_sb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    _tools()
    root = tmp_path_factory.mktemp("pgbackups") / "ws"
    root.mkdir()
    traversable(root)
    env = sandbox_env(db="postgres", postgres_port=free_port())
    with running_sandbox(root, env) as s:
        urls = {x["name"]: x["url"] for x in s.status()["services"]}
        asyncio.run(run_load(urls=urls, rate=40, duration=2))
        yield s


def ob(sb: Sandbox, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "opsbook.cli.main", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "OPSBOOK_WORKSPACE": str(sb.ws.root)},
        timeout=timeout,
    )
