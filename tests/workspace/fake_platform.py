"""``platform.*`` actions over the fake sandbox, with the result shapes the runbooks rely on.

State (which services are down, replicas, restarts) lives in ``.opsbook/fake-platform.json`` in
the workspace, shared with :mod:`tests.workspace.fake_sandbox`'s HTTP servers, so restarting a
DOWN service really makes its health endpoint answer UP again.

``python -m tests.workspace.fake_cli ARGS`` runs the real ``opsbook`` command with these actions
registered next to the installed ones (they win on a name clash, so tests do not depend on which
platform plugin is installed).
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from opsbook.actions import ActionContext, ActionSpec, action
from opsbook.errors import StepError

STATE = ".opsbook/fake-platform.json"
SERVICES = ("account", "transaction", "payment", "notification")


def state_path(workspace: Path) -> Path:
    return workspace / STATE


def load_state(workspace: Path) -> dict[str, Any]:
    path = state_path(workspace)
    if path.is_file():
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return data
    return {
        "down": [],
        "replicas": dict.fromkeys(SERVICES, 1),
        "restarts": dict.fromkeys(SERVICES, 0),
    }


def save_state(workspace: Path, state: Mapping[str, Any]) -> None:
    path = state_path(workspace)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state), encoding="utf-8")
    tmp.replace(path)


def _service(args: Mapping[str, Any]) -> str:
    name = str(args.get("service", ""))
    if name not in SERVICES:
        raise StepError(f"unknown service {name!r}")
    return name


def _probe(url: str) -> dict[str, Any]:
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            code, body = reply.status, json.loads(reply.read() or b"{}")
    except urllib.error.HTTPError as exc:
        code, body = exc.code, {}
    except OSError:
        code, body = None, {}
    return {
        "url": url,
        "http_status": code,
        "status": "UP" if code == 200 and body.get("status") == "UP" else "DOWN",
        "latency_ms": round((time.perf_counter() - start) * 1000, 1),
    }


@action("platform.status", description="fake: state of every service")
async def status(ctx: ActionContext, args: Mapping[str, Any]) -> Any:
    st = load_state(ctx.workspace)
    return {
        "services": [
            {
                "name": name,
                "state": "stopped" if name in st["down"] else "running",
                "replicas": st["replicas"][name],
                "ready": 0 if name in st["down"] else st["replicas"][name],
                "version": "1.4.2",
                "restarts": st["restarts"][name],
            }
            for name in SERVICES
        ]
    }


@action("platform.health", description="fake: probe every service's health URL")
async def health(ctx: ActionContext, args: Mapping[str, Any]) -> Any:
    services = [
        s
        for s in ctx.environment.get("services", [])
        if not args.get("service") or s["name"] == args["service"]
    ]
    probes = await asyncio.gather(
        *(asyncio.to_thread(_probe, str(s["health_url"])) for s in services)
    )
    results = [{"name": s["name"], **p} for s, p in zip(services, probes, strict=True)]
    return {"healthy": all(r["status"] == "UP" for r in results), "services": results}


@action("platform.restart", description="fake: restart a service", required=("service",))
async def restart(ctx: ActionContext, args: Mapping[str, Any]) -> Any:
    name = _service(args)
    st = load_state(ctx.workspace)
    st["down"] = [s for s in st["down"] if s != name]
    st["restarts"][name] += 1
    save_state(ctx.workspace, st)
    return {"service": name, "state": "running", "restarts": st["restarts"][name]}


@action("platform.scale", description="fake: scale a service", required=("service", "replicas"))
async def scale(ctx: ActionContext, args: Mapping[str, Any]) -> Any:
    name, replicas = _service(args), int(args["replicas"])
    st = load_state(ctx.workspace)
    st["replicas"][name] = replicas
    st["down"] = [s for s in st["down"] if s != name] + ([name] if replicas == 0 else [])
    save_state(ctx.workspace, st)
    return {"service": name, "replicas": replicas, "ready": replicas}


@action("platform.rollback", description="fake: roll a service back", required=("service",))
async def rollback(ctx: ActionContext, args: Mapping[str, Any]) -> Any:
    name = _service(args)
    st = load_state(ctx.workspace)
    st["down"] = [s for s in st["down"] if s != name]
    save_state(ctx.workspace, st)
    return {"service": name, "revision": int(args.get("revision") or 0), "state": "running"}


@action("platform.logs", description="fake: recent log lines", required=("service",))
async def logs(ctx: ActionContext, args: Mapping[str, Any]) -> Any:
    name, lines = _service(args), int(args.get("lines") or 100)
    return {"service": name, "lines": [f"{name}: log line {i}" for i in range(min(lines, 5))]}


@action("platform.top", description="fake: resource usage")
async def top(ctx: ActionContext, args: Mapping[str, Any]) -> Any:
    return {"services": [{"name": n, "cpu_percent": 12.5, "memory_mb": 64} for n in SERVICES]}


ACTIONS: Mapping[str, ActionSpec] = {
    spec.name: spec for spec in (status, health, restart, scale, rollback, logs, top)
}
