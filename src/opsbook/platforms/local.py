"""The ``local`` platform: the sandbox on this machine, driven through its supervisor."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from opsbook.platforms.base import health_targets
from opsbook.platforms.health import Target, probe_all, summary
from opsbook.sandbox.config import SandboxConfig, check_service, config_from_environment


class LocalPlatform:
    name = "local"

    def __init__(
        self,
        *,
        environment: Mapping[str, Any],
        workspace: Path,
        env_name: str,
        actor: str = "operator",
        dry_run: bool = False,
    ) -> None:
        self.environment = environment
        self.workspace = workspace
        self.env_name = env_name
        self.actor = actor
        self.dry_run = dry_run

    def config(self) -> SandboxConfig:
        path = self.workspace / "environments" / f"{self.env_name}.yaml"
        return config_from_environment(
            workspace=self.workspace, env_name=self.env_name, env_path=path, data=self.environment
        )

    async def _call(self, op: str, **args: Any) -> Any:
        from opsbook.sandbox.control import Control  # noqa: PLC0415

        return await Control.for_data_dir(self.config().data_path).acall(
            op, {**args, "actor": self.actor}
        )

    def _would(self, text: str) -> dict[str, Any]:
        return {"would_run": [f"sandbox: {text}"], "platform": self.name}

    async def status(self) -> dict[str, Any]:
        if self.dry_run:
            return self._would("status")
        full = await self._call("status")
        keys = (
            "name",
            "state",
            "replicas",
            "ready",
            "available",
            "version",
            "revision",
            "restarts",
            "uptime",
            "cpu",
            "memory",
            "standby",
            "pods",
        )
        return {
            "platform": self.name,
            "services": [{k: s.get(k) for k in keys} for s in full["services"]],
            "faults": full.get("faults", []),
        }

    async def health(
        self,
        *,
        service: str | None = None,
        urls: Sequence[str] | None = None,
        timeout: float = 5.0,
        concurrency: int = 500,
    ) -> dict[str, Any]:
        if service:
            check_service(service)
        pairs = health_targets(self.environment, service=service, urls=urls)
        if self.dry_run:
            return {"would_get": [url for _, url in pairs], "platform": self.name}
        started = time.perf_counter()
        results = await probe_all(
            [Target(n, u) for n, u in pairs], timeout=timeout, concurrency=concurrency
        )
        return summary(results, started)

    async def restart(self, *, service: str) -> dict[str, Any]:
        check_service(service)
        if self.dry_run:
            return self._would(f"rolling restart of {service}")
        result: dict[str, Any] = await self._call("restart", service=service)
        return result

    async def scale(self, *, service: str, replicas: int) -> dict[str, Any]:
        check_service(service)
        if self.dry_run:
            return self._would(f"scale {service} to {replicas} replica(s)")
        result: dict[str, Any] = await self._call("scale", service=service, replicas=replicas)
        return result

    async def deploy(self, *, service: str, version: str, switch: bool = True) -> dict[str, Any]:
        check_service(service)
        if self.dry_run:
            return self._would(
                f"blue-green deploy of {service} {version}"
                + (" and switch traffic" if switch else " (standby)")
            )
        result: dict[str, Any] = await self._call(
            "deploy", service=service, version=version, switch=switch
        )
        return result

    # -- progressive delivery (opsbook.deploy.rollout drives these) ---------------------------

    async def start_release(self, *, service: str, version: str, strategy: str) -> dict[str, Any]:
        """The new version beside the running one, with no traffic (blue-green, canary), or a
        rolling update's replacement of the replicas one at a time."""
        check_service(service)
        if self.dry_run:
            return self._would(f"{strategy} release of {service} {version}")
        if strategy == "rolling":
            out: dict[str, Any] = await self._call("rolling", service=service, version=version)
            return out
        out = await self._call(
            "deploy", service=service, version=version, strategy=strategy, switch=False
        )
        return out

    async def set_weight(self, *, service: str, weight: int) -> dict[str, Any]:
        check_service(service)
        if self.dry_run:
            return self._would(f"send {weight}% of {service}'s traffic to its new release")
        out: dict[str, Any] = await self._call("weight", service=service, weight=weight)
        return out

    async def promote(self, *, service: str, keep_old_for: float) -> dict[str, Any]:
        check_service(service)
        if self.dry_run:
            return self._would(f"promote {service}'s new release, keep the old {keep_old_for:g}s")
        out: dict[str, Any] = await self._call(
            "promote", service=service, keep_old_for=keep_old_for
        )
        return out

    async def abort(self, *, service: str, reason: str) -> dict[str, Any]:
        check_service(service)
        if self.dry_run:
            return self._would(f"abort {service}'s new release: all traffic to the old one")
        out: dict[str, Any] = await self._call("abort", service=service, reason=reason)
        return out

    async def slot_metrics(self, *, service: str) -> dict[str, Any]:
        check_service(service)
        out: dict[str, Any] = await self._call("slot-metrics", service=service)
        return out

    async def switch_traffic(self, *, service: str, to: str | None = None) -> dict[str, Any]:
        check_service(service)
        if self.dry_run:
            return self._would(f"switch {service} traffic to its standby release")
        result: dict[str, Any] = await self._call("switch", service=service)
        return result

    async def rollback(self, *, service: str, revision: int | None = None) -> dict[str, Any]:
        check_service(service)
        if self.dry_run:
            return self._would(
                f"roll {service} back to "
                + (f"revision {revision}" if revision else "its previous revision")
            )
        result: dict[str, Any] = await self._call("rollback", service=service, revision=revision)
        return result

    async def remediate(
        self, *, action: str, service: str | None = None, sources: Sequence[str] = ()
    ) -> dict[str, Any]:
        """A remediation (:mod:`opsbook.sandbox.remedies`): ends the fault it addresses."""
        from opsbook.sandbox.remedies import check  # noqa: PLC0415

        if service:
            check_service(service)
        remedy = check(action, service)
        if self.dry_run:
            where = f" on {service}" if service else ""
            return self._would(f"{action}{where}: {remedy.did}")
        result: dict[str, Any] = await self._call("remediate", action=action, service=service)
        return result

    async def contain(
        self,
        *,
        action: str,
        service: str | None = None,
        account: int | None = None,
        ticket: str | None = None,
    ) -> dict[str, Any]:
        """Isolate/release a service at its front door, freeze/unfreeze a ledger account
        (:mod:`opsbook.sandbox.containment`)."""
        if service:
            check_service(service)
        if self.dry_run:
            what = service if service else f"account {account}"
            return self._would(f"{action} {what} ({ticket or 'no ticket'})")
        result: dict[str, Any] = await self._call(
            "contain", action=action, service=service, account=account, ticket=ticket
        )
        return result

    async def logs(self, *, service: str, lines: int = 100) -> dict[str, Any]:
        from opsbook.sandbox.logtail import parse, tail_lines  # noqa: PLC0415

        check_service(service)
        path = self.config().data_path / "logs" / f"{service}.log"
        if self.dry_run:
            return {"would_read": str(path), "lines": lines, "platform": self.name}
        entries = [parse(line) for line in tail_lines(path, lines)]
        return {"service": service, "file": str(path), "count": len(entries), "lines": entries}

    async def top(self) -> dict[str, Any]:
        if self.dry_run:
            return self._would("top")
        full = await self._call("status")
        return {
            "platform": self.name,
            "services": [
                {
                    "name": s["name"],
                    "cpu_percent": s["cpu"],
                    "memory_mb": s["memory"],
                    "pods": [
                        {
                            "name": p["name"],
                            "cpu_percent": p["cpu"],
                            "memory_mb": p["memory_mb"],
                            "state": p["state"],
                        }
                        for p in s["pods"]
                        if p["state"] == "running"
                    ],
                }
                for s in full["services"]
            ],
        }
