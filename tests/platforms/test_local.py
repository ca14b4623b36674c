"""The local platform on a real sandbox: status, health, scale behind the balancer, blue-green
deploy, switch, rollback to a recorded revision, logs, top, dry runs."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest

from opsbook.errors import ConflictError, NotFoundError, UsageError
from opsbook.platforms import platform_for
from opsbook.platforms.local import LocalPlatform
from tests.sandbox.harness import Sandbox


def local(sb: Sandbox, *, dry_run: bool = False) -> LocalPlatform:
    platform = platform_for(
        environment=sb.environment(),
        workspace=sb.ws.root,
        env_name="sandbox",
        actor="alice",
        dry_run=dry_run,
    )
    assert isinstance(platform, LocalPlatform)
    return platform


def replica_of(url: str) -> str:
    with urllib.request.urlopen(f"{url}/version", timeout=5) as reply:  # a new connection each
        data: dict[str, Any] = json.loads(reply.read())
    return str(data["replica"])


async def test_status_and_health(sandbox: Sandbox) -> None:
    p = local(sandbox)
    status = await p.status()
    assert [s["name"] for s in status["services"]] == [
        "account",
        "transaction",
        "payment",
        "notification",
    ]
    for svc in status["services"]:
        assert svc["state"] == "running" and svc["replicas"] == 1 and svc["version"] == "1.4.2"
        assert svc["uptime"] >= 0 and svc["memory"] >= 0
    health = await p.health()
    assert health["healthy"] and [s["status"] for s in health["services"]] == ["UP"] * 4
    one = await p.health(service="payment")
    assert [s["name"] for s in one["services"]] == ["payment"]
    assert one["services"][0]["checks"]["tls"] == "UP"
    with pytest.raises(UsageError, match="unknown service"):
        await p.health(service="ledger")


async def test_scale_puts_replicas_behind_the_balancer(sandbox: Sandbox) -> None:
    p = local(sandbox)
    scaled = await p.scale(service="account", replicas=3)
    assert scaled["replicas"] == 3 and scaled["available"] == 3 and scaled["previous_replicas"] == 1
    seen = {replica_of(sandbox.url("account")) for _ in range(9)}
    assert len(seen) == 3  # round robin over the three
    down = await p.scale(service="account", replicas=1)
    assert down["available"] == 1
    assert len({replica_of(sandbox.url("account")) for _ in range(4)}) == 1
    with pytest.raises(UsageError, match="replicas must be"):
        await p.scale(service="account", replicas=99)


async def test_blue_green_deploy_switch_and_rollback(sandbox: Sandbox) -> None:
    p = local(sandbox)
    before = replica_of(sandbox.url("notification"))
    staged = await p.deploy(service="notification", version="1.5.0", switch=False)
    assert staged["version"] == "1.4.2" and staged["standby"]["version"] == "1.5.0"
    assert replica_of(sandbox.url("notification")) == before  # traffic still on blue
    switched = await p.switch_traffic(service="notification")
    assert switched["version"] == "1.5.0" and switched["standby"]["version"] == "1.4.2"
    assert replica_of(sandbox.url("notification")) != before
    back = await p.switch_traffic(service="notification")  # instant: blue still runs
    assert back["version"] == "1.4.2" and replica_of(sandbox.url("notification")) == before
    deployed = await p.deploy(service="notification", version="1.5.1")
    assert deployed["version"] == "1.5.1" and deployed["revision"] == 4
    rolled = await p.rollback(service="notification", revision=2)  # blue is the standby
    assert rolled["version"] == "1.4.2" and rolled["rolled_back_from"] == 4
    assert rolled["revision"] == 2 and rolled["standby"] is None

    def history() -> list[tuple[int, str, str]]:
        return [
            (r["revision"], r["version"], r["status"])
            for r in sandbox.service("notification")["revisions"]
        ]

    assert history() == [
        (1, "1.4.1", "superseded"),  # a fresh sandbox has a history
        (2, "1.4.2", "active"),
        (3, "1.5.0", "superseded"),
        (4, "1.5.1", "superseded"),
    ]
    again = await p.rollback(service="notification", revision=3)  # not running: redeployed
    assert again["version"] == "1.5.0" and again["revision"] == 5
    assert history()[-1] == (5, "1.5.0", "active") and history()[1][2] == "superseded"
    previous = await p.rollback(service="notification")  # default: the revision before
    assert previous["rolled_back_to"] == 4 and previous["version"] == "1.5.1"
    await p.rollback(service="notification", revision=2)
    with pytest.raises(NotFoundError, match="no revision 42"):
        await p.rollback(service="notification", revision=42)
    with pytest.raises(ConflictError, match="no standby"):
        await p.switch_traffic(service="notification")
    with pytest.raises(UsageError, match="version must look like"):
        await p.deploy(service="notification", version="../../etc")
    with pytest.raises(NotFoundError, match=r"no release '9\.9\.9'"):
        await p.deploy(service="notification", version="9.9.9")


async def test_restart_logs_and_top(sandbox: Sandbox) -> None:
    p = local(sandbox)
    before = replica_of(sandbox.url("transaction"))
    restarted = await p.restart(service="transaction")
    assert restarted["healthy"] and restarted["restarts"] == 1
    assert replica_of(sandbox.url("transaction")) != before
    logs = await p.logs(service="transaction", lines=20)
    assert 0 < logs["count"] <= 20 and all(isinstance(line, dict) for line in logs["lines"])
    assert any(line.get("event") == "started" for line in logs["lines"])
    top = await p.top()
    assert {s["name"] for s in top["services"]} == {
        "account",
        "transaction",
        "payment",
        "notification",
    }
    assert all(s["memory_mb"] > 0 for s in top["services"])


async def test_dry_runs_change_nothing(sandbox: Sandbox) -> None:
    p = local(sandbox, dry_run=True)
    assert (await p.restart(service="payment"))["would_run"] == [
        "sandbox: rolling restart of payment"
    ]
    assert "would_run" in await p.scale(service="payment", replicas=4)
    assert (await p.health())["would_get"][0].endswith("/health")
    assert sandbox.service("payment")["replicas"] == 1


async def test_canary_primitives_split_the_traffic_and_refuse_a_second_release(
    sandbox: Sandbox,
) -> None:
    """The supervisor's progressive-delivery primitives: a release beside the running one with
    no traffic, a weight, the per-slot counters, a second release refused naming the first,
    abort returning all traffic, and promotion keeping the old set."""
    p = local(sandbox)
    started = await p.start_release(service="transaction", version="1.5.0", strategy="canary")
    assert started["standby"]["version"] == "1.5.0" and started["standby"]["weight"] == 0
    with pytest.raises(ConflictError, match=r"already being deployed: 1\.5\.0 \(canary\)"):
        await p.start_release(service="transaction", version="1.5.1", strategy="canary")
    await p.set_weight(service="transaction", weight=100)
    seen = {replica_of(sandbox.url("transaction")) for _ in range(6)}
    canary_pod = next(
        pod["name"] for pod in sandbox.service("transaction")["pods"] if pod["version"] == "1.5.0"
    )
    assert seen == {canary_pod}  # every request (each a new connection) reaches the canary
    slots = await p.slot_metrics(service="transaction")
    assert slots["weight"] == 100 and slots["standby"]["version"] == "1.5.0"
    assert {"requests", "errors", "latency", "payments"} <= set(slots["active"])
    aborted = await p.abort(service="transaction", reason="test")
    assert aborted["version"] == "1.4.2" and aborted["standby"] is None
    assert canary_pod not in {replica_of(sandbox.url("transaction")) for _ in range(4)}
    history = sandbox.service("transaction")["revisions"]
    assert (history[-1]["version"], history[-1]["status"]) == ("1.5.0", "aborted")
    await p.start_release(service="transaction", version="1.5.0", strategy="canary")
    promoted = await p.promote(service="transaction", keep_old_for=300)
    assert promoted["version"] == "1.5.0" and promoted["standby"]["version"] == "1.4.2"
    back = await p.rollback(service="transaction")  # instant: the old set still runs
    assert back["version"] == "1.4.2"
    with pytest.raises(NotFoundError, match=r"no release '2\.0\.0'"):
        await p.start_release(service="transaction", version="2.0.0", strategy="rolling")
