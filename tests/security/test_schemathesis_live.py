"""Issue 16 §4: schemathesis against a fresh ``opsbook serve`` (a real process on a free port,
over a workspace made by ``opsbook init``), every check, a short deterministic run; no
failure.

The run is bounded (few examples per operation, deterministic generation, a time budget);
``schemathesis.toml`` next to this file says where ``positive_data_acceptance`` cannot hold
and why. tests/api/test_schemathesis.py fuzzes the same document in-process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

BIN = Path(sys.executable).parent
CONFIG = Path(__file__).with_name("schemathesis.toml")
SCOPES = ("read", "alerts", "run", "approve", "audit", "admin")


def _opsbook(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "opsbook"), *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    root = tmp_path_factory.mktemp("live")
    made = _opsbook("init", "ws", cwd=root)
    assert made.returncode == 0, made.stderr
    ws = root / "ws"
    port = free_port()
    log = (root / "serve.log").open("w")
    proc = subprocess.Popen(
        [str(BIN / "opsbook"), "serve", "--port", str(port), "--no-schedules"],
        cwd=ws,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "NO_COLOR": "1"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(url + "/api/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError((root / "serve.log").read_text())
            time.sleep(0.1)
        # `serve` made the admin account on its first start; the fuzzer uses its own token.
        scopes = [a for s in SCOPES for a in ("--scope", s)]
        made = _opsbook("tokens", "create", "-u", "admin", "-n", "fuzz", *scopes, "--json", cwd=ws)
        assert made.returncode == 0, made.stderr
        yield url, json.loads(made.stdout)["token"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def test_schemathesis_finds_no_failure(live: tuple[str, str], tmp_path: Path) -> None:
    url, token = live
    run = subprocess.run(
        [
            str(BIN / "schemathesis"),
            "--config-file",
            str(CONFIG),
            "run",
            url + "/api/v1/openapi.json",
            "--header",
            f"Authorization: Bearer {token}",
            # no --checks: every check runs by default, and "--checks all" would override
            # the per-operation settings of schemathesis.toml
            # coverage and fuzzing; the stateful phase follows links to DELETE /tokens/{id}
            # and would revoke its own token half way
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            "2",
            "--generation-deterministic",
            "--workers",
            "1",
            "--max-time",
            "45",
            "--request-timeout",
            "10",
            "--report",
            "junit",
            "--report-dir",
            str(tmp_path),
        ],
        cwd=tmp_path,  # schemathesis keeps a .schemathesis/ cache in its working directory
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_TELEMETRY": "false"},
    )
    summary = run.stdout[-6000:]
    assert run.returncode == 0, summary
    assert "Tested: 56" in run.stdout, summary  # 59 operations, 3 left out in the config
    # the token still worked at the end (a revoked one would turn every answer into a 401)
    assert "Authentication failed" not in run.stdout, summary
