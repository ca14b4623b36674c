"""Reading the environment file, ports, durations and fault requests."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from opsbook.errors import NotFoundError, UsageError, ValidationError
from opsbook.sandbox.config import (
    SandboxConfig,
    config_from_environment,
    free_port,
    free_ports,
    port_is_free,
    settle_ports,
    write_back,
)
from opsbook.sandbox.faults import FAULTS, check_request, parse_duration
from opsbook.sandbox.lifecycle import load_config
from tests.sandbox.harness import HEADER, make_workspace, sandbox_env


def _config(tmp_path: Path, env: dict[str, object]) -> SandboxConfig:
    return config_from_environment(
        workspace=tmp_path, env_name="sandbox", env_path=tmp_path / "sandbox.yaml", data=env
    )


def test_the_environment_file_becomes_a_config(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws")
    config = load_config(workspace=ws)
    assert config.data_path == ws.root / ".opsbook" / "sandbox"
    assert config.database_url == f"sqlite:///{config.data_path / 'ledger.db'}"
    assert [s.name for s in config.services] == [
        "account",
        "transaction",
        "payment",
        "notification",
    ]
    assert SandboxConfig.from_json(config.to_json()) == config


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"platform": "kubernetes"}, "not 'local'"),
        ({"services": [{"name": "ledger", "port": 1}]}, "unknown service 'ledger'"),
        ({"services": [{"name": "payment", "replicas": 99}]}, "replicas must be between"),
        ({"services": [{"name": "payment", "port": "high"}]}, "must be a number"),
        ({"sandbox": {"database_url": "mysql://x"}}, "database_url must be"),
    ],
)
def test_bad_environment_files_are_validation_errors(
    tmp_path: Path, change: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError, match=message) as info:
        _config(tmp_path, {**sandbox_env(), **change})
    assert info.value.exit_code == 2 and str(tmp_path) in str(info.value.location)


def test_missing_ports_are_picked_and_written_back(tmp_path: Path) -> None:
    env = sandbox_env()
    for svc in env["services"]:
        del svc["port"]
    env["sandbox"]["payment_network_port"] = None
    ws = make_workspace(tmp_path / "ws", env)
    config, changes = settle_ports(load_config(workspace=ws), strict=True)
    assert {c.what for c in changes} == {
        "account",
        "transaction",
        "payment",
        "notification",
        "payment network",
    }
    assert all(c.reason == "missing" for c in changes)
    write_back(config, changes)
    text = (ws.environments_dir / "sandbox.yaml").read_text()
    data = yaml.safe_load(text)
    assert text.startswith(HEADER) and data["namespace"] == "banking-platform-sandbox"
    assert data["sandbox"]["payment_network_port"] == config.network_port
    assert {s["port"] for s in data["services"]} == {s.port for s in config.services}
    assert list(data) == list(env)  # keys keep their order


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("30s", 30), ("5m", 300), ("1h", 3600), ("250ms", 0.25), (None, None)],
)
def test_durations(text: str | None, seconds: float | None) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["soon", "-5s", "0", "5 days"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(UsageError):
        parse_duration(text)


def test_every_fault_is_known_and_described() -> None:
    assert set(FAULTS) == {
        "crash",
        "hang",
        "latency",
        "error-rate",
        "db-down",
        "db-connections-exhausted",
        "dependency-slow",
        "memory-leak",
        "disk-full",
        "cert-expiring",
        "suspicious-logins",
        "bad-deploy",
        "pan-in-log",
        "weak-tls",
        "expired-cert",
        "dormant-admin",
        "leaked-token",
        "backup-job-stopped",
        "corrupted-backup",
        "lagging-replica",
    }
    assert {f for f, spec in FAULTS.items() if spec.security} == {
        "pan-in-log",
        "weak-tls",
        "expired-cert",
        "dormant-admin",
        "leaked-token",
    }
    for spec in FAULTS.values():
        assert (
            spec.description and spec.symptom and spec.ended_by in ("restart", "rollback", "clear")
        )
    with pytest.raises(NotFoundError, match="unknown fault"):
        check_request("flood", None)
    assert check_request("latency", None)[1] is None
    assert check_request("latency", "payment")[1] == "payment"


def test_picked_ports_are_outside_the_ephemeral_range_and_distinct() -> None:
    """A port from the kernel's ephemeral range can become an outgoing connection's source port
    before the sandbox binds it (a CI run failed so: "address already in use" on a picked port)."""
    low, high = (int(x) for x in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    ports = free_ports(40)
    assert len(set(ports)) == 40
    assert all(not low <= p <= high for p in ports)
    assert all(port_is_free(p) for p in ports)
    taken = set(ports[:10])
    assert free_port(avoid=taken) not in taken
