"""A tiny real workspace on disk and an engine over a real SQLite database."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from opsbook.db import Database, open_database
from opsbook.engine._executor import Engine
from opsbook.engine.secrets import EnvSecretProvider, Redactor, SecretResolver
from opsbook.runbooks.catalogue import load_catalogue
from opsbook.runbooks.parser import parse_file
from opsbook.workspace import Workspace, load_environment

TOML = """\
[workspace]
name = "test"
default_environment = "sandbox"
default_roles = ["operator"]

[users]
alice = ["operator"]
bob = ["operator", "approver"]
carol = ["manager", "approver"]
root = ["admin", "operator"]
"""

ENV = """\
name: sandbox
platform: local
namespace: banking-platform-sandbox
services:
  - {name: account, port: 1}
  - {name: payment, port: 2}
"""


@dataclass
class Harness:
    ws: Workspace
    db: Database

    def write(self, name: str, text: str) -> Path:
        path = self.ws.runbooks_dir / name
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
        return path

    def engine(self, **kw: Any) -> Engine:
        redactor = Redactor()
        resolver = SecretResolver([EnvSecretProvider()], redactor)
        return Engine(
            db=self.db,
            workspace=self.ws,
            resolver=resolver,
            redactor=redactor,
            load_runbook=parse_file,
            resolve_ref=lambda ref: load_catalogue(self.ws.runbooks_dir).resolve(ref),
            **kw,
        )

    async def run(
        self,
        ref: str,
        *,
        user: str = "alice",
        params: dict[str, Any] | None = None,
        dry_run: bool = False,
        **kw: Any,
    ) -> Any:
        rb, proc = load_catalogue(self.ws.runbooks_dir).resolve(ref)
        env = load_environment(self.ws, "sandbox")
        return await self.engine(**kw).start(
            runbook=rb,
            procedure=proc,
            environment=env,
            params=params or {},
            started_by=user,
            dry_run=dry_run,
        )


def make_workspace(root: Path) -> Workspace:
    (root / "runbooks").mkdir(parents=True)
    (root / "environments").mkdir()
    (root / "opsbook.toml").write_text(TOML)
    (root / "environments" / "sandbox.yaml").write_text(ENV)
    return Workspace.load(root)


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    ws = make_workspace(tmp_path / "ws")
    db = open_database(f"sqlite:///{ws.state_dir / 'opsbook.db'}")
    yield Harness(ws, db)
    db.close()
