"""Probe definitions in environment files: one kind (http, tcp, tls, sql, promql), its
target (with ``${service.X}``/``${env.X}`` references), CEL conditions compiled up front."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from opsbook.errors import ExpressionError, ValidationError
from opsbook.monitoring.specs import (
    DEFAULT_INTERVAL,
    DEFAULT_TIMEOUT,
    PROBE_KINDS,
    SEVERITIES,
    Probe,
    duration_at,
    location_of,
)

_REF = re.compile(r"\$\{(service|env)\.([A-Za-z0-9_.]+)\}")


def _substitute(value: Any, scope: Mapping[str, Any], *, path: Path, node: Any) -> Any:
    """``${service.health_url}`` / ``${env.sandbox.payment_network_port}`` in probe targets,
    so probes follow the ports the sandbox writes back into this file. (Not ``{{ }}``: the
    environment's values reach runbook steps unrendered.)"""
    if isinstance(value, dict):
        return {k: _substitute(v, scope, path=path, node=node) for k, v in value.items()}
    if not isinstance(value, str) or "${" not in value:
        return value

    def one(match: re.Match[str]) -> str:
        cur: Any = scope[match.group(1)]
        for part in match.group(2).split("."):
            if not isinstance(cur, Mapping) or part not in cur:
                raise ValidationError(
                    f"{match.group(0)}: no such value",
                    location=location_of(path, node),
                    hint="probe targets can read ${service.KEY} and ${env.KEY}",
                )
            cur = cur[part]
        return str(cur)

    return _REF.sub(one, value)


def parse_probe(
    env: str,
    path: Path,
    service: str,
    node: Any,
    services: tuple[str, ...],
    scope: Mapping[str, Any] | None = None,
) -> Probe:
    from opsbook.expressions import compile_expression  # noqa: PLC0415

    if not isinstance(node, dict):
        raise ValidationError(
            "a probe must be a mapping",
            location=location_of(path, node),
            hint="see docs/monitoring.md",
        )
    service = str(node.get("service", service))
    if service not in services:
        raise ValidationError(
            f"probe {node.get('name')!r} names unknown service {service!r}",
            location=location_of(path, node),
            hint=f"use one of: {', '.join(services) or 'none (add services: first)'}",
        )
    kinds = [k for k in PROBE_KINDS if k in node]
    if len(kinds) != 1:
        raise ValidationError(
            f"probe {node.get('name')!r} must have exactly one of {', '.join(PROBE_KINDS)}",
            location=location_of(path, node),
            hint="e.g. http: {url: http://127.0.0.1:18103/health}",
        )
    kind = kinds[0]
    target = node[kind]
    if isinstance(target, str):
        target = {"url": target} if kind == "http" else {"query": target}
        if kind in ("tcp", "tls"):
            host, _, port = str(node[kind]).rpartition(":")
            target = {"host": host, "port": port}
    if not isinstance(target, dict):
        raise ValidationError(
            f"{kind} must be a mapping",
            location=location_of(path, node),
            hint="see docs/monitoring.md",
        )
    target = _substitute(target, scope or {"service": {}, "env": {}}, path=path, node=node)
    needed = {"http": ("url",), "tcp": ("host", "port"), "tls": ("host", "port")}
    needed |= {"sql": ("db", "query"), "promql": ("query",)}
    for key in needed[kind]:
        if not target.get(key):
            raise ValidationError(
                f"{kind} probe {node.get('name')!r} needs {key}",
                location=location_of(path, node),
                hint=f"add {kind}: {{{key}: …}}",
            )
    name = str(node.get("name") or f"{service}-{kind}")
    expect = node.get("expect", [])
    if isinstance(expect, str):
        expect = [expect]
    for expr in expect:
        try:
            compile_expression(str(expr), location=location_of(path, node))
        except ExpressionError as exc:
            raise ValidationError(
                f"probe {name!r}: {exc.message}", location=exc.location, hint=exc.hint
            ) from exc
    severity = str(node.get("severity", "page"))
    if severity not in SEVERITIES:
        raise ValidationError(
            f"probe {name!r}: severity must be one of {', '.join(SEVERITIES)}",
            location=location_of(path, node),
            hint="page wakes someone, ticket waits for working hours",
        )
    return Probe(
        environment=env,
        service=service,
        name=name,
        kind=kind,
        target=dict(target),
        interval=duration_at(
            node.get("interval", DEFAULT_INTERVAL), path=path, node=node, what="interval"
        ),
        timeout=duration_at(
            node.get("timeout", DEFAULT_TIMEOUT), path=path, node=node, what="timeout"
        ),
        expect=tuple(str(e) for e in expect),
        severity=severity,
        runbook=str(node["runbook"]) if node.get("runbook") else None,
        failures_to_alert=int(node.get("failures_to_alert", 2)),
    )
