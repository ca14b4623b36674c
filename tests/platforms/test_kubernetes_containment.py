"""Containment on Kubernetes (issue 14): isolate/release label the service's pods for the
``quarantine`` NetworkPolicy, freeze/unfreeze go to the account service's hold endpoint; the
exact commands in a dry run, nothing run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from opsbook.actions import containment
from opsbook.actions._registry import ActionContext
from tests.platforms.conftest import Recorded

NS = "banking-platform-prod"


def _ctx(env: dict[str, Any]) -> ActionContext:
    return ActionContext(
        environment_name="production",
        environment=env,
        workspace=Path("/ws"),
        execution_id="ex-k8s",
        started_by="sam",
        dry_run=True,
    )


async def test_isolate_and_release_are_networkpolicy_labels(
    production: dict[str, Any], recorded: Recorded
) -> None:
    isolate = await containment.isolate.func(
        _ctx(production), {"service": "payment", "ticket": "INC-7"}
    )
    assert isolate["would_run"] == [
        f"kubectl label pods --selector app=payment quarantine=true --overwrite -n {NS}"
    ]
    release = await containment.release.func(_ctx(production), {"service": "payment"})
    assert release["would_run"] == [
        f"kubectl label pods --selector app=payment quarantine- --overwrite -n {NS}"
    ]
    freeze = await containment.freeze.func(_ctx(production), {"account": 3, "ticket": "INC-7"})
    assert freeze["would_run"] == [
        "kubectl exec deployment/account -- curl -fsS -X POST"
        f" 'http://localhost:8080/admin/accounts/3/hold?ticket=INC-7' -n {NS}"
    ]
    assert recorded.calls() == []  # nothing ran
