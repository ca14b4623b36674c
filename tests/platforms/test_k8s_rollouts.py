"""Release strategies on Kubernetes: the exact Helm/kubectl/Argo Rollouts commands in a dry run,
and real runs against recorded answers (tests/platforms/recordings/argo-rollouts-*, replayed by
the same fake kubectl/helm as the adapter's tests)."""

from __future__ import annotations

import json
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from opsbook.errors import ConflictError, StepError, UsageError, ValidationError
from opsbook.platforms.k8s_rollouts import KubernetesRollouts
from opsbook.platforms.kubernetes import KubernetesPlatform
from tests.platforms.conftest import Recorded

HERE = Path(__file__).parent
RECORDINGS = HERE / "recordings"
NS = "banking-platform-prod"
PROMETHEUS = "http://prometheus-server.monitoring.svc:9090"
STEPS = [
    {"weight": 10, "pause": "15s"},
    {"weight": 25, "pause": "15s"},
    {"weight": 50, "pause": "15s"},
]
ERROR_RATIO = (
    'sum(rate(http_requests_total{service="{{ service }}",version="{{ version }}",'
    'status=~"5.."}[1m])) / sum(rate(http_requests_total{service="{{ service }}",'
    'version="{{ version }}"}[1m]))'
)
PROM_METRIC = {
    "name": "error-ratio-prometheus",
    "provider": "prometheus",
    "query": ERROR_RATIO,
    "success_condition": "result < 0.01",
    "interval": "30s",
    "count": 5,
    "failure_limit": 1,
}
TEMPLATE = {"on_inconclusive": "abort", "metrics": [PROM_METRIC]}
# The analysis template of the task, exactly (a sandbox metric and a prometheus one).
DEPLOYMENTS_YAML = """\
analysis:
  canary-default:
    on_inconclusive: continue
    metrics:
      - name: error-ratio
        provider: sandbox
        query: error_ratio
        success_condition: "result <= baseline + 0.02"
        interval: 5s
        count: 6
        failure_limit: 1
        min_requests: 5
      - name: error-ratio-prometheus
        provider: prometheus
        query: 'sum(rate(http_requests_total{service="{{ service }}",version="{{ version }}",\
status=~"5.."}[1m])) / sum(rate(http_requests_total{service="{{ service }}",\
version="{{ version }}"}[1m]))'
        success_condition: "result < 0.01"
        interval: 30s
        count: 5
        failure_limit: 1
strategies:
  canary:
    steps: [{weight: 10, pause: 15s}, {weight: 25, pause: 15s}, {weight: 50, pause: 15s}]
    analysis: canary-default
"""

# The fake kubectl/helm: tests/platforms/recorded_cli.py unchanged, pointed at a directory whose
# commands.json is argo-rollouts-commands.json; it also keeps what it was given on stdin.
LAUNCHER = """\
import os, sys
from pathlib import Path
sys.path.insert(0, {here!r})
import recorded_cli
recorded_cli.RECORDINGS = Path({recordings!r})
data = sys.stdin.read()
if data:
    with open(os.environ["OPSBOOK_RECORDED_STDIN"], "a", encoding="utf-8") as out:
        out.write(data + "\\n")
sys.exit(recorded_cli.main([Path(sys.argv[1]).name, *sys.argv[2:]]))
"""


@dataclass
class Argo(Recorded):
    stdin_file: Path

    def stdin(self) -> list[Any]:
        if not self.stdin_file.exists():
            return []
        return [json.loads(line) for line in self.stdin_file.read_text().splitlines() if line]


@pytest.fixture
def argo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Argo:
    """``kubectl`` (with the Argo Rollouts plugin) and ``helm`` answering from the
    ``argo-rollouts-*`` recordings."""
    answers = tmp_path / "recordings"
    answers.mkdir()
    (answers / "commands.json").write_text((RECORDINGS / "argo-rollouts-commands.json").read_text())
    for recording in RECORDINGS.glob("argo-rollouts-*"):
        (answers / recording.name).symlink_to(recording)
    launcher = tmp_path / "launcher.py"
    launcher.write_text(LAUNCHER.format(here=str(HERE), recordings=str(answers)))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("kubectl", "helm"):
        script = bin_dir / tool
        script.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{launcher}" "$0" "$@"\n')
        script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{Path(sys.executable).parent}:/usr/bin:/bin")
    monkeypatch.setenv("OPSBOOK_RECORDED_CALLS", str(tmp_path / "calls.jsonl"))
    monkeypatch.setenv("OPSBOOK_RECORDED_STDIN", str(tmp_path / "stdin.jsonl"))
    return Argo(tmp_path / "calls.jsonl", tmp_path / "stdin.jsonl")


@pytest.fixture
def env(production: dict[str, Any]) -> dict[str, Any]:
    return {**production, "monitoring": {**production["monitoring"], "prometheus": PROMETHEUS}}


def rollouts(env: dict[str, Any], *, dry_run: bool = False) -> KubernetesRollouts:
    return KubernetesRollouts(KubernetesPlatform(environment=env, dry_run=dry_run))


def canary_steps(service: str, version: str) -> list[dict[str, Any]]:
    ref = {
        "templates": [{"templateName": "canary-prometheus"}],
        "args": [
            {"name": "service", "value": service},
            {"name": "version", "value": version},
            {"name": "namespace", "value": NS},
        ],
    }
    out: list[dict[str, Any]] = []
    for weight in (10, 25, 50):
        out += [{"setWeight": weight}, {"analysis": ref}, {"pause": {"duration": "15s"}}]
    return out


# -- dry run ------------------------------------------------------------------------------------


async def test_dry_run_shows_the_exact_commands_of_each_strategy(
    env: dict[str, Any], argo: Argo
) -> None:
    k = rollouts(env, dry_run=True)
    rolling = await k.start(service="payment", version="1.5.1", strategy="rolling")
    assert rolling["would_run"] == [
        "helm upgrade banking-platform-prod banking-platform/banking-platform --reuse-values "
        f"--set payment.image.tag=1.5.1 --wait --timeout 10m -n {NS}",
        f"kubectl rollout status deployment/payment --timeout=300s -n {NS}",
    ]

    canary = await k.start(
        service="payment",
        version="1.5.1",
        strategy="canary",
        steps=STEPS,
        analysis_name="canary-prometheus",
        analysis_template=TEMPLATE,
    )
    patch = {
        "spec": {
            "strategy": {
                "canary": {
                    "steps": canary_steps("payment", "1.5.1"),
                    "scaleDownDelaySeconds": 60,
                }
            }
        }
    }
    assert canary["would_run"] == [
        f"kubectl get rollout payment -o json -n {NS}",
        f"kubectl get replicasets -l app=payment -o json -n {NS}",
        f"kubectl apply -f - -n {NS}",
        "kubectl patch rollout payment --type merge --patch "
        f"{shlex.quote(json.dumps(patch))} -n {NS}",
        "kubectl argo rollouts set image payment "
        f"payment=bankingplatformacr.azurecr.io/payment:1.5.1 -n {NS}",
    ]
    shown = {name: yaml.safe_load(text) for name, text in canary["manifests"].items()}
    assert shown["Rollout/payment (merge patch)"]["spec"] == patch["spec"]
    template = shown["AnalysisTemplate/canary-prometheus"]
    assert template["kind"] == "AnalysisTemplate"
    assert template["spec"]["metrics"][0]["successCondition"] == "result[0] < 0.01"

    blue_green = await k.start(
        service="account", version="1.4.3", strategy="blue-green", analysis_name="post-switch"
    )
    bg = json.loads(shlex.split(blue_green["would_run"][2])[7])
    assert bg["spec"]["strategy"] == {
        "blueGreen": {
            "autoPromotionEnabled": True,
            "scaleDownDelaySeconds": 60,
            "postPromotionAnalysis": {
                "templates": [{"templateName": "post-switch"}],
                "args": [
                    {"name": "service", "value": "account"},
                    {"name": "version", "value": "1.4.3"},
                    {"name": "namespace", "value": NS},
                ],
            },
        }
    }
    # with the template known, the old version stays as long as the analysis (5 x 30s)
    longer = await k.start(
        service="account",
        version="1.4.3",
        strategy="blue-green",
        analysis_name="post-switch",
        analysis_template=TEMPLATE,
    )
    patched = json.loads(shlex.split(longer["would_run"][3])[7])
    assert patched["spec"]["strategy"]["blueGreen"]["scaleDownDelaySeconds"] == 150
    assert "kept 150s, not 60.0s" in longer["note"]
    assert blue_green["would_run"][3] == (
        "kubectl argo rollouts set image account "
        f"account=bankingplatformacr.azurecr.io/account:1.4.3 -n {NS}"
    )

    assert (await k.promote(service="payment", full=True))["would_run"] == [
        f"kubectl argo rollouts promote payment --full -n {NS}"
    ]
    assert (await k.abort(service="payment"))["would_run"] == [
        f"kubectl argo rollouts abort payment -n {NS}"
    ]
    assert (await k.undo(service="payment", revision=6))["would_run"] == [
        f"kubectl argo rollouts undo payment --to-revision=6 -n {NS}"
    ]
    assert (await k.status(service="payment"))["would_run"] == [
        f"kubectl get rollout payment -o json -n {NS}",
        f"kubectl get replicasets -l app=payment -o json -n {NS}",
    ]
    assert (await k.set_weight(service="payment", weight=25))["would_run"] == [
        f"kubectl get rollout payment -o json -n {NS}",
        f"kubectl argo rollouts promote payment -n {NS}",
    ]
    assert argo.calls() == []  # a dry run runs nothing, not even the reads


async def test_a_kube_context_is_pinned_on_plugin_commands(env: dict[str, Any], argo: Argo) -> None:
    k = rollouts({**env, "kube_context": "banking-platform-prod-aks"}, dry_run=True)
    assert (await k.promote(service="payment", full=False))["would_run"] == [
        f"kubectl argo rollouts promote payment -n {NS} --context banking-platform-prod-aks"
    ]


# -- runs against the recordings ----------------------------------------------------------------


async def test_canary_start_applies_the_template_patches_the_steps_and_sets_the_image(
    env: dict[str, Any], argo: Argo
) -> None:
    k = rollouts(env)
    result = await k.start(
        service="transaction",
        version="2.3.1",
        strategy="canary",
        steps=STEPS,
        analysis_name="canary-prometheus",
        analysis_template=TEMPLATE,
    )
    assert [c[:4] for c in argo.calls()] == [
        ["kubectl", "get", "rollout", "transaction"],
        ["kubectl", "get", "replicasets", "-l"],
        ["kubectl", "apply", "-f", "-"],
        ["kubectl", "patch", "rollout", "transaction"],
        ["kubectl", "argo", "rollouts", "set"],
    ]
    patch = json.loads(argo.calls()[3][7])
    assert patch["spec"]["strategy"]["canary"]["steps"] == canary_steps("transaction", "2.3.1")
    assert argo.stdin() == [k.render_analysis_template(name="canary-prometheus", template=TEMPLATE)]
    assert result["output"][0] == "rollout transaction: canary, ready to start"
    assert result["output"][1] == "stable version: 2.3.0"
    assert result["output"][2:] == [
        "analysistemplate.argoproj.io/canary-prometheus created",
        "rollout.argoproj.io/transaction patched",
        'rollout "transaction" image updated',
    ]
    assert result["version"] == "2.3.1" and result["strategy"] == "canary"


async def test_blue_green_start_runs_on_the_rollout(env: dict[str, Any], argo: Argo) -> None:
    result = await rollouts(env).start(
        service="account", version="1.4.3", strategy="blue-green", analysis_name="canary-prometheus"
    )
    assert result["output"][-2:] == [
        "rollout.argoproj.io/account patched",
        'rollout "account" image updated',
    ]
    assert argo.calls()[-1] == [
        "kubectl", "argo", "rollouts", "set", "image", "account",
        "account=bankingplatformacr.azurecr.io/account:1.4.3", "-n", NS,
    ]  # fmt: skip


async def test_rolling_start_runs_helm_and_a_failure_carries_its_stderr(
    env: dict[str, Any], argo: Argo
) -> None:
    k = rollouts(env)
    done = await k.start(service="notification", version="1.4.2", strategy="rolling")
    assert "REVISION: 43" in done["output"][0]
    assert done["output"][1].endswith('deployment "notification" successfully rolled out')
    busy = r"UPGRADE FAILED: another operation \(install/upgrade/rollback\) is in progress"
    with pytest.raises(StepError, match=busy) as failed:
        await k.start(service="notification", version="1.4.3", strategy="rolling")
    assert failed.value.exit_code == 1
    assert "exit 1" in failed.value.message and "helm upgrade" in failed.value.message
    # the rollout status was not run after the failed upgrade
    assert [c[:2] for c in argo.calls()][-1] == ["helm", "upgrade"]


async def test_start_refuses_another_strategy_and_a_rollout_in_progress(
    env: dict[str, Any], argo: Argo
) -> None:
    k = rollouts(env)
    with pytest.raises(UsageError, match="the Rollout account uses the blueGreen strategy") as e:
        await k.start(service="account", version="1.4.3", strategy="canary", steps=STEPS)
    assert "strategy blue-green" in (e.value.hint or "")
    with pytest.raises(ConflictError, match=r"rollout of payment is in progress \(Paused, step 2"):
        await k.start(service="payment", version="1.5.2", strategy="canary", steps=STEPS)
    # only the reads ran: nothing was patched, no image was set
    assert {c[1] for c in argo.calls()} == {"get"}


async def test_canary_promote_and_abort_against_the_recordings(
    env: dict[str, Any], argo: Argo
) -> None:
    k = rollouts(env)
    assert (await k.promote(service="payment"))["output"] == ["rollout 'payment' promoted"]
    full = await k.promote(service="payment", full=True)
    assert full["output"] == ["rollout 'payment' fully promoted"] and full["full"] is True
    aborted = await k.abort(service="payment", reason="analysis failed at step 1")
    assert aborted["output"] == ["rollout 'payment' aborted"]
    assert aborted["reason"] == "analysis failed at step 1"
    assert argo.calls() == [
        ["kubectl", "argo", "rollouts", "promote", "payment", "-n", NS],
        ["kubectl", "argo", "rollouts", "promote", "payment", "--full", "-n", NS],
        ["kubectl", "argo", "rollouts", "abort", "payment", "-n", NS],
    ]


async def test_set_weight_promotes_to_the_next_step_only(env: dict[str, Any], argo: Argo) -> None:
    k = rollouts(env)  # payment is paused at 10 % after step 1's analysis
    moved = await k.set_weight(service="payment", weight=25)
    assert moved["output"] == ["weight 10%, step 2", "rollout 'payment' promoted"]
    assert argo.calls()[-1][:5] == ["kubectl", "argo", "rollouts", "promote", "payment"]
    same = await k.set_weight(service="payment", weight=10)
    assert "already has 10%" in same["note"] and len(argo.calls()) == 3  # one read, no promote
    with pytest.raises(UsageError, match="next step sets 25%, not 50%") as e:
        await k.set_weight(service="payment", weight=50)
    assert "10%, 25%, 50%" in (e.value.hint or "")
    assert (await k.set_weight(service="payment", weight=100))["output"] == [
        "rollout 'payment' fully promoted"
    ]
    with pytest.raises(UsageError, match="is aborted"):
        await k.set_weight(service="notification", weight=25)
    with pytest.raises(UsageError, match="from 1 to 100"):
        await k.set_weight(service="payment", weight=0)
    promotes = [c for c in argo.calls() if c[:4] == ["kubectl", "argo", "rollouts", "promote"]]
    assert len(promotes) == 2


async def test_status_is_parsed_from_the_rollout_and_its_replicasets(
    env: dict[str, Any], argo: Argo
) -> None:
    k = rollouts(env)
    payment = await k.status(service="payment")
    assert payment == {
        "service": "payment",
        "rollout": "payment",
        "strategy": "canary",
        "phase": "Paused",
        "aborted": False,
        "stable_version": "1.5.0",
        "canary_version": "1.5.1",
        "weight": 10,
        "step": 2,
        "steps": 9,
        "message": "CanaryPauseStep",
        "analysis": {"name": "payment-7b8c9d6f4-7-1", "status": "Successful"},
        "platform": "kubernetes",
    }
    notification = await k.status(service="notification")
    assert notification["phase"] == "Degraded"  # no status.phase: from the conditions
    assert notification["aborted"] is True and notification["weight"] == 0
    assert (notification["stable_version"], notification["canary_version"]) == ("1.4.0", "1.4.1")
    assert "assessed Failed due to failed (2) > failureLimit (1)" in notification["message"]
    transaction = await k.status(service="transaction")
    assert transaction["phase"] == "Healthy" and transaction["canary_version"] is None
    assert transaction["stable_version"] == "2.3.0"
    account = await k.status(service="account")
    assert (account["strategy"], account["phase"], account["weight"]) == ("blueGreen", "Healthy", 0)
    assert account["stable_version"] == "1.4.2"


async def test_undo_and_a_failing_undo(env: dict[str, Any], argo: Argo) -> None:
    k = rollouts(env)
    assert (await k.undo(service="notification"))["output"] == ["rollout 'notification' undo"]
    with pytest.raises(StepError, match="unable to find specified revision 99 in history"):
        await k.undo(service="notification", revision=99)
    with pytest.raises(UsageError, match="positive whole number"):
        await k.undo(service="notification", revision=-1)


# -- analysis templates -------------------------------------------------------------------------


def test_a_prometheus_metric_becomes_an_argo_analysis_template(env: dict[str, Any]) -> None:
    rendered = rollouts(env).render_analysis_template(name="canary-prometheus", template=TEMPLATE)
    notes = rendered["metadata"].pop("annotations")
    assert rendered == {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": {
            "name": "canary-prometheus",
            "namespace": NS,
            "labels": {"app.kubernetes.io/managed-by": "opsbook"},
        },
        "spec": {
            "args": [{"name": "service"}, {"name": "version"}],
            "metrics": [
                {
                    "name": "error-ratio-prometheus",
                    "interval": "30s",
                    "count": 5,
                    "failureLimit": 1,
                    "successCondition": "result[0] < 0.01",
                    "provider": {
                        "prometheus": {
                            "address": PROMETHEUS,
                            "query": ERROR_RATIO.replace(
                                "{{ service }}", "{{args.service}}"
                            ).replace("{{ version }}", "{{args.version}}"),
                        }
                    },
                }
            ],
        },
    }
    assert "Argo pauses the Rollout on an inconclusive run" in notes["opsbook.io/notes"]


def test_the_parsed_deployments_file_renders_and_its_sandbox_metric_is_refused(
    env: dict[str, Any], tmp_path: Path
) -> None:
    from opsbook.deploy import config

    (tmp_path / "deployments.yaml").write_text(DEPLOYMENTS_YAML)
    template = config.load(tmp_path / "deployments.yaml").analysis["canary-default"].to_dict()
    k = rollouts(env)
    with pytest.raises(ValidationError, match="metric 'error-ratio' uses the sandbox") as e:
        k.render_analysis_template(name="canary-default", template=template)
    assert e.value.exit_code == 2
    assert e.value.field == "analysis.canary-default.metrics[0].provider"
    assert "provider: prometheus" in (e.value.hint or "")
    only_prometheus = {**template, "metrics": template["metrics"][1:]}
    rendered = k.render_analysis_template(name="canary-default", template=only_prometheus)
    (metric,) = rendered["spec"]["metrics"]
    assert metric["consecutiveErrorLimit"] == 4 and metric["inconclusiveLimit"] == 0
    assert metric["successCondition"] == "result[0] < 0.01"


@pytest.mark.parametrize(
    ("change", "message", "field"),
    [
        (
            {"success_condition": "result <= baseline + 0.02"},
            "compares with baseline",
            "metrics[0].success_condition",
        ),
        ({"success_condition": "size(result) > 0"}, "reads 'size'", "success_condition"),
        ({"success_condition": "result < '1'"}, "cannot be given to Argo", "success_condition"),
        ({"query": "up{job='{{ env.x }}'}"}, "the cluster cannot fill in", "query"),
        ({"provider": "datadog"}, "has provider 'datadog'", "provider"),
        ({"interval": "soon"}, "is not a duration", "interval"),
    ],
)
def test_what_argo_cannot_do_is_refused(
    env: dict[str, Any], change: dict[str, Any], message: str, field: str
) -> None:
    template = {"metrics": [{**PROM_METRIC, **change}]}
    with pytest.raises(ValidationError, match=message) as e:
        rollouts(env).render_analysis_template(name="t", template=template)
    assert (e.value.field or "").endswith(field)


def test_no_prometheus_address_is_refused_with_the_fix(production: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match=r"no monitoring\.prometheus") as e:
        rollouts(production).render_analysis_template(name="t", template=TEMPLATE)
    assert e.value.field == "monitoring.prometheus"


def test_render_rollout_strategy_sections(env: dict[str, Any]) -> None:
    k = rollouts(env)
    plain = k.render_rollout(
        service="payment",
        version="1.5.1",
        strategy="canary",
        steps=[{"weight": 20}, {"weight": 100, "pause": "1m"}],
        analysis_name=None,
        traffic_routing=False,
    )
    # without traffic routing Argo refuses scaleDownDelaySeconds on a canary
    assert plain["spec"]["strategy"] == {
        "canary": {"steps": [{"setWeight": 20}, {"setWeight": 100}, {"pause": {"duration": "1m"}}]}
    }
    with pytest.raises(UsageError, match="a canary needs its steps"):
        k.render_rollout(
            service="payment", version="1.5.1", strategy="canary", steps=None, analysis_name=None
        )
    with pytest.raises(ValidationError, match="above 25") as e:
        k.render_rollout(
            service="payment",
            version="1.5.1",
            strategy="canary",
            steps=[{"weight": 25}, {"weight": 10}],
            analysis_name=None,
        )
    assert e.value.field == "steps[1].weight"
    with pytest.raises(UsageError, match="rolling is the chart's rolling update"):
        k.render_rollout(
            service="payment", version="1.5.1", strategy="rolling", steps=None, analysis_name=None
        )


# -- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "version",
    ["1.5.1; rm -rf /", "1.5.1,payment.replicas=0", "--help", "1.5.1+build.7", "latest", ""],
)
async def test_an_injection_in_a_version_is_refused(
    env: dict[str, Any], argo: Argo, version: str
) -> None:
    for strategy in ("rolling", "canary"):
        with pytest.raises(ValidationError, match="semantic version") as e:
            await rollouts(env).start(
                service="payment", version=version, strategy=strategy, steps=STEPS
            )
        assert e.value.exit_code == 2
    assert argo.calls() == []


@pytest.mark.parametrize("service", ["payment --all", "payment;rm -rf /", "../payment", "-n"])
async def test_an_injection_in_a_service_is_refused(
    env: dict[str, Any], argo: Argo, service: str
) -> None:
    unlisted = {k: v for k, v in env.items() if k != "services"}  # no list to check against
    for environment in (env, unlisted):
        k = rollouts(environment)
        with pytest.raises(UsageError) as e:
            await k.promote(service=service)
        assert e.value.exit_code == 2
        with pytest.raises(UsageError):
            await k.start(service=service, version="1.5.1", strategy="rolling")
    with pytest.raises(UsageError, match="unknown service 'ledger'"):
        await rollouts(env).abort(service="ledger")
    assert argo.calls() == []


async def test_a_refused_template_or_step_stops_start_before_any_command(
    env: dict[str, Any], argo: Argo
) -> None:
    k = rollouts(env)
    sandbox = {"metrics": [{**PROM_METRIC, "provider": "sandbox", "query": "error_ratio"}]}
    with pytest.raises(ValidationError, match="uses the sandbox provider"):
        await k.start(
            service="transaction",
            version="2.3.1",
            strategy="canary",
            steps=STEPS,
            analysis_name="canary-default",
            analysis_template=sandbox,
        )
    with pytest.raises(ValidationError, match="weight must be a whole percentage"):
        await k.start(
            service="transaction", version="2.3.1", strategy="canary", steps=[{"weight": 150}]
        )
    with pytest.raises(UsageError, match="steps are for the canary strategy"):
        await k.start(service="account", version="1.4.3", strategy="blue-green", steps=STEPS)
    assert argo.calls() == []
