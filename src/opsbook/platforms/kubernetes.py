"""The ``kubernetes`` platform: the same operations as ``kubectl`` and ``helm`` invocations.

The commands are the seed's quick reference ones (``kubectl rollout restart deployment/NAME -n
NS``, ``kubectl scale deployment NAME --replicas=N -n NS``, ``helm rollback RELEASE REV -n NS``,
...), run without a shell (argv lists: parameters can never inject shell). With ``dry_run`` they
are returned, exactly, instead of run. Credentials come from the operator's kubeconfig (``az aks
get-credentials``); ``kube_context`` in the environment file pins the context.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import shutil
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from opsbook.errors import OpsbookError, StepError, UsageError, ValidationError
from opsbook.platforms.base import health_targets, service_names
from opsbook.platforms.health import Target, probe_all, summary

DEFAULT_CHART = "banking-platform/banking-platform"
COMMAND_TIMEOUT = 600.0


class KubernetesPlatform:
    name = "kubernetes"

    def __init__(self, *, environment: Mapping[str, Any], dry_run: bool = False) -> None:
        self.environment = environment
        self.dry_run = dry_run
        namespace = environment.get("namespace")
        if not namespace:
            raise ValidationError(
                "the environment has no `namespace`",
                field="namespace",
                hint="add namespace: banking-platform-prod to the file",
            )
        self.namespace = str(namespace)
        self.release = str(environment.get("helm_release") or namespace)
        self.chart = str(environment.get("helm_chart") or DEFAULT_CHART)
        self.context = environment.get("kube_context")

    # -- running commands ----------------------------------------------------------------

    def kubectl(self, *args: str) -> list[str]:
        ctx = ["--context", str(self.context)] if self.context else []
        return ["kubectl", *args, "-n", self.namespace, *ctx]

    def helm(self, *args: str) -> list[str]:
        ctx = ["--kube-context", str(self.context)] if self.context else []
        return ["helm", *args, "-n", self.namespace, *ctx]

    async def run(
        self, argv: list[str], *, timeout: float = COMMAND_TIMEOUT, stdin: str | None = None
    ) -> str:
        """Run one command (``stdin``: text fed to it, e.g. for ``kubectl apply -f -``); its
        stdout, or a StepError with its stderr."""
        exe = shutil.which(argv[0])
        if exe is None:
            raise OpsbookError(
                f"{argv[0]} is not installed or not on PATH",
                hint=f"install {argv[0]} and sign in (az aks get-credentials)",
            )
        proc = await asyncio.create_subprocess_exec(
            exe,
            *argv[1:],
            stdin=asyncio.subprocess.DEVNULL if stdin is None else asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            data = None if stdin is None else stdin.encode()
            out, err = await asyncio.wait_for(proc.communicate(data), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise StepError(
                f"`{shlex.join(argv)}` did not finish within {timeout:g}s", retryable=True
            ) from None
        if proc.returncode != 0:
            raise StepError(
                f"`{shlex.join(argv)}` failed (exit {proc.returncode}): "
                f"{err.decode(errors='replace').strip()[-1000:]}",
                hint="check the cluster access (kubectl auth can-i) and the names",
            )
        return out.decode(errors="replace")

    async def _do(self, commands: list[list[str]], **result: Any) -> dict[str, Any]:
        if self.dry_run:
            return {"would_run": [shlex.join(c) for c in commands], "platform": self.name}
        outputs = [(await self.run(c)).strip() for c in commands]
        return {
            **result,
            "ran": [shlex.join(c) for c in commands],
            "output": outputs,
            "platform": self.name,
        }

    def _service(self, service: str) -> str:
        known = service_names(self.environment)
        if known and service not in known:
            raise UsageError(
                f"unknown service {service!r}",
                field="service",
                hint=f"use one of: {', '.join(known)}",
            )
        return service

    # -- operations ------------------------------------------------------------------------

    async def status(self) -> dict[str, Any]:
        deployments = self.kubectl("get", "deployments", "-o", "json")
        pods = self.kubectl("get", "pods", "-o", "json")
        if self.dry_run:
            return await self._do([deployments, pods])
        deps = json.loads(await self.run(deployments)).get("items", [])
        pod_items = json.loads(await self.run(pods)).get("items", [])
        wanted = set(service_names(self.environment))
        services = []
        for dep in deps:
            name = dep["metadata"]["name"]
            if wanted and name not in wanted:
                continue
            services.append(_deployment_view(dep, _pods_of(dep, pod_items)))
        return {"platform": self.name, "namespace": self.namespace, "services": services}

    async def health(
        self,
        *,
        service: str | None = None,
        urls: Sequence[str] | None = None,
        timeout: float = 5.0,
        concurrency: int = 500,
    ) -> dict[str, Any]:
        pairs = health_targets(self.environment, service=service, urls=urls)
        if self.dry_run:
            return {"would_get": [url for _, url in pairs], "platform": self.name}
        started = time.perf_counter()
        return summary(
            await probe_all(
                [Target(n, u) for n, u in pairs], timeout=timeout, concurrency=concurrency
            ),
            started,
        )

    async def restart(self, *, service: str) -> dict[str, Any]:
        svc = self._service(service)
        return await self._do(
            [
                self.kubectl("rollout", "restart", f"deployment/{svc}"),
                self.kubectl("rollout", "status", f"deployment/{svc}", "--timeout=300s"),
            ],
            service=svc,
            restarted=True,
        )

    async def scale(self, *, service: str, replicas: int) -> dict[str, Any]:
        svc = self._service(service)
        return await self._do(
            [self.kubectl("scale", "deployment", svc, f"--replicas={int(replicas)}")],
            service=svc,
            replicas=int(replicas),
        )

    async def deploy(self, *, service: str, version: str, switch: bool = True) -> dict[str, Any]:
        svc = self._service(service)
        commands = [
            self.helm(
                "upgrade",
                self.release,
                self.chart,
                "--reuse-values",
                "--set",
                f"{svc}.green.enabled=true",
                "--set",
                f"{svc}.green.image.tag={version}",
                "--wait",
                "--timeout",
                "10m",
            ),
            self.kubectl("rollout", "status", f"deployment/{svc}-green", "--timeout=300s"),
        ]
        if switch:
            commands.append(self._patch_selector(svc, "green"))
        return await self._do(commands, service=svc, version=version, switched=switch)

    def _patch_selector(self, svc: str, slot: str) -> list[str]:
        patch = json.dumps({"spec": {"selector": {"app": svc, "slot": slot}}})
        return self.kubectl("patch", "service", svc, "--patch", patch)

    async def switch_traffic(self, *, service: str, to: str | None = None) -> dict[str, Any]:
        svc = self._service(service)
        slot = to
        if slot is None and not self.dry_run:
            current = (
                await self.run(
                    self.kubectl("get", "service", svc, "-o", "jsonpath={.spec.selector.slot}")
                )
            ).strip()
            slot = "blue" if current == "green" else "green"
        if slot not in (None, "blue", "green"):
            raise UsageError(f"to must be blue or green, not {slot!r}", field="to")
        return await self._do(
            [self._patch_selector(svc, slot or "green")], service=svc, slot=slot or "green"
        )

    async def rollback(self, *, service: str, revision: int | None = None) -> dict[str, Any]:
        svc = self._service(service)
        args = ["rollback", self.release, *([str(int(revision))] if revision else [])]
        return await self._do(
            [self.helm(*args)],
            service=svc,
            release=self.release,
            revision=revision,
            note="helm rolls back the whole release",
        )

    async def remediate(
        self, *, action: str, service: str | None = None, sources: Sequence[str] = ()
    ) -> dict[str, Any]:
        """The commands each remediation runs on the cluster (the sandbox's models, as
        Kubernetes does them)."""
        from opsbook.sandbox.remedies import check  # noqa: PLC0415

        check(action, service)
        svc = self._service(service) if service else None
        target = svc or "payment"
        restart = [
            self.kubectl("rollout", "restart", f"deployment/{target}"),
            self.kubectl("rollout", "status", f"deployment/{target}", "--timeout=300s"),
        ]
        commands = {
            # a pool held by sessions idle in a transaction, a stale database path, a saturated
            # node: new pods get new connections and a new node
            "terminate-leaked-sessions": restart,
            "reset-db-connections": restart,
            "reschedule": restart,
            "rollback-config": [self.kubectl("rollout", "undo", f"deployment/{target}")],
            "disk-cleanup": [
                self.kubectl(
                    "exec",
                    f"deployment/{target}",
                    "--",
                    "find",
                    "/data",
                    "-name",
                    "*.tmp",
                    "-delete",
                )
            ],
            "failover-dependency": [
                self.kubectl("set", "env", "deployment/payment", "PAYMENT_NETWORK_ENDPOINT=standby")
            ],
            # cert-manager issues a new certificate when its secret is deleted
            "renew-certificate": [self.kubectl("delete", "secret", "payment-network-tls")],
            "block-sources": [
                self.kubectl(
                    "annotate",
                    "--overwrite",
                    "ingress/banking-api",
                    "nginx.ingress.kubernetes.io/denylist-source-range="
                    + ",".join(str(s) for s in sources),
                )
            ],
        }[action]
        return await self._do(commands, action=action, service=svc)

    async def contain(
        self,
        *,
        action: str,
        service: str | None = None,
        account: int | None = None,
        ticket: str | None = None,
    ) -> dict[str, Any]:
        """Isolation by the ``quarantine`` NetworkPolicy (pods labelled ``quarantine=true`` get
        no traffic and keep running for forensics); an account hold through the account
        service's admin API, run from inside the cluster."""
        if action in ("isolate", "release"):
            svc = self._service(service or "")
            label = "quarantine=true" if action == "isolate" else "quarantine-"
            cmds = [self.kubectl("label", "pods", "--selector", f"app={svc}", label, "--overwrite")]
            return await self._do(cmds, action=action, service=svc)
        from urllib.parse import quote  # noqa: PLC0415

        verb = "POST" if action == "freeze" else "DELETE"
        cmds = [
            self.kubectl(
                "exec",
                "deployment/account",
                "--",
                "curl",
                "-fsS",
                "-X",
                verb,
                f"http://localhost:8080/admin/accounts/{int(account or 0)}/hold"
                + (f"?ticket={quote(ticket, safe='')}" if ticket else ""),
            )
        ]
        return await self._do(cmds, action=action, service="account")

    async def logs(self, *, service: str, lines: int = 100) -> dict[str, Any]:
        from opsbook.sandbox.logtail import parse  # noqa: PLC0415

        svc = self._service(service)
        cmd = self.kubectl(
            "logs", f"deployment/{svc}", f"--tail={int(lines)}", "--all-containers=true"
        )
        if self.dry_run:
            return await self._do([cmd])
        entries = [parse(line) for line in (await self.run(cmd)).splitlines() if line.strip()]
        return {"service": svc, "count": len(entries), "lines": entries, "platform": self.name}

    async def top(self) -> dict[str, Any]:
        cmd = self.kubectl("top", "pods", "--no-headers")
        if self.dry_run:
            return await self._do([cmd])
        return {
            "platform": self.name,
            "services": _top_view(await self.run(cmd), service_names(self.environment)),
        }


def _pods_of(dep: Mapping[str, Any], pods: list[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    selector = dep.get("spec", {}).get("selector", {}).get("matchLabels", {}) or {}
    return [
        p
        for p in pods
        if selector
        and all(p.get("metadata", {}).get("labels", {}).get(k) == v for k, v in selector.items())
    ]


def _deployment_view(dep: Mapping[str, Any], pods: list[Mapping[str, Any]]) -> dict[str, Any]:
    spec, st = dep.get("spec", {}), dep.get("status", {})
    replicas, ready = int(spec.get("replicas", 0)), int(st.get("readyReplicas", 0) or 0)
    containers = spec.get("template", {}).get("spec", {}).get("containers", []) or [{}]
    image = str(containers[0].get("image", ""))
    restarts = sum(
        int(c.get("restartCount", 0))
        for p in pods
        for c in p.get("status", {}).get("containerStatuses", []) or []
    )
    waiting = [
        c.get("state", {}).get("waiting", {}).get("reason")
        for p in pods
        for c in p.get("status", {}).get("containerStatuses", []) or []
    ]
    starts = [p.get("status", {}).get("startTime") for p in pods]
    oldest = min((s for s in starts if s), default=None)
    uptime = (
        round(
            time.time()
            - datetime.fromisoformat(oldest.replace("Z", "+00:00")).astimezone(UTC).timestamp(),
            1,
        )
        if oldest
        else 0
    )
    if replicas == 0:
        state = "stopped"
    elif ready >= replicas:
        state = "running"
    elif ready == 0 and any(w == "CrashLoopBackOff" for w in waiting):
        state = "crashed"
    else:
        state = "degraded"
    return {
        "name": dep["metadata"]["name"],
        "state": state,
        "replicas": replicas,
        "ready": ready,
        "version": image.rsplit(":", 1)[-1] if ":" in image else image,
        "restarts": restarts,
        "uptime": uptime,
        "cpu": None,
        "memory": None,
        "pods": [p.get("metadata", {}).get("name") for p in pods],
    }


def _quantity(text: str, *, cpu: bool) -> float:
    """``250m`` -> 25.0 (% of a core); ``512Mi`` -> 512.0 (MiB)."""
    if cpu:
        return float(text[:-1]) / 10 if text.endswith("m") else float(text) * 100
    units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "K": 1 / 1000, "M": 1, "G": 1000}
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text) / 2**20


def _top_view(text: str, services: list[str]) -> list[dict[str, Any]]:
    by_service: dict[str, dict[str, Any]] = {}
    for line in text.splitlines():
        cols = line.split()
        if len(cols) < 3 or cols[0] == "NAME":
            continue
        pod, cpu, mem = cols[0], _quantity(cols[1], cpu=True), _quantity(cols[2], cpu=False)
        owner = next(
            (s for s in sorted(services, key=len, reverse=True) if pod.startswith(f"{s}-")),
            pod.rsplit("-", 2)[0],
        )
        entry = by_service.setdefault(
            owner, {"name": owner, "cpu_percent": 0.0, "memory_mb": 0.0, "pods": []}
        )
        entry["cpu_percent"] = round(entry["cpu_percent"] + cpu, 1)
        entry["memory_mb"] = round(entry["memory_mb"] + mem, 1)
        entry["pods"].append({"name": pod, "cpu_percent": cpu, "memory_mb": mem})
    return list(by_service.values())
