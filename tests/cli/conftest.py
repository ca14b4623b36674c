"""Run the real `opsbook` console script in subprocesses against a workspace on disk."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.engine.conftest import make_workspace

OPSBOOK = [sys.executable, "-m", "opsbook.cli.main"]

Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def ws_root(tmp_path: Path) -> Path:
    return make_workspace(tmp_path / "ws").root


@pytest.fixture
def ob(ws_root: Path) -> Run:
    def run(
        *args: str, env: dict[str, str] | None = None, input: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        full_env = {**os.environ, "OPSBOOK_WORKSPACE": str(ws_root), **(env or {})}
        return subprocess.run(
            [*OPSBOOK, *args],
            capture_output=True,
            text=True,
            env=full_env,
            input=input,
            timeout=timeout,
            stdin=None if input else subprocess.DEVNULL,
        )

    return run
