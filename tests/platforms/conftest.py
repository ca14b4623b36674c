"""Fixtures: recorded kubectl/helm first on PATH, the production environment, a real sandbox."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.sandbox.harness import Sandbox, running_sandbox

HERE = Path(__file__).parent
TEMPLATE = HERE.parents[1] / "src" / "opsbook" / "workspace" / "templates" / "environments"


@dataclass
class Recorded:
    calls_file: Path

    def calls(self) -> list[list[str]]:
        if not self.calls_file.exists():
            return []
        return [json.loads(line) for line in self.calls_file.read_text().splitlines()]


@pytest.fixture
def recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Recorded:
    """``kubectl`` and ``helm`` that answer from tests/platforms/recordings."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("kubectl", "helm"):
        script = bin_dir / tool
        script.write_text(
            f'#!/bin/sh\nexec "{sys.executable}" "{HERE / "recorded_cli.py"}" "$0" "$@"\n'
        )
        script.chmod(0o755)
    calls = tmp_path / "calls.jsonl"
    monkeypatch.setenv("PATH", f"{bin_dir}:{Path(sys.executable).parent}:/usr/bin:/bin")
    monkeypatch.setenv("OPSBOOK_RECORDED_CALLS", str(calls))
    return Recorded(calls)


@pytest.fixture
def production() -> dict[str, Any]:
    """The production environment exactly as `opsbook init` writes it."""
    data: dict[str, Any] = yaml.safe_load((TEMPLATE / "production.yaml").read_text())
    return data


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    with running_sandbox(tmp_path_factory.mktemp("platforms") / "ws") as sb:
        yield sb
