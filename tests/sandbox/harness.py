"""A real sandbox for tests: a throwaway workspace whose ``environments/sandbox.yaml`` points at
free ports, started with :func:`opsbook.sandbox.lifecycle.up` and stopped (checked by pid)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import yaml

from opsbook.sandbox import lifecycle
from opsbook.sandbox.config import SERVICES, SandboxConfig, free_ports
from opsbook.sandbox.control import Control
from opsbook.workspace import Workspace

TOML = """[workspace]
name = "sandbox-tests"
default_environment = "sandbox"
default_roles = ["operator"]

[users]
alice = ["operator"]
"""

HEADER = "# The sandbox for tests: free ports picked by the fixture.\n"


def sandbox_env(*, ports: dict[str, int] | None = None, **sandbox: Any) -> dict[str, Any]:
    ports = ports or {}
    names = (*SERVICES, "gateway", "network")
    picked = iter(free_ports(len(names)))
    port = {name: ports.get(name) or next(picked) for name in names}
    return {
        "name": "sandbox",
        "platform": "local",
        "namespace": "banking-platform-sandbox",
        "helm_release": "banking-platform-sandbox",
        "api_base": f"http://127.0.0.1:{port['gateway']}",
        "sandbox": {
            "data_dir": ".opsbook/sandbox",
            "payment_network_port": port["network"],
            "database_url": None,
            **sandbox,
        },
        "databases": {"ledger": {"url": "sqlite:///.opsbook/sandbox/ledger.db"}},
        "monitoring": {"prometheus": None, "grafana": None, "kibana": None},
        "services": [
            {
                "name": name,
                "port": port[name],
                "replicas": 1,
                "health_url": f"http://127.0.0.1:{port[name]}/health",
                "metrics_url": f"http://127.0.0.1:{port[name]}/metrics",
            }
            for name in SERVICES
        ],
    }


def make_workspace(root: Path, env: dict[str, Any] | None = None) -> Workspace:
    (root / "runbooks").mkdir(parents=True, exist_ok=True)
    (root / "environments").mkdir(exist_ok=True)
    (root / "opsbook.toml").write_text(TOML, encoding="utf-8")
    body = yaml.safe_dump(env or sandbox_env(), sort_keys=False)
    (root / "environments" / "sandbox.yaml").write_text(HEADER + body, encoding="utf-8")
    return Workspace.load(root)


@dataclass
class Sandbox:
    ws: Workspace
    config: SandboxConfig

    @property
    def data_dir(self) -> Path:
        return self.config.data_path

    def control(self) -> Control:
        return Control.for_data_dir(self.data_dir)

    def status(self) -> dict[str, Any]:
        return lifecycle.status(workspace=self.ws)

    def service(self, name: str) -> dict[str, Any]:
        return next(s for s in self.status()["services"] if s["name"] == name)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.config.service(name).port}"

    def environment(self) -> dict[str, Any]:
        data: dict[str, Any] = yaml.safe_load(
            (self.ws.environments_dir / "sandbox.yaml").read_text(encoding="utf-8")
        )
        return data

    def pids(self) -> list[dict[str, Any]]:
        from opsbook.sandbox.state import read_state, recorded_processes

        state = read_state(self.data_dir)
        return recorded_processes(state) if state else []

    def log_lines(self, name: str) -> list[dict[str, Any]]:
        path = self.data_dir / "logs" / f"{name}.log"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def http(
    url: str, *, method: str = "GET", body: Any = None, timeout: float = 5.0
) -> tuple[int | None, Any]:
    """(status, parsed JSON body or text); status None when nothing answered in time."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            code, raw = reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        code, raw = exc.code, exc.read()
    except (TimeoutError, OSError):
        return None, None
    try:
        return code, json.loads(raw)
    except ValueError:
        return code, raw.decode(errors="replace")


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        metric_name = head.split("{", 1)[0]
        if metric_name != name:
            continue
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    return total


def wait_for(check: Any, *, timeout: float = 10.0, interval: float = 0.1) -> Any:
    """Poll ``check()`` until it returns something truthy; that value (or AssertionError)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last: {last!r})")


def gone(pids: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The recorded processes that still run (by pid and creation time)."""
    left = []
    for p in pids:
        try:
            proc = psutil.Process(p["pid"])
            if (
                abs(proc.create_time() - p["create_time"]) < 0.05
                and proc.status() != psutil.STATUS_ZOMBIE
            ):
                left.append(p)
        except psutil.NoSuchProcess:
            continue
    return left


@contextmanager
def running_sandbox(root: Path, env: dict[str, Any] | None = None) -> Iterator[Sandbox]:
    ws = make_workspace(root, env)
    result = lifecycle.up(workspace=ws)
    sandbox = Sandbox(ws, result.config)
    pids = sandbox.pids()
    try:
        yield sandbox
    finally:
        pids += [p for p in sandbox.pids() if p not in pids]
        lifecycle.down(workspace=ws)
        left = gone(pids)
        assert not left, f"processes left behind: {left}"
