"""One real sandbox for the whole tests/secops session; each test leaves it healthy (the pattern
of tests/troubleshoot/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from opsbook.sandbox import lifecycle
from tests.sandbox.harness import Sandbox, running_sandbox, wait_for


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    with running_sandbox(tmp_path_factory.mktemp("secops") / "ws") as sb:
        yield sb


def _healthy(sandbox: Sandbox, name: str) -> bool:
    try:
        return httpx.get(sandbox.url(name) + "/health", timeout=3).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def sb(sandbox: Sandbox) -> Iterator[Sandbox]:
    """The session sandbox, restored after the test: faults cleared, every service healthy."""
    yield sandbox
    control = sandbox.control()
    control.call("clear", {"actor": "pytest"})
    for name in ("account", "transaction", "payment", "notification"):  # containments end
        control.call("contain", {"action": "release", "service": name, "actor": "pytest"})
    (sandbox.data_dir / "containment.json").unlink(missing_ok=True)
    for svc in lifecycle.status(workspace=sandbox.ws)["services"]:
        if svc["state"] != "running" or svc["replicas"] != 1:
            if svc["replicas"] != 1:
                control.call("scale", {"service": svc["name"], "replicas": 1})
            else:
                control.call("restart", {"service": svc["name"]})
    wait_for(lambda: all(s["ready"] == 1 for s in sandbox.status()["services"]), timeout=15)
    wait_for(
        lambda: all(_healthy(sandbox, s["name"]) for s in sandbox.status()["services"]), timeout=20
    )
