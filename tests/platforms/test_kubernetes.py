"""The kubernetes adapter: exact commands in a dry run, and real runs against recorded
kubectl/helm answers (tests/platforms/recordings)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from opsbook.errors import OpsbookError, StepError, UsageError, ValidationError
from opsbook.platforms import platform_for
from opsbook.platforms.kubernetes import KubernetesPlatform
from tests.platforms.conftest import Recorded

NS = "banking-platform-prod"


def k8s(env: dict[str, Any], *, dry_run: bool = False) -> KubernetesPlatform:
    platform = platform_for(
        environment=env, workspace=Path("/ws"), env_name="production", dry_run=dry_run
    )
    assert isinstance(platform, KubernetesPlatform)
    return platform


async def test_dry_run_prints_the_exact_commands(
    production: dict[str, Any], recorded: Recorded
) -> None:
    p = k8s(production, dry_run=True)
    assert (await p.restart(service="payment"))["would_run"] == [
        f"kubectl rollout restart deployment/payment -n {NS}",
        f"kubectl rollout status deployment/payment --timeout=300s -n {NS}",
    ]
    assert (await p.scale(service="payment", replicas=5))["would_run"] == [
        f"kubectl scale deployment payment --replicas=5 -n {NS}"
    ]
    assert (await p.rollback(service="payment", revision=42))["would_run"] == [
        f"helm rollback banking-platform-prod 42 -n {NS}"
    ]
    assert (await p.rollback(service="payment"))["would_run"] == [
        f"helm rollback banking-platform-prod -n {NS}"
    ]
    assert (await p.status())["would_run"] == [
        f"kubectl get deployments -o json -n {NS}",
        f"kubectl get pods -o json -n {NS}",
    ]
    assert (await p.top())["would_run"] == [f"kubectl top pods --no-headers -n {NS}"]
    deploy = (await p.deploy(service="payment", version="1.5.1"))["would_run"]
    assert deploy[0] == (
        "helm upgrade banking-platform-prod banking-platform/banking-platform --reuse-values "
        "--set payment.green.enabled=true --set payment.green.image.tag=1.5.1 --wait "
        f"--timeout 10m -n {NS}"
    )
    assert deploy[-1].startswith("kubectl patch service payment --patch ")
    health = await p.health()
    assert health["would_get"][0] == "https://api.banking-platform.com/api/account/health"
    assert recorded.calls() == []  # nothing ran


async def test_a_kube_context_is_pinned(production: dict[str, Any], recorded: Recorded) -> None:
    p = k8s({**production, "kube_context": "banking-platform-prod-aks"}, dry_run=True)
    assert (await p.restart(service="account"))["would_run"][0] == (
        f"kubectl rollout restart deployment/account -n {NS} --context banking-platform-prod-aks"
    )


async def test_status_from_recorded_kubectl(production: dict[str, Any], recorded: Recorded) -> None:
    result = await k8s(production).status()
    by_name = {s["name"]: s for s in result["services"]}
    assert list(by_name) == ["account", "transaction", "payment", "notification"]
    assert by_name["account"] | {"uptime": 0} == {
        "name": "account",
        "state": "running",
        "replicas": 3,
        "ready": 3,
        "version": "1.4.2",
        "restarts": 1,
        "uptime": 0,
        "cpu": None,
        "memory": None,
        "pods": ["account-7d9f8c6b5-2xkqp", "account-7d9f8c6b5-8lmzr", "account-7d9f8c6b5-vq4tn"],
    }
    assert by_name["payment"]["state"] == "crashed" and by_name["payment"]["restarts"] == 20
    assert by_name["payment"]["version"] == "1.5.0"
    assert by_name["notification"]["state"] == "degraded"
    assert by_name["notification"]["ready"] == 2
    assert recorded.calls() == [
        ["kubectl", "get", "deployments", "-o", "json", "-n", NS],
        ["kubectl", "get", "pods", "-o", "json", "-n", NS],
    ]


async def test_restart_scale_rollback_run_the_commands(
    production: dict[str, Any], recorded: Recorded
) -> None:
    p = k8s(production)
    restarted = await p.restart(service="payment")
    assert restarted["restarted"] and "successfully rolled out" in restarted["output"][1]
    scaled = await p.scale(service="payment", replicas=5)
    assert scaled["output"] == ["deployment.apps/payment scaled"]
    rolled = await p.rollback(service="payment", revision=42)
    assert "Rollback was a success" in rolled["output"][0]
    assert [c[:3] for c in recorded.calls()] == [
        ["kubectl", "rollout", "restart"],
        ["kubectl", "rollout", "status"],
        ["kubectl", "scale", "deployment"],
        ["helm", "rollback", "banking-platform-prod"],
    ]


async def test_switch_flips_the_live_slot(production: dict[str, Any], recorded: Recorded) -> None:
    result = await k8s(production).switch_traffic(service="payment")
    assert result["slot"] == "green"
    assert recorded.calls()[-1][:4] == ["kubectl", "patch", "service", "payment"]


async def test_top_and_logs_are_parsed(production: dict[str, Any], recorded: Recorded) -> None:
    p = k8s(production)
    top = {s["name"]: s for s in (await p.top())["services"]}
    assert top["transaction"]["cpu_percent"] == 14.4 and len(top["transaction"]["pods"]) == 3
    assert top["notification"]["memory_mb"] == 120 + 118 + 1024
    logs = await p.logs(service="payment", lines=200)
    assert logs["count"] == 3 and logs["lines"][1]["error"] == "KeyError: 'currency_rules'"
    assert logs["lines"][2]["message"].startswith("Exception in thread")


async def test_failures_are_step_errors_with_stderr(
    production: dict[str, Any], recorded: Recorded
) -> None:
    with pytest.raises(StepError, match="release: not found"):
        await k8s(production).rollback(service="payment", revision=999)
    with pytest.raises(UsageError, match="unknown service 'ledger'"):
        await k8s(production).restart(service="ledger")


async def test_missing_tools_and_namespace(
    production: dict[str, Any], recorded: Recorded, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(OpsbookError, match="kubectl is not installed"):
        await k8s(production).status()
    with pytest.raises(ValidationError, match="no `namespace`"):
        k8s({k: v for k, v in production.items() if k != "namespace"})
