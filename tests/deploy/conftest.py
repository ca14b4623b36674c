"""A fresh `opsbook init` workspace with its real sandbox on free ports, for the deployment
tests, and a driver for `opsbook deploy` (a person approves, as operators would)."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from opsbook.runbooks.catalogue import load_catalogue
from opsbook.sandbox import lifecycle
from opsbook.sandbox.config import free_ports
from opsbook.workspace import Workspace
from opsbook.workspace.init import init_workspace
from tests.workspace.drive import TERMINAL, Driver

#: Faster strategies for tests: one canary step at 50 %, the error ratio measured every second.
FAST_DEPLOYMENTS = """\
strategies:
  canary:
    steps: [{weight: 50, pause: 1s}]
    analysis: quick
    keep_old_for: 30s
  blue-green:
    analysis: quick
    keep_old_for: 30s
  rolling:
    analysis: quick
analysis:
  quick:
    on_inconclusive: continue
    metrics:
      - name: error-ratio
        provider: sandbox
        query: error_ratio
        success_condition: "result <= baseline + 0.02"
        interval: 1s
        count: 10
        failure_limit: 1
        min_requests: 3
"""


def move_ports(env_file: Path) -> None:
    ports = free_ports(6)
    text = re.sub(r"\b1810([0-5])\b", lambda m: str(ports[int(m.group(1))]), env_file.read_text())
    env_file.write_text(text, encoding="utf-8")


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    root = tmp_path_factory.mktemp("deploy") / "bank"
    init_workspace(target=root)
    move_ports(root / "environments" / "sandbox.yaml")
    (root / "deployments.yaml").write_text(FAST_DEPLOYMENTS, encoding="utf-8")
    # the shipped calendar freezes the wire cut-off and month-end: tests run at any hour
    (root / "change_calendar.yaml").write_text("freezes: []\n", encoding="utf-8")
    ws = Workspace.load(root)
    lifecycle.up(workspace=ws)
    try:
        yield ws
    finally:
        lifecycle.down(workspace=ws)


@dataclass
class Deployer(Driver):
    """Driver plus `opsbook deploy`: start it, approve, resume until it ends."""

    def deploy(self, *args: str, rounds: int = 8) -> tuple[int, dict[str, Any] | str]:
        _, proc = load_catalogue(self.root / "runbooks").resolve("deployment-procedures#release")
        starter = self.someone_with(proc.permissions)[0]
        started = self.ob("deploy", *args, "--yes", "--json", "--as", starter, timeout=300)
        self.first_exit = started.returncode
        if started.returncode not in (0, 1, 3):
            return started.returncode, started.stdout + started.stderr
        execution: dict[str, Any] = json.loads(started.stdout)
        for _ in range(rounds):
            if execution["state"] in TERMINAL:
                return 0, execution
            execution = self._act(execution, proc, starter)
        raise AssertionError(f"deploy did not finish: {execution['state_name']}")

    def releases(self) -> list[dict[str, Any]]:
        out = self.ob("releases", "list", "--json")
        assert out.returncode == 0, out.stderr
        rows: list[dict[str, Any]] = json.loads(out.stdout)["releases"]
        return rows

    def record(self, release_id: str) -> dict[str, Any]:
        out = self.ob("releases", "show", release_id, "--json")
        assert out.returncode == 0, out.stderr
        data: dict[str, Any] = json.loads(out.stdout)
        return data


@pytest.fixture
def deployer(bank: Workspace) -> Deployer:
    return Deployer(bank.root, fake_platform=False)


def step_result(execution: dict[str, Any], step: str) -> Any:
    stored = next(s["result"] for s in execution["steps"] if s["step"] == step)
    return stored["fields"]["result"]


@dataclass
class Payments:
    """Card payments at a steady rate straight to the payment service while a test deploys:
    the customer traffic an analysis judges; the answers are counted."""

    url: str
    rate: float = 30.0
    codes: dict[int, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Payments:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        import httpx

        with httpx.Client(timeout=10.0) as client:
            t0, i = time.monotonic(), 0
            while not self._stop.is_set():
                due = t0 + i / self.rate
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                i += 1
                try:
                    code = client.post(
                        f"{self.url}/payments",
                        json={"account_id": 3, "amount_cents": 1, "payee": "shop"},
                    ).status_code
                except httpx.HTTPError:
                    code = 0
                self.codes[code] = self.codes.get(code, 0) + 1

    @property
    def failed(self) -> int:
        return sum(n for c, n in self.codes.items() if c == 0 or c >= 500)

    @property
    def sent(self) -> int:
        return sum(self.codes.values())
