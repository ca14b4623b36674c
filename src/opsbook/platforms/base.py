"""The Platform interface: what a runbook step may do to the platform it runs against.

Each operation returns a JSON-serialisable dict. With ``dry_run`` an adapter does nothing and
says what it would do (``{"would_run": [...]}``).

Result shapes shared by the adapters:

- ``status()`` -> ``{"platform", "services": [{"name", "state", "replicas", "ready", "version",
  "restarts", "uptime", "cpu", "memory"}]}``; ``state`` is ``running``, ``degraded``,
  ``crashed`` or ``stopped``; ``uptime`` in seconds, ``cpu`` in percent of one core, ``memory``
  in MiB (None where the platform does not say);
- ``health()`` -> ``{"healthy", "checked", "up", "elapsed_ms", "services": [{"name", "url",
  "status": "UP"|"DOWN"|"DEGRADED", "http_status", "latency_ms", "error"?}]}``;
- ``top()`` -> ``{"services": [{"name", "cpu_percent", "memory_mb", "pods": [...]}]}``;
- ``logs()`` -> ``{"service", "count", "lines": [{...one parsed log line...}]}``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol


class Platform(Protocol):
    name: str

    async def status(self) -> dict[str, Any]: ...

    async def health(
        self,
        *,
        service: str | None = None,
        urls: Sequence[str] | None = None,
        timeout: float = 5.0,
        concurrency: int = 500,
    ) -> dict[str, Any]: ...

    async def restart(self, *, service: str) -> dict[str, Any]: ...

    async def scale(self, *, service: str, replicas: int) -> dict[str, Any]: ...

    async def deploy(
        self, *, service: str, version: str, switch: bool = True
    ) -> dict[str, Any]: ...

    async def switch_traffic(self, *, service: str, to: str | None = None) -> dict[str, Any]: ...

    async def rollback(self, *, service: str, revision: int | None = None) -> dict[str, Any]: ...

    async def logs(self, *, service: str, lines: int = 100) -> dict[str, Any]: ...

    async def remediate(
        self, *, action: str, service: str | None = None, sources: Sequence[str] = ()
    ) -> dict[str, Any]: ...

    async def top(self) -> dict[str, Any]: ...

    async def contain(
        self,
        *,
        action: str,
        service: str | None = None,
        account: int | None = None,
        ticket: str | None = None,
    ) -> dict[str, Any]: ...


def service_names(environment: Mapping[str, Any]) -> list[str]:
    names = []
    for item in environment.get("services") or []:
        if isinstance(item, Mapping) and item.get("name"):
            names.append(str(item["name"]))
        elif isinstance(item, str):
            names.append(item)
    return names


def health_targets(
    environment: Mapping[str, Any], *, service: str | None, urls: Sequence[str] | None
) -> list[tuple[str, str]]:
    """(name, url) pairs: the given ``urls``, else every service's ``health_url``."""
    from opsbook.errors import UsageError  # noqa: PLC0415

    if urls:
        return [(str(u), str(u)) for u in urls]
    out = []
    for item in environment.get("services") or []:
        if not isinstance(item, Mapping):
            continue
        name = str(item.get("name", ""))
        if service and name != service:
            continue
        url = item.get("health_url")
        if url:
            out.append((name, str(url)))
    if service and not out:
        known = ", ".join(service_names(environment)) or "none"
        raise UsageError(
            f"no health_url for service {service!r} in this environment",
            field="service",
            hint=f"services: {known}",
        )
    return out
