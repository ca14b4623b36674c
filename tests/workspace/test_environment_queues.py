"""An environment's workers' queues (ADR 0017 §5): `queue:` (its runs' home queue, `default`
when absent) and `queues:` (logical names a step's `{queue=…}` gives, mapped to this region's
queues). Bad values are refused when the file is loaded, at their file:line, with the fix."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from opsbook.errors import ValidationError
from opsbook.workspace import Environment, Workspace, load_environment
from tests.engine.conftest import make_workspace

BASE = "name: east\nplatform: local\n"


def env_file(ws: Workspace, text: str, name: str = "east") -> Path:
    path = ws.environments_dir / f"{name}.yaml"
    path.write_text(BASE + text, encoding="utf-8")
    return path


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return make_workspace(tmp_path / "ws")


def test_queue_and_queues_are_read(ws: Workspace) -> None:
    env_file(ws, "queue: eastus\nqueues:\n  db: eastus-db\n  gpu: eastus.gpu_1\n")
    env = load_environment(ws, "east")
    assert env.queue == "eastus"
    assert env.queues == {"db": "eastus-db", "gpu": "eastus.gpu_1"}


def test_without_them_the_queue_is_default_and_nothing_is_mapped(ws: Workspace) -> None:
    env = load_environment(ws, "sandbox")
    assert env.queue == "default"
    assert env.queues == {}
    env_file(ws, "queues:\n", name="empty")  # an empty mapping written as nothing
    assert load_environment(ws, "empty").queues == {}


def test_an_environment_built_in_code_reads_its_data(tmp_path: Path) -> None:
    env = Environment("dr", tmp_path / "dr.yaml", {"queue": "westus2", "queues": {"db": "w-db"}})
    assert (env.queue, env.queues) == ("westus2", {"db": "w-db"})


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("queue: East US\n", 3, "queue: 'East US' is not a queue name"),
        ("queue: 12:00\n", 3, "is not a queue name"),  # YAML reads a sexagesimal number
        ("queue:\n  - a\n", 3, "is not a queue name"),
        ("queues: [eastus-db]\n", 3, "queues: must be a mapping"),
        ("queues:\n  db: eastus-db\n  gpu: GPU\n", 5, "queues: 'gpu': 'GPU' is not a queue"),
        ("queues:\n  db: eastus-db\n  Big DB: x\n", 5, "'Big DB' is not a logical queue name"),
        ("queues:\n  db: 7\n", 4, "queues: 'db': 7 is not a queue"),
    ],
)
def test_bad_values_are_refused_at_their_line(
    ws: Workspace, text: str, line: int, message: str
) -> None:
    path = env_file(ws, text)
    with pytest.raises(ValidationError) as info:
        load_environment(ws, "east")
    err = info.value
    assert message in err.message
    assert err.location is not None
    assert (err.location.path, err.location.line) == (str(path), line)
    assert err.hint is not None
    assert "[a-z0-9][a-z0-9._-]*" in err.hint or "queues: {db: eastus-db}" in err.hint


def test_the_cli_reports_a_bad_queue_as_a_usage_error(ws: Workspace) -> None:
    path = env_file(ws, "queue: East US\n")
    (ws.runbooks_dir / "r.md").write_text(
        "---\nid: r\ntitle: R\n---\n\n# R\n\n## P\n\n```yaml procedure\n"
        "permissions: [operator]\n```\n\n### One\n\n```sh\ntrue\n```\n",
        encoding="utf-8",
    )
    done = subprocess.run(
        [sys.executable, "-m", "opsbook.cli.main", "run", "r#p", "--env", "east"],
        capture_output=True,
        text=True,
        env={**os.environ, "OPSBOOK_WORKSPACE": str(ws.root)},
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"{path}:3" in done.stderr and "is not a queue name" in done.stderr
    assert "Traceback" not in done.stderr
